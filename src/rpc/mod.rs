//! The node's JSON-RPC interface: [`api`] defines the methods and their JSON shapes (shared by
//! server and client), [`server`] serves them on loopback behind cookie/password auth, and
//! [`client`] is what the `bump` command line uses to reach a running node.

pub mod api;
pub mod auth;
pub mod client;
pub mod server;
