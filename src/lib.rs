//! BuMP (Bus Message Protocol): an anonymous, encrypted, fully replicated message bus carried
//! over the Namecoin peer-to-peer network.
//!
//! Module map: [`tag`] (tags and human tags), [`packet`] (the 1024-byte packet and its JSON
//! form), [`message`] (splitting files into packets and joining them), [`store`] (segment
//! files, the in-memory packet index and its journal, sled side tables), [`config`] (datadir, `bump.conf`, settings), [`node`] (the daemon's state and
//! packet admission), [`rpc`] (the JSON-RPC API, server and client), [`names`] (mix records
//! as Namecoin names, the directory, publishing), [`mix`] (onion mixing and postage).

pub mod admission;
pub mod clock;
pub mod config;
pub mod daemon;
mod hex_id;
pub mod message;
pub mod mix;
pub mod names;
pub mod node;
pub mod onion;
pub mod p2p;
pub mod packet;
pub mod pow;
pub mod rpc;
pub mod sealed;
pub mod settings;
pub mod sim;
pub mod speakeasy;
pub mod store;
pub mod sync;
pub mod tag;

pub use clock::unix_now;
