//! What to fetch from whom: announced packets we lack, the requests in flight, and the bounds
//! that keep one peer from filling memory with announcements (docs/protocol.md §5.5).
//!
//! - Each peer has a **backlog** of announced ids we lack and have not asked for yet, at most
//!   [`MAX_BACKLOG_PER_PEER`] (and [`MAX_BACKLOG_TOTAL`] over all peers); announcements
//!   beyond that are dropped and counted (the peer's catch-up resumes on its next connection).
//! - At most [`MAX_INFLIGHT_PER_PEER`] requests are in flight per peer and
//!   [`MAX_INFLIGHT_TOTAL`] in all. A peer's backlog is asked in batches: when its in-flight
//!   count falls to half the bound, it is topped up in one `getdata`.
//! - An id is asked from one peer at a time. Other peers that announce it while it is in
//!   flight are remembered as **alternates** (at most [`MAX_ALTERNATES`]); when the first
//!   answers `notfound`, disconnects, or lets the request time out, the next alternate is
//!   asked.
//! - A peer that has requests in flight and delivers nothing (neither packets nor
//!   `notfound`) for [`STALL_TIMEOUT`] is **stalling** and is disconnected by the overlay.
//!
//! The structure holds no I/O and no store: callers say which ids the store already has.

use crate::packet::PacketId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Announced-but-not-requested ids kept per peer (8 MiB of ids).
pub const MAX_BACKLOG_PER_PEER: usize = 262_144;
/// Announced-but-not-requested ids kept over all peers (16 MiB of ids).
pub const MAX_BACKLOG_TOTAL: usize = 524_288;
/// Requests in flight per peer.
pub const MAX_INFLIGHT_PER_PEER: usize = 16_384;
/// Requests in flight over all peers.
pub const MAX_INFLIGHT_TOTAL: usize = 131_072;
/// Other announcers remembered per id in flight.
pub const MAX_ALTERNATES: usize = 2;
/// A request not answered within this time is asked elsewhere.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer with requests in flight that answers nothing for this long is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Request {
    peer: u64,
    at: Instant,
    alternates: Vec<u64>,
}

impl Request {
    /// Remember another announcer of this id, if there is room and it is not the one asked.
    fn add_alternate(&mut self, peer: u64) {
        if self.peer != peer
            && self.alternates.len() < MAX_ALTERNATES
            && !self.alternates.contains(&peer)
        {
            self.alternates.push(peer);
        }
    }
}

#[derive(Default)]
struct PeerState {
    backlog: VecDeque<PacketId>,
    inflight: usize,
    /// Announcements dropped because the backlog was full.
    dropped: u64,
    /// Last packet or notfound from this peer while it had requests in flight.
    last_answer: Option<Instant>,
}

/// Requests to send: (peer, ids for one `getdata`).
pub type Asks = Vec<(u64, Vec<PacketId>)>;

#[derive(Default)]
pub struct Fetcher {
    inflight: hashbrown::HashMap<PacketId, Request>,
    peers: HashMap<u64, PeerState>,
    backlog_total: usize,
}

