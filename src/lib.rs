//! BuMP (Bus Message Protocol): an anonymous, encrypted, fully replicated message bus carried
//! over the Namecoin peer-to-peer network.
//!
//! Module map: [`tag`] (tags and human tags), [`packet`] (the 1024-byte packet and its JSON
//! form), [`message`] (splitting files into packets and joining them), [`store`] (sled
//! persistence), [`config`] (datadir, `bump.conf`, settings), [`node`] (the daemon's state and
//! packet admission), [`rpc`] (the JSON-RPC API, server and client), [`names`] (mix records
//! as Namecoin names, the directory, publishing), [`mix`] (onion mixing and postage).

pub mod config;
pub mod daemon;
pub mod message;
pub mod mix;
pub mod names;
pub mod node;
pub mod onion;
pub mod p2p;
pub mod packet;
pub mod rpc;
pub mod segments;
pub mod store;
pub mod tag;

/// Current unix time in seconds, saturated into a u32.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}
