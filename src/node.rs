//! The node's state and its rules for admitting packets.
//!
//! [`Node`] owns the store and the limits. Every packet that enters — sent by the local user,
//! imported from a file, and later received from peers — goes through [`Node::admit`]: checked
//! (expiry window), inserted, made durable, and only then announced on the node's event channel
//! and acknowledged. Reading (messages and packets by tag) is also here, so the RPC layer only
//! translates.

use crate::message::{self, Assembler, CompleteMessage, MessageError, MessageId, PartialMessage};
use crate::packet::{Packet, PacketError, PacketId, DEFAULT_MAX_TTL};
use crate::store::{Inserted, Store, StoreError, TagRead};
use crate::sync::Locked;
use crate::tag::Tag;
use namecoin::Network;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Limits a node enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest accepted time-to-live in seconds.
    pub max_ttl: u32,
    /// Largest message `send` accepts, in bytes.
    pub max_message: usize,
    /// Most packets one read returns.
    pub max_read_packets: usize,
    /// Check each packet's proof of work (always, except in the benchmark that measures what
    /// the check costs; no flag or setting turns it off).
    pub verify_work: bool,
}

impl Limits {
    /// The one TTL rule for everything this node sends: `None` means the maximum; otherwise
    /// 60 s up to the maximum.
    pub fn check_ttl(&self, ttl: Option<u32>) -> Result<u32, NodeError> {
        let ttl = ttl.unwrap_or(self.max_ttl);
        if ttl > self.max_ttl {
            return Err(NodeError::TtlTooLong {
                ttl,
                max: self.max_ttl,
            });
        }
        if ttl < MIN_TTL {
            return Err(NodeError::TtlTooShort);
        }
        Ok(ttl)
    }
}

/// Shortest TTL a node sends with.
pub const MIN_TTL: u32 = 60;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ttl: DEFAULT_MAX_TTL,
            max_message: message::DEFAULT_MAX_MESSAGE,
            max_read_packets: 1 << 20,
            verify_work: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("packet {index}: {err}")]
    InvalidPacket { index: usize, err: PacketError },
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("ttl of {ttl}s is over this node's maximum of {max}s")]
    TtlTooLong { ttl: u32, max: u32 },
    #[error("ttl must be at least 60 seconds")]
    TtlTooShort,
    #[error("below the admission floor: this packet's work per TTL is {score}, the node now asks at least {floor} (the store is filling or full; a fresh send solves for the current floor)")]
    BelowFloor { score: u64, floor: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A packet that was newly stored: what subscribers and (later) peers are told about.
#[derive(Debug, Clone)]
pub struct NewPacket {
    pub seq: u64,
    pub id: PacketId,
    pub packet: Packet,
    /// The peer connection that delivered it (`None`: made or imported here). The relay
    /// does not announce a packet back to it.
    pub from: Option<u64>,
}

/// A packet to admit: its id (the hash of its bytes) and where it came from.
type Arriving = (PacketId, Packet, Option<u64>);

/// The packets one admission stored, in the order given: subscribers get them a batch at a
/// time (one wake-up and one channel slot per batch, not per packet).
pub type NewPackets = Arc<[NewPacket]>;

/// Outcome of admitting a batch of packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    pub new: usize,
    pub duplicates: usize,
    /// Refused: below the admission floor, or the store is full of packets that score at
    /// least as high.
    pub below_floor: usize,
}

/// Own packets are re-solved for a risen peer floor for this long after they were published.
pub const RAISE_WINDOW: u32 = 600;
/// Most own packets remembered for that.
pub const RAISE_KEEP: usize = 4096;
/// Rounds of solving again when own packets meet a floor that rose meanwhile.
pub const PUBLISH_ROUNDS: usize = 3;
/// Own sends solve for peers' floors up to this many times the node's own floor.
pub const PEER_FLOOR_CAP: u64 = 4;

