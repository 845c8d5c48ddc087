//! Namecoin protocol pieces that BuMP needs.
//!
//! This crate owns facts about Namecoin itself (not about BuMP): network parameters
//! ([`network`]), P2P message framing ([`wire`]) and AuxPoW block headers ([`auxpow`]). and the
//! namecoind JSON-RPC client ([`rpc`]).

pub mod auxpow;
pub mod network;
pub mod rpc;
pub mod wire;

pub use network::{Network, ParseNetworkError};

/// Namecoin's P2P protocol version (namecoin-core master). BIP 434 `feature` messages are
/// allowed from this version on.
pub const PROTOCOL_VERSION: u32 = 110017;
