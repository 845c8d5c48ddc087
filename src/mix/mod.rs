//! Mixing: the Tau pool ([`pool`]) that holds peeled packets until the sender's minimum crowd
//! and minimum delay are both met. The mix role (keys, peeling, replay cache, release loop)
//! builds on it.

pub mod pool;