impl Fetcher {
    pub fn new() -> Fetcher {
        Fetcher::default()
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Ids waiting to be asked for, over all peers.
    pub fn backlog(&self) -> usize {
        self.backlog_total
    }

    /// Announcements dropped from `peer` because its backlog was full.
    pub fn dropped(&self, peer: u64) -> u64 {
        self.peers.get(&peer).map(|p| p.dropped).unwrap_or(0)
    }

    /// Whether `peer` dropped announcements and has since been given everything else: its
    /// catch-up can only continue on a new connection.
    pub fn drained_after_overflow(&self, peer: u64) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.dropped > 0 && p.backlog.is_empty() && p.inflight == 0)
    }

    /// `peer` announced these ids, which the store lacks. Returns the ids to ask it now.
    pub fn announced(
        &mut self,
        peer: u64,
        ids: impl IntoIterator<Item = PacketId>,
        now: Instant,
        have: impl Fn(&PacketId) -> bool,
    ) -> Vec<PacketId> {
        let st = self.peers.entry(peer).or_default();
        for id in ids {
            if let Some(r) = self.inflight.get_mut(&id) {
                r.add_alternate(peer);
                continue;
            }
            if st.backlog.len() >= MAX_BACKLOG_PER_PEER || self.backlog_total >= MAX_BACKLOG_TOTAL {
                st.dropped += 1;
                continue;
            }
            st.backlog.push_back(id);
            self.backlog_total += 1;
        }
        self.top_up(peer, now, false, &have)
    }

    /// Ask `peer` for more of its backlog: when `force`, up to the bound; else only when its
    /// in-flight count has fallen to half the bound (so requests go out in batches).
    fn top_up(
        &mut self,
        peer: u64,
        now: Instant,
        force: bool,
        have: &impl Fn(&PacketId) -> bool,
    ) -> Vec<PacketId> {
        let Some(st) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        if !force && st.inflight > MAX_INFLIGHT_PER_PEER / 2 && !st.backlog.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        while st.inflight < MAX_INFLIGHT_PER_PEER && self.inflight.len() < MAX_INFLIGHT_TOTAL {
            let Some(id) = st.backlog.pop_front() else {
                break;
            };
            self.backlog_total -= 1;
            if have(&id) {
                continue;
            }
            // One probe of the table whether or not the id is in flight already.
            match self.inflight.entry(id) {
                hashbrown::hash_map::Entry::Occupied(mut r) => {
                    r.get_mut().add_alternate(peer);
                    continue;
                }
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert(Request {
                        peer,
                        at: now,
                        alternates: Vec::new(),
                    });
                }
            }
            if st.inflight == 0 {
                st.last_answer = Some(now);
            }
            st.inflight += 1;
            out.push(id);
        }
        out
    }

    /// A packet arrived from `peer`: true if it was asked from that peer. Also returns what to
    /// ask it next.
    pub fn delivered(
        &mut self,
        peer: u64,
        id: &PacketId,
        now: Instant,
        have: impl Fn(&PacketId) -> bool,
    ) -> (bool, Vec<PacketId>) {
        // One lookup: `remove`, and put back in the rare case it was asked of another peer.
        match self.inflight.remove(id) {
            Some(r) if r.peer != peer => {
                self.inflight.insert(*id, r);
                (false, Vec::new())
            }
            Some(_) => {
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.inflight = st.inflight.saturating_sub(1);
                    st.last_answer = Some(now);
                }
                (true, self.top_up(peer, now, false, &have))
            }
            None => (false, Vec::new()),
        }
    }

    /// Hand an in-flight id to its next alternate, or forget it.
    fn reassign(&mut self, id: PacketId, now: Instant, asks: &mut HashMap<u64, Vec<PacketId>>) {
        let Some(mut r) = self.inflight.remove(&id) else {
            return;
        };
        if let Some(st) = self.peers.get_mut(&r.peer) {
            st.inflight = st.inflight.saturating_sub(1);
        }
        while !r.alternates.is_empty() {
            let next = r.alternates.remove(0);
            let Some(st) = self.peers.get_mut(&next) else {
                continue;
            };
            if st.inflight == 0 {
                st.last_answer = Some(now);
            }
            st.inflight += 1;
            self.inflight.insert(
                id,
                Request {
                    peer: next,
                    at: now,
                    alternates: r.alternates,
                },
            );
            asks.entry(next).or_default().push(id);
            return;
        }
    }

    /// `peer` does not have these ids: ask their alternates, and top the peer up.
    pub fn not_found(
        &mut self,
        peer: u64,
        ids: &[PacketId],
        now: Instant,
        have: impl Fn(&PacketId) -> bool,
    ) -> Asks {
        let mut asks: HashMap<u64, Vec<PacketId>> = HashMap::new();
        for id in ids {
            if self.inflight.get(id).is_some_and(|r| r.peer == peer) {
                self.reassign(*id, now, &mut asks);
            }
        }
        if let Some(st) = self.peers.get_mut(&peer) {
            st.last_answer = Some(now);
        }
        let more = self.top_up(peer, now, false, &have);
        if !more.is_empty() {
            asks.entry(peer).or_default().extend(more);
        }
        asks.into_iter().collect()
    }

    /// `peer` is gone: its requests go to alternates; its backlog is forgotten.
    pub fn peer_gone(&mut self, peer: u64, now: Instant) -> Asks {
        if let Some(st) = self.peers.remove(&peer) {
            self.backlog_total -= st.backlog.len();
        }
        for r in self.inflight.values_mut() {
            r.alternates.retain(|p| *p != peer);
        }
        let mine: Vec<PacketId> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        let mut asks = HashMap::new();
        for id in mine {
            self.reassign(id, now, &mut asks);
        }
        asks.into_iter().collect()
    }

    /// Periodic upkeep: requests past [`REQUEST_TIMEOUT`] go to alternates; every peer with a
    /// backlog is topped up. Returns what to ask and the peers that are stalling.
    pub fn tick(&mut self, now: Instant, have: impl Fn(&PacketId) -> bool) -> (Asks, Vec<u64>) {
        let late: Vec<PacketId> = self
            .inflight
            .iter()
            .filter(|(_, r)| now.duration_since(r.at) >= REQUEST_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        let mut asks = HashMap::new();
        for id in late {
            self.reassign(id, now, &mut asks);
        }
        let peers: Vec<u64> = self.peers.keys().copied().collect();
        for p in peers {
            let more = self.top_up(p, now, true, &have);
            if !more.is_empty() {
                asks.entry(p).or_default().extend(more);
            }
        }
        let stalled = self
            .peers
            .iter()
            .filter(|(_, st)| {
                st.inflight > 0
                    && st
                        .last_answer
                        .is_some_and(|t| now.duration_since(t) >= STALL_TIMEOUT)
            })
            .map(|(p, _)| *p)
            .collect();
        (asks.into_iter().collect(), stalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> PacketId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        PacketId(b)
    }

    fn none(_: &PacketId) -> bool {
        false
    }

    #[test]
    fn a_flood_of_announcements_is_bounded_per_peer_and_in_flight() {
        let mut f = Fetcher::new();
        let t = Instant::now();
        let mut asked = 0;
        for batch in 0..40u32 {
            let ids = (0..50_000).map(|i| id(batch * 50_000 + i));
            asked += f.announced(1, ids, t, none).len();
        }
        assert_eq!(
            asked, MAX_INFLIGHT_PER_PEER,
            "one peer never has more in flight"
        );
        assert_eq!(f.inflight(), MAX_INFLIGHT_PER_PEER);
        assert!(f.backlog() <= MAX_BACKLOG_PER_PEER);
        assert_eq!(
            f.dropped(1) as usize,
            2_000_000 - MAX_BACKLOG_PER_PEER - MAX_INFLIGHT_PER_PEER
        );
        // It never answers: after the stall timeout it is reported.
        let (_, stalled) = f.tick(t + STALL_TIMEOUT, none);
        assert_eq!(stalled, vec![1]);
        f.peer_gone(1, t);
        assert_eq!((f.inflight(), f.backlog()), (0, 0));
    }

    #[test]
    fn notfound_disconnect_and_timeout_ask_the_other_announcer() {
        let mut f = Fetcher::new();
        let t = Instant::now();
        assert_eq!(f.announced(1, [id(1), id(2), id(3)], t, none).len(), 3);
        assert!(
            f.announced(2, [id(1), id(2), id(3)], t, none).is_empty(),
            "in flight at 1"
        );
        assert!(f.announced(3, [id(3)], t, none).is_empty());
        // notfound from 1 for id 1: asked from 2.
        let asks = f.not_found(1, &[id(1)], t, none);
        assert_eq!(asks, vec![(2, vec![id(1)])]);
        // Only the peer asked may deliver.
        assert!(!f.delivered(1, &id(1), t, none).0);
        assert!(f.delivered(2, &id(1), t, none).0);
        // Peer 1 goes away owing ids 2 and 3: 2 to peer 2, 3 to peer 2 (first alternate).
        let mut asks = f.peer_gone(1, t);
        asks.sort();
        assert_eq!(asks.len(), 1);
        let (p, mut ids) = asks.pop().unwrap();
        ids.sort();
        assert_eq!((p, ids), (2, vec![id(2), id(3)]));
        // Peer 2 lets id 3 time out: peer 3 is asked.
        let (asks, _) = f.tick(t + REQUEST_TIMEOUT, none);
        assert!(asks.contains(&(3, vec![id(3)])), "{asks:?}");
    }

    #[test]
    fn backlog_is_asked_in_batches_as_answers_come_back() {
        let mut f = Fetcher::new();
        let t = Instant::now();
        let n = MAX_INFLIGHT_PER_PEER as u32 * 3;
        let first = f.announced(1, (0..n).map(id), t, none);
        assert_eq!(first.len(), MAX_INFLIGHT_PER_PEER);
        let mut next = Vec::new();
        for i in &first[..MAX_INFLIGHT_PER_PEER / 2 - 1] {
            let (ok, more) = f.delivered(1, i, t, none);
            assert!(ok && more.is_empty(), "no refill above half");
        }
        let (_, more) = f.delivered(1, &first[MAX_INFLIGHT_PER_PEER / 2 - 1], t, none);
        next.extend(more);
        assert_eq!(next.len(), MAX_INFLIGHT_PER_PEER / 2, "one batch at half");
        // Ids the store already has are skipped.
        let mut g = Fetcher::new();
        assert!(g.announced(5, [id(9)], t, |_| true).is_empty());
        assert_eq!(g.backlog(), 0);
    }
}
