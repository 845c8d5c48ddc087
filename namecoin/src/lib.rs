//! Namecoin protocol pieces that BuMP needs, starting with the network parameters.
//!
//! This crate owns facts about Namecoin itself (not about BuMP): magic bytes, default ports,
//! address prefixes and datadir layout of `namecoind`. Later it grows the P2P framing (AuxPoW
//! headers) and the namecoind JSON-RPC client.

pub mod network;

pub use network::{Network, ParseNetworkError};