/// Admission as `bump status` shows it (docs/admission.md).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdmissionStatus {
    /// The network's base work.
    pub base_work: u64,
    /// The floor now: the work per TTL a new packet needs.
    pub floor: u64,
    /// The highest floor a BuMP peer announced.
    pub peer_floor: u64,
    /// Packets solved and to solve by sends in progress.
    pub solving_done: u64,
    pub solving_total: u64,
}

/// What a node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub network: Network,
    pub netdir: PathBuf,
}

pub struct Node {
    store: Arc<Store>,
    limits: Limits,
    info: NodeInfo,
    events: broadcast::Sender<NewPackets>,
    started: Instant,
    shutdown: CancellationToken,
    /// The highest floor BuMP peers told us (the overlay keeps it current); own packets are
    /// solved for it so that they travel past those peers too.
    peer_floor: AtomicU64,
    /// Packets solved / to solve by the sends in progress (for a progress line).
    solve_done: Arc<AtomicU64>,
    solve_total: AtomicU64,
    /// Own packets published in the last [`RAISE_WINDOW`] seconds (at most [`RAISE_KEEP`]),
    /// with when: re-solved when a peer's floor rises above them ([`Node::raise_own`]).
    recent_own: std::sync::Mutex<std::collections::VecDeque<(u32, Packet)>>,
    /// When (unix ms) a packet from a peer was last stored new; 0 = none since start. The
    /// mix reads it to tell a quiet network from a busy one (mix/pool.rs, staged entries).
    last_from_peer_ms: AtomicU64,
}

/// Expiry for a message sent now with `ttl`: quantized so that it tells observers little about
/// when the message was sent (rounded down to the hour for TTLs of two hours or more, to the
/// minute below that).
pub fn quantized_expiry(now: u32, ttl: u32) -> u32 {
    let quantum = if ttl >= 7200 { 3600 } else { 60 };
    let raw = now.saturating_add(ttl);
    (raw / quantum) * quantum
}

/// The expiry grid of every onion layer (docs/protocol.md §6.2): 6 hours.
pub const MIX_EXPIRY_GRID: u32 = 6 * 3600;

/// Expiry of every layer of a mixed send: `now + ttl` rounded *up* to the 6-hour grid, so that
/// all mixed traffic of a 6-hour window shares one expiry and a short TTL marks nothing (a
/// TTL under 6 h lives until the next grid line). Rounded down instead where up would pass
/// `now + max_ttl`; a node whose `max_ttl` cannot reach a grid line falls back to
/// [`quantized_expiry`].
pub fn mixed_expiry(now: u32, ttl: u32, max_ttl: u32) -> u32 {
    let g = MIX_EXPIRY_GRID;
    let raw = now.saturating_add(ttl);
    let up = raw.div_ceil(g).saturating_mul(g);
    if up <= now.saturating_add(max_ttl) {
        return up;
    }
    let down = raw / g * g;
    if down > now {
        down
    } else {
        quantized_expiry(now, ttl)
    }
}

