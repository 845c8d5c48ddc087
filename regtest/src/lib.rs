//! Local Namecoin regtest network for BuMP.
//!
//! This crate will own the embedded, in-process regtest chain that answers the namecoind RPC
//! subset BuMP uses, and the scripts that run the same flows against a real namecoind. For now it
//! only re-exports the regtest parameters; the chain itself is built with the Namecoin
//! integration work.

pub use namecoin::Network;

/// The network this crate simulates.
pub const NETWORK: Network = Network::Regtest;
