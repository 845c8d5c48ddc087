//! BuMP's peer-to-peer overlay on the Namecoin network: [`message`] (what is said on the wire),
//! [`peer`] (one connection), [`overlay`] (relay, catch-up, scoring, connections) and
//! [`addrbook`] (the persisted peer table and bans). Framing and AuxPoW live in the `namecoin`
//! crate.

pub mod addrbook;
pub mod message;
pub mod overlay;
pub mod peer;

pub use overlay::{Overlay, P2pConfig};