impl Node {
    pub fn new(
        store: Arc<Store>,
        limits: Limits,
        info: NodeInfo,
        shutdown: CancellationToken,
    ) -> Node {
        let (events, _) = broadcast::channel(4096);
        Node {
            store,
            limits,
            info,
            events,
            started: Instant::now(),
            shutdown,
            peer_floor: AtomicU64::new(0),
            solve_done: Arc::new(AtomicU64::new(0)),
            solve_total: AtomicU64::new(0),
            recent_own: Default::default(),
            last_from_peer_ms: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The base proof of work of this node's network ([`crate::pow::base_work`]).
    pub fn base_work(&self) -> u64 {
        crate::pow::base_work(self.info.network)
    }

    /// The admission rules for one packet: expiry window, then proof of work.
    pub fn check(&self, p: &Packet, now: u32) -> Result<(), PacketError> {
        self.check_identified(&p.id(), p, now)
    }

    /// [`Node::check`] with the packet's id already computed.
    fn check_identified(&self, id: &PacketId, p: &Packet, now: u32) -> Result<(), PacketError> {
        p.check_expiry(now, self.limits.max_ttl)?;
        if !self.limits.verify_work {
            return Ok(());
        }
        crate::pow::check_id(id, p.expires, now, self.base_work())
    }

    /// Give packets this node made the proof of work every node will ask of them (their TTL
    /// plus the clock skew a receiver may have), on all cores.
    pub async fn solve(&self, packets: Vec<Packet>, now: u32) -> Vec<Packet> {
        let ttl = packets
            .iter()
            .map(|p| p.expires.saturating_sub(now))
            .max()
            .unwrap_or(0)
            .saturating_add(crate::packet::CLOCK_SKEW);
        let target = self.solve_target(packets.len(), now);
        let n = packets.len() as u64;
        self.solve_total.fetch_add(n, Ordering::Relaxed);
        let out = crate::pow::solve_off_thread_counted(
            packets,
            crate::pow::required_work(target, ttl),
            self.solve_done.clone(),
        )
        .await;
        // The last send to finish resets the counters.
        if self.solve_total.load(Ordering::Relaxed) == self.solve_done.load(Ordering::Relaxed) {
            self.solve_total.store(0, Ordering::Relaxed);
            self.solve_done.store(0, Ordering::Relaxed);
        }
        out
    }

    /// The score `k` own packets are solved for: the base while nobody asks more; above it,
    /// the floor this store will have once they are in, or the highest floor a peer told us,
    /// plus 25 % for a floor that rises meanwhile (peers' floors capped at [`PEER_FLOOR_CAP`]
    /// times ours); when they must evict, 1.5× what they evict
    /// (so they get in here and, on nodes as full, there too).
    pub fn solve_target(&self, k: usize, now: u32) -> u64 {
        let base = self.base_work();
        let own = self.store.floor_with(k as u64, now);
        // Peers' floors count up to PEER_FLOOR_CAP times our own: a peer cannot make this
        // node burn its cores by announcing an absurd floor.
        let peers = self
            .peer_floor
            .load(Ordering::Relaxed)
            .min(own.max(base).saturating_mul(PEER_FLOOR_CAP));
        let floor = own.max(peers);
        let mut target = if floor > base {
            floor.saturating_add(floor / 4)
        } else {
            base
        };
        if let Ok(Some(lowest)) = self.store.floor_for(k) {
            target = target.max(lowest.saturating_add(lowest / 2 + 1));
        }
        target
    }

    /// Keep the packets of a publish round that were not refused, for [`Node::raise_own`].
    fn remember_own(&self, tried: Vec<Packet>, refused: &[(Packet, u64, u64)], now: u32) {
        let refused: std::collections::HashSet<PacketId> =
            refused.iter().map(|(p, _, _)| p.id()).collect();
        let mut q = self.recent_own.locked();
        for p in tried {
            if !refused.contains(&p.id()) {
                q.push_back((now, p));
            }
        }
        while q.len() > RAISE_KEEP || q.front().is_some_and(|(t, _)| t + RAISE_WINDOW < now) {
            q.pop_front();
        }
    }

    /// Like a fee bump: own packets published lately whose score is under `floor` (what a peer
    /// now asks) are solved again and published, so they travel past that peer; the old ones
    /// stay (readers take a message's part once). Returns how many were re-solved.
    pub async fn raise_own(&self, floor: u64, now: u32) -> usize {
        let low: Vec<Packet> = {
            let mut q = self.recent_own.locked();
            let (low, keep): (Vec<_>, Vec<_>) = q.drain(..).partition(|(_, p)| {
                p.expires > now && crate::pow::score(&p.id(), p.expires - now) < floor
            });
            q.extend(keep);
            low.into_iter().map(|(_, p)| p).collect()
        };
        if low.is_empty() {
            return 0;
        }
        let n = low.len();
        tracing::debug!(
            packets = n,
            floor,
            "a peer's floor rose above own packets; solving them again"
        );
        let again = self.solve(low, now).await;
        if let Err(e) = self.publish(again, now).await {
            tracing::info!("own packets re-solved for a risen floor were not stored: {e}");
        }
        n
    }

    /// The overlay's report of the highest floor its BuMP peers announced.
    pub fn set_peer_floor(&self, floor: u64) {
        self.peer_floor.store(floor, Ordering::Relaxed);
    }

    /// What `bump status` shows of admission.
    pub fn admission_status(&self, now: u32) -> AdmissionStatus {
        let (solving_done, solving_total) = self.solving();
        AdmissionStatus {
            base_work: self.base_work(),
            floor: self.store.floor(now),
            peer_floor: self.peer_floor.load(Ordering::Relaxed),
            solving_done,
            solving_total,
        }
    }

    /// Packets (solved, to solve) by the sends now solving their proof of work.
    pub fn solving(&self) -> (u64, u64) {
        (
            self.solve_done.load(Ordering::Relaxed),
            self.solve_total.load(Ordering::Relaxed),
        )
    }

    /// Receive every packet newly stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NewPackets> {
        self.events.subscribe()
    }

    /// Validate all packets first (nothing is stored if one is invalid), then store them, wait
    /// until they are durable, then announce the new ones.
    pub async fn admit(&self, packets: Vec<Packet>, now: u32) -> Result<Admitted, NodeError> {
        self.admit_with(identify(packets), now, true).await
    }

    /// [`Node::admit`]; with `strict`, a packet refused for the floor is an error (local
    /// imports want to know), else it is only counted (a peer's packet that loses).
    async fn admit_with(
        &self,
        packets: Vec<Arriving>,
        now: u32,
        strict: bool,
    ) -> Result<Admitted, NodeError> {
        let (out, refused) = self.admit_detailed(packets, now, || {}).await?;
        match refused.first() {
            Some((_, score, floor)) if strict => Err(NodeError::BelowFloor {
                score: *score,
                floor: *floor,
            }),
            _ => Ok(out),
        }
    }

    /// Validate all, store, wait until durable, announce the new ones; the packets refused
    /// for the floor come back with their score and the floor they missed. `inserted` runs
    /// (or is dropped, on an error) once the packets are in the store, before the wait for
    /// the disk: what a caller holds to bound unstored packets can go then.
    async fn admit_detailed(
        &self,
        packets: Vec<Arriving>,
        now: u32,
        inserted: impl FnOnce(),
    ) -> Result<(Admitted, Vec<(Packet, u64, u64)>), NodeError> {
        for (index, (id, p, _)) in packets.iter().enumerate() {
            self.check_identified(id, p, now)
                .map_err(|err| NodeError::InvalidPacket { index, err })?;
        }
        let store = self.store.clone();
        let (results, packets) = tokio::task::spawn_blocking(move || {
            let refs: Vec<(PacketId, &Packet)> =
                packets.iter().map(|(id, p, _)| (*id, p)).collect();
            let r = store.insert_identified(&refs, now);
            (r, packets)
        })
        .await
        .map_err(|_| StoreError::Corrupt("insert task panicked"))?;
        let results = results?;
        inserted();
        self.store.durable().await?;
        let mut out = Admitted::default();
        let mut refused = Vec::new();
        let mut new = Vec::with_capacity(packets.len());
        for ((id, p, from), r) in packets.into_iter().zip(results) {
            match r {
                Inserted::New(seq) => {
                    out.new += 1;
                    new.push(NewPacket {
                        seq,
                        id,
                        packet: p,
                        from,
                    });
                }
                Inserted::Duplicate => out.duplicates += 1,
                Inserted::Refused { score, floor } => {
                    out.below_floor += 1;
                    refused.push((p, score, floor));
                }
            }
        }
        if !new.is_empty() {
            // No receivers is fine: nobody is listening.
            let _ = self.events.send(new.into());
        }
        Ok((out, refused))
    }

    /// Admit packets this node made (its sends, its mix's releases). Those refused because the
    /// floor rose after they were solved are solved again for the floor now and retried, up
    /// to [`PUBLISH_ROUNDS`] rounds; then the refusal is the error.
    pub async fn publish(&self, packets: Vec<Packet>, now: u32) -> Result<Admitted, NodeError> {
        let mut pending = packets;
        let mut total = Admitted::default();
        for round in 1..=PUBLISH_ROUNDS {
            let tried = pending.clone();
            let (a, refused) = self.admit_detailed(identify(pending), now, || {}).await?;
            total.new += a.new;
            total.duplicates += a.duplicates;
            self.remember_own(tried, &refused, now);
            let Some(&(_, score, floor)) = refused.first() else {
                return Ok(total);
            };
            if round == PUBLISH_ROUNDS {
                return Err(NodeError::BelowFloor { score, floor });
            }
            tracing::debug!(
                refused = refused.len(),
                floor,
                "the floor rose while solving; solving again"
            );
            let again = refused.into_iter().map(|(p, _, _)| p).collect();
            pending = self.solve(again, now).await;
        }
        Ok(total)
    }

    /// Admit packets that arrived from peers: each is checked on its own, the valid ones are
    /// stored as by [`Node::admit`], and the invalid ones are returned with their index in
    /// `packets` and the reason, so the caller can tell their senders. `inserted` runs once
    /// they are in the store, before the wait for the disk (the overlay frees the peers'
    /// ingest slots then).
    pub async fn admit_each(
        &self,
        packets: Vec<(PacketId, Packet, u64)>,
        now: u32,
        inserted: impl FnOnce(),
    ) -> Result<(Admitted, Vec<(usize, PacketError)>), NodeError> {
        let mut refused = Vec::new();
        let mut valid = Vec::with_capacity(packets.len());
        for (i, (id, p, from)) in packets.into_iter().enumerate() {
            match self.check_identified(&id, &p, now) {
                Ok(()) => valid.push((id, p, Some(from))),
                Err(e) => refused.push((i, e)),
            }
        }
        let admitted = if valid.is_empty() {
            inserted();
            Admitted::default()
        } else {
            self.admit_detailed(valid, now, inserted).await?.0
        };
        if admitted.new > 0 {
            self.last_from_peer_ms
                .store(crate::clock::unix_ms(), Ordering::Relaxed);
        }
        Ok((admitted, refused))
    }

    /// When (unix ms) a packet from a peer was last stored new since start, if one was.
    pub fn last_from_peer_ms(&self) -> Option<u64> {
        match self.last_from_peer_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Split `data` into packets under `tag` and admit them. Returns the message id, the
    /// number of packets and their expiry.
    pub async fn send_message(
        &self,
        tag: Tag,
        data: &[u8],
        ttl: Option<u32>,
        now: u32,
    ) -> Result<(MessageId, usize, u32), NodeError> {
        self.send_framed(tag, data, &message::ClearFramer, ttl, now)
            .await
    }

    /// [`Node::send_message`] with the parts framed by `framer`.
    pub async fn send_framed(
        &self,
        tag: Tag,
        data: &[u8],
        framer: &dyn message::Framer,
        ttl: Option<u32>,
        now: u32,
    ) -> Result<(MessageId, usize, u32), NodeError> {
        let ttl = self.limits.check_ttl(ttl)?;
        let expires = quantized_expiry(now, ttl);
        let (id, packets) = message::split_framed(
            data,
            framer,
            tag,
            expires,
            self.limits.max_message,
            &mut rand::rngs::OsRng,
        )?;
        let n = packets.len();
        let packets = self.solve(packets, now).await;
        self.publish(packets, now).await?;
        Ok((id, n, expires))
    }

    /// Unexpired packets of a tag with seq > `after`, at most `limit`, and its damaged ones.
    pub async fn read(&self, tag: Tag, after: u64, limit: usize) -> Result<TagRead, NodeError> {
        let store = self.store.clone();
        let limit = limit.min(self.limits.max_read_packets);
        let now = crate::unix_now();
        let r = tokio::task::spawn_blocking(move || store.read_tag(&tag, after, limit, now))
            .await
            .map_err(|_| StoreError::Corrupt("read task panicked"))?;
        Ok(r?)
    }

    /// Unexpired packets of a tag in arrival order, with their sequence numbers.
    pub async fn packets(&self, tag: Tag) -> Result<Vec<(u64, Packet)>, NodeError> {
        Ok(self.read(tag, 0, usize::MAX).await?.packets)
    }

    /// Reassemble the messages of a tag.
    pub async fn messages(&self, tag: Tag) -> Result<TagMessages, NodeError> {
        let read = self.read(tag, 0, usize::MAX).await?;
        let mut a = Assembler::new();
        for (seq, p) in &read.packets {
            a.push(*seq, p);
        }
        let unframed = a.unframed;
        let (done, partial) = a.finish();
        Ok(TagMessages {
            done,
            partial,
            unframed,
            damaged: read.damaged,
        })
    }
}

/// What reading a tag's messages found.
#[derive(Debug, Default)]
pub struct TagMessages {
    /// Complete messages in completion order.
    pub done: Vec<CompleteMessage>,
    pub partial: Vec<PartialMessage>,
    /// Packets that carry no message frame.
    pub unframed: usize,
    /// Damaged packets of the tag, by segment file.
    pub damaged: Vec<String>,
}

/// Each packet made or imported here with its id (the hash of its bytes, computed here once).
fn identify(packets: Vec<Packet>) -> Vec<Arriving> {
    packets.into_iter().map(|p| (p.id(), p, None)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn node(dir: &std::path::Path) -> Node {
        node_quota(dir, crate::store::DEFAULT_MAX_PACKETS)
    }

    fn node_quota(dir: &std::path::Path, max_packets: u64) -> Node {
        let cfg = StoreConfig {
            base_work: crate::pow::REGTEST_BASE_WORK,
            max_packets,
            ..StoreConfig::default()
        };
        let store = Arc::new(Store::open(dir, &cfg).unwrap());
        let info = NodeInfo {
            network: Network::Regtest,
            netdir: dir.to_path_buf(),
        };
        Node::new(
            store,
            Limits {
                max_message: 5000,
                ..Limits::default()
            },
            info,
            CancellationToken::new(),
        )
    }

    #[test]
    fn expiry_is_quantized_and_in_the_future() {
        let now = 1_700_000_123;
        let g = MIX_EXPIRY_GRID;
        // Short TTLs live to the next grid line; long ones stay within the maximum.
        for ttl in [60, 3600, 6 * 3600, 24 * 3600] {
            let e = mixed_expiry(now, ttl, 48 * 3600);
            assert_eq!(e % g, 0, "ttl {ttl}");
            assert!(e >= now + ttl && e < now + ttl + g, "ttl {ttl}");
        }
        let e = mixed_expiry(now, 48 * 3600, 48 * 3600);
        assert_eq!(e % g, 0);
        assert!(e <= now + 48 * 3600 && e > now + 42 * 3600);
        // Two sends hours apart with different TTLs share an expiry.
        let t0 = 1_800_000_000 / g * g + 60;
        assert_eq!(
            mixed_expiry(t0, 600, 48 * 3600),
            mixed_expiry(t0 + 4 * 3600, 3600, 48 * 3600)
        );
        // A node with a max TTL under the grid falls back to the minute.
        assert_eq!(mixed_expiry(now, 120, 300), quantized_expiry(now, 120));
        let e = quantized_expiry(now, 48 * 3600);
        assert_eq!(e % 3600, 0);
        assert!(e > now + 47 * 3600 && e <= now + 48 * 3600);
        let e = quantized_expiry(now, 120);
        assert_eq!(e % 60, 0);
        assert!(e > now);
    }

    #[tokio::test]
    async fn send_then_read_back_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let mut rx = n.subscribe();
        let now = crate::unix_now();
        let data = vec![42u8; 2500];
        let (id, parts, _) = n
            .send_message(Tag([1; 20]), &data, None, now)
            .await
            .unwrap();
        assert_eq!(parts, 3);
        let mut told = 0;
        while told < 3 {
            for ev in rx.recv().await.unwrap().iter() {
                assert_eq!(ev.packet.tag, Tag([1; 20]));
                told += 1;
            }
        }
        assert_eq!(told, 3);
        let m = n.messages(Tag([1; 20])).await.unwrap();
        assert_eq!((m.done.len(), m.partial.len(), m.unframed), (1, 0, 0));
        assert_eq!(m.done[0].id, id);
        assert_eq!(m.done[0].data, data);
        assert!(matches!(
            n.send_message(Tag([1; 20]), &[0; 5001], None, now).await,
            Err(NodeError::Message(MessageError::TooLarge { .. }))
        ));
        assert!(matches!(
            n.send_message(Tag([1; 20]), b"x", Some(DEFAULT_MAX_TTL + 1), now)
                .await,
            Err(NodeError::TtlTooLong { .. })
        ));
    }

    #[tokio::test]
    async fn own_packets_refused_for_a_risen_floor_are_solved_again_imports_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let n = node_quota(dir.path(), 8);
        let now = crate::unix_now();
        let pkt = |i: u8| Packet {
            tag: Tag([3; 20]),
            expires: now + 3600,
            nonce: 0,
            body: Box::new([i; crate::packet::BODY_LEN]),
        };
        // Fill past half: the floor rises above the base.
        for i in 0..6 {
            let p = n.solve(vec![pkt(i)], now).await;
            n.publish(p, now).await.unwrap();
        }
        let floor = n.store().floor(now);
        assert!(floor > crate::pow::REGTEST_BASE_WORK);
        // A packet solved at the base only, scoring under the floor (as if solved before the
        // floor rose).
        let weak = (10..200u8)
            .map(|i| {
                let mut p = pkt(i);
                crate::pow::solve(&mut p, crate::pow::required_work(16, 3600 + 600));
                p
            })
            .find(|p| crate::pow::score(&p.id(), 3600) < floor)
            .unwrap();
        match n.admit(vec![weak.clone()], now).await {
            Err(NodeError::BelowFloor { score, floor: f }) => assert!(score < f && f == floor),
            r => panic!("{r:?}"),
        }
        // Published as the node's own: solved again and stored.
        let a = n.publish(vec![weak.clone()], now).await.unwrap();
        assert_eq!(a.new, 1);
        assert_eq!(n.store().len(), 7);
        assert!(
            !n.store().contains(&weak.id()).unwrap(),
            "stored with a new nonce"
        );
    }

    #[tokio::test]
    async fn admit_is_all_or_nothing_on_invalid_packets() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let now = crate::unix_now();
        let unsolved = Packet {
            tag: Tag([2; 20]),
            expires: now + 100,
            nonce: 0,
            body: Box::new([0; crate::packet::BODY_LEN]),
        };
        let good = n.solve(vec![unsolved.clone()], now).await.pop().unwrap();
        let old = Packet {
            tag: Tag([2; 20]),
            expires: now - 1,
            nonce: 0,
            body: Box::new([1; crate::packet::BODY_LEN]),
        };
        let r = n.admit(vec![good.clone(), old], now).await;
        assert!(matches!(r, Err(NodeError::InvalidPacket { index: 1, .. })));
        assert!(n.store().is_empty());
        // Without its proof of work a packet is refused, and says why.
        let mut weak = unsolved.clone();
        while crate::pow::meets(&weak.id(), crate::pow::REGTEST_BASE_WORK) {
            weak.nonce += 1;
        }
        match n.admit(vec![weak], now).await {
            Err(NodeError::InvalidPacket {
                err: PacketError::NotEnoughWork { .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            n.admit(vec![good.clone(), good], now).await.unwrap(),
            Admitted {
                new: 1,
                duplicates: 1,
                below_floor: 0
            }
        );
    }
}
