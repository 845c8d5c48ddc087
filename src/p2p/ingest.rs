//! Packets received from peers on their way to the store, taken in **deficit round robin**
//! over peers (docs/admission.md §4), so a peer that floods delays only itself.
//!
//! Each peer has its own queue. A batch for the store is built by visiting the peers that
//! have packets in ring order; each visit adds [`QUANTUM`] to the peer's deficit and takes
//! packets while the deficit covers their cost. Every packet costs one (all packets are the
//! same size), so this is round robin with a quantum; a peer whose queue empties leaves the
//! ring and loses its deficit. A queue is bounded by its peer's ingest permits
//! ([`super::peer::INGEST_SLOTS`]), which travel with the packets and are released when the
//! batch is stored: a flooding peer's reader waits for its own permits and nobody else's.
//! All queues together are bounded by [`INGEST_TOTAL`] (a second permit each packet holds),
//! so many peers at once cannot hold more than that in memory either; a peer can take at
//! most its own slots of it, and the queues always drain, so nobody waits on it for long.

use crate::packet::{Packet, PacketId};
use crate::sync::Locked;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// Packets a peer may contribute per round.
pub const QUANTUM: usize = 32;
/// Packets received from all peers and not yet stored (≈ 18 MiB): four peers' worth of
/// [`crate::p2p::peer::INGEST_SLOTS`].
pub const INGEST_TOTAL: usize = 16_384;

/// What a queued packet holds until it is stored: one of its peer's slots and one of the
/// node's [`INGEST_TOTAL`].
#[derive(Debug)]
pub struct IngestPermit {
    _peer: OwnedSemaphorePermit,
    _total: Option<OwnedSemaphorePermit>,
}

impl IngestPermit {
    pub fn new(peer: OwnedSemaphorePermit, total: OwnedSemaphorePermit) -> IngestPermit {
        IngestPermit {
            _peer: peer,
            _total: Some(total),
        }
    }

    /// A permit of the peer's slots only (tests of the queue alone).
    #[cfg(test)]
    pub fn peer_only(peer: OwnedSemaphorePermit) -> IngestPermit {
        IngestPermit {
            _peer: peer,
            _total: None,
        }
    }
}

/// A packet from a peer, with the permit that bounds the peer's queue.
pub struct Item {
    pub peer: u64,
    /// The packet's id, computed once when it arrived.
    pub id: PacketId,
    pub packet: Packet,
    pub permit: IngestPermit,
}

#[derive(Default)]
struct State {
    queues: HashMap<u64, (VecDeque<Item>, usize)>,
    ring: VecDeque<u64>,
}

#[derive(Default)]
pub struct Ingest {
    state: Mutex<State>,
    ready: Notify,
}

impl Ingest {
    pub fn new() -> Ingest {
        Ingest::default()
    }

    /// Queue a packet (never blocks: the permit bounds the queue).
    #[cfg(test)]
    pub fn push(&self, item: Item) {
        self.push_many(vec![item])
    }

    /// Queue packets of one peer, in order (never blocks: the permits bound the queue).
    pub fn push_many(&self, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let mut st = self.state.locked();
        for item in items {
            let peer = item.peer;
            let (q, _) = st.queues.entry(peer).or_default();
            let was_empty = q.is_empty();
            q.push_back(item);
            if was_empty {
                st.ring.push_back(peer);
            }
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Packets waiting, over all peers.
    pub fn len(&self) -> usize {
        self.state
            .locked()
            .queues
            .values()
            .map(|(q, _)| q.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` packets in deficit round robin order (empty if none wait).
    pub fn take(&self, max: usize) -> Vec<Item> {
        let mut st = self.state.locked();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(peer) = st.ring.pop_front() else {
                break;
            };
            let Some((q, deficit)) = st.queues.get_mut(&peer) else {
                continue;
            };
            *deficit += QUANTUM;
            while *deficit >= 1 && out.len() < max {
                match q.pop_front() {
                    Some(item) => {
                        out.push(item);
                        *deficit -= 1;
                    }
                    None => break,
                }
            }
            if q.is_empty() {
                st.queues.remove(&peer);
            } else {
                st.ring.push_back(peer);
            }
        }
        out
    }

    /// Wait until packets are queued, then take up to `max`.
    pub async fn next(&self, max: usize) -> Vec<Item> {
        loop {
            let notified = self.ready.notified();
            let batch = self.take(max);
            if !batch.is_empty() {
                return batch;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::BODY_LEN;
    use crate::tag::Tag;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn item(peer: u64, n: u8, sem: &Arc<Semaphore>) -> Item {
        let packet = Packet {
            tag: Tag([n; 20]),
            expires: 1,
            nonce: n as u64,
            body: Box::new([n; BODY_LEN]),
        };
        Item {
            peer,
            id: packet.id(),
            packet,
            permit: IngestPermit::peer_only(sem.clone().try_acquire_owned().unwrap()),
        }
    }

    #[test]
    fn a_flooding_peer_gets_one_quantum_per_round_and_others_go_first_in_line() {
        let sem = Arc::new(Semaphore::new(10_000));
        let q = Ingest::new();
        for i in 0..1000 {
            q.push(item(1, (i % 250) as u8, &sem));
        }
        q.push(item(2, 1, &sem));
        q.push(item(3, 2, &sem));
        let batch = q.take(100);
        assert_eq!(batch.len(), 100);
        let peers: Vec<u64> = batch.iter().map(|i| i.peer).collect();
        // Round one: 32 of the flooder's, then the two honest ones at once.
        assert!(peers[..QUANTUM].iter().all(|p| *p == 1));
        assert_eq!(&peers[QUANTUM..QUANTUM + 2], &[2, 3]);
        assert_eq!(q.len(), 902);
        // Permits come back as batches are dropped (stored).
        assert_eq!(sem.available_permits(), 10_000 - 1002);
        drop(batch);
        assert_eq!(sem.available_permits(), 10_000 - 902);
        // The flooder alone drains in order.
        let rest = q.take(10_000);
        assert_eq!(rest.len(), 902);
        assert!(q.is_empty() && q.take(5).is_empty());
    }
}
