//! BuMP's peer-to-peer overlay on the Namecoin network: [`message`] (what is said on the wire),
//! [`handshake`] (version/feature/verack as a state machine), [`fetch`] (what to ask whom, within bounds), [`peer`] (one connection, which
//! reports to its owner by events), [`penalty`] (what each broken rule costs), [`overlay`]
//! (relay, catch-up, scoring, connections: the owner of all peers) and [`addrbook`] (the
//! persisted peer table and bans). Framing and AuxPoW live in the `namecoin` crate.
//!
//! Dependencies point one way: overlay → peer → handshake, message, penalty. A connection
//! never calls the overlay; it sends [`peer::PeerEvent`]s on a channel the overlay reads.

pub mod addrbook;
pub mod fetch;
pub mod handshake;
pub mod ingest;
pub mod message;
pub mod overlay;
pub mod peer;
pub mod penalty;
pub mod recon;

pub use overlay::{Overlay, P2pConfig};
