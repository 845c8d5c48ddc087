//! Mixing: the Tau pool ([`pool`]) that holds peeled packets until the sender's minimum crowd
//! and minimum delay are both met, the mix role ([`mixer`]): key, peeling, replay cache,
//! release; the standard Tau levels ([`tau`]); cover traffic ([`cover`]); loop packets and the
//! (n-1) alarm ([`loops`]); mix records on the bus ([`gossip`]); postage checks ([`postage`]); sending through mixes ([`send`]).

pub mod cover;
pub mod gossip;
pub mod loop_monitor;
pub mod loops;
pub mod mixer;
pub mod pool;
pub mod postage;
pub mod route;
pub mod send;
pub mod tau;

pub use mixer::{MixStats, Mixer, MixerParts};
