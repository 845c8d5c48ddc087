//! Mixing: the Tau pool ([`pool`]) that holds peeled packets until the sender's minimum crowd
//! and minimum delay are both met, and the mix role ([`role`]): key, peeling, replay cache,
//! release.

pub mod cover;
pub mod pool;
pub mod postage;
pub mod role;
pub mod send;

pub use role::{Mix, MixStats};
