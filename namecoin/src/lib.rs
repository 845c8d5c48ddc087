//! Namecoin protocol pieces that BuMP needs.
//!
//! This crate owns facts about Namecoin itself (not about BuMP): network parameters
//! ([`network`]), P2P message framing ([`wire`]) and AuxPoW block headers ([`auxpow`]). The
//! namecoind JSON-RPC client joins it with the Namecoin integration work.

pub mod auxpow;
pub mod network;
pub mod wire;

pub use network::{Network, ParseNetworkError};

/// Namecoin's P2P protocol version (namecoin-core master). BIP 434 `feature` messages are
/// allowed from this version on.
pub const PROTOCOL_VERSION: u32 = 110017;
