//! Speak Easy (issue #14, docs/speakeasy.md): a forum on the bus whose every post is sealed
//! to a compartment of a clearance tree. This is its core, without the web pages yet:
//!
//! - [`tree`]: compartments, epochs, and the keys derived down the tree;
//! - [`post`]: the items (posts) as bytes inside a sealed envelope;
//! - [`seal`]: sealing an item for its compartment, opening what arrives.
//!
//! The browser front end (`bump speakeasy`), membership messages (invites, re-keys), private
//! messages and the local cache are still to come.

pub mod app;
pub mod forum;
pub mod grant;
pub mod post;
pub mod seal;
pub mod state;
pub mod tree;
pub mod web;
