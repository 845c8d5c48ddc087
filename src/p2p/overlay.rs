//! The overlay: every connected peer, and the rules that make every BuMP node hold every
//! packet.
//!
//! - **Relay.** Each packet newly stored (sent locally, imported, or received) is announced by
//!   `inv` (type `INV_BUMP`) to every BuMP peer not known to have it. Coin-only peers get none.
//! - **Fetch.** Announced ids that the store lacks and nobody is already delivering are asked
//!   for with `getdata`; replies (`bump`) must have been requested from that peer.
//! - **Catch-up.** When a BuMP handshake completes, each side announces the ids of all its
//!   unexpired packets (inv batches ≤ 50,000), so both fetch what they missed.
//! - **Scoring.** Misbehaviour adds points; at 100 the peer is disconnected and its IP banned.
//! - **Connections.** `--connect` (only these), `--addnode` (these too), outbound slots filled
//!   from the peer table, inbound up to a limit, reconnects with exponential backoff.
//!
//! Locks, when more than one is held, are taken in this order: the store's index (through
//! `Store::with_membership`), the fetcher, the peer table.

use super::addrbook::AddrBook;
use super::fetch::Fetcher;
use super::handshake::{Nonces, VersionTemplate};
use super::ingest::{Ingest, Item};
use super::message::{Message, MAX_ADDR, MAX_INV, NODE_BUMP, RECON_VERSION};
use super::peer::{self, Ended, PeerCtx, PeerEvent, PeerShared};
use super::penalty;
use super::recon::{self, Snapshot};
use crate::clock::unix_secs;
use crate::node::Node;
use crate::packet::{PacketError, PacketId};
use crate::store::segments::SEGMENT_SECS;
use crate::sync::Locked;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::ServiceFlags;
use namecoin::Network;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use super::fetch::REQUEST_TIMEOUT;
pub use super::penalty::BAN_SCORE;
/// Most packets from peers stored in one batch.
const INGEST_BATCH: usize = 1024;
/// Batches from peers being checked and written at once.
const INGEST_PIPELINE: usize = 3;
/// Batches written and waiting for the disk's sync, at most (each holds its packets, about
/// 1 MiB, until then: the relay announces them once durable).
const DURABLE_PIPELINE: usize = 8;
/// A reconciliation snapshot is rebuilt when the store changed, or when it is older than this
/// (packets expire).
const SNAPSHOT_AGE: Duration = Duration::from_secs(30);
/// How often a node reconciles again with each peer it dialled.
pub const RECON_EVERY: Duration = Duration::from_secs(600);
/// Peers dialled close together (a start, a return from downtime) are reconciled one after
/// the other, this far apart: the first session brings what the node missed, the later ones
/// then find only what that peer alone has (the overlay simulation, docs/scale.md, measures
/// the difference).
pub const RECON_STAGGER: Duration = Duration::from_secs(3);
/// How often the floor told to peers is brought up to date.
const FLOOR_EVERY: Duration = Duration::from_secs(1);
/// Peer events waiting for the overlay before readers are slowed down. With at most
/// [`super::peer::EVENT_IDS`] ids or one packet per event this holds at most ~8 MiB.
const EVENT_QUEUE: usize = 256;

/// P2P settings.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    pub network: Network,
    pub listen: Option<SocketAddr>,
    /// Connect only to these (host:port); disables outbound slots from the peer table.
    pub connect: Vec<String>,
    /// Keep connections to these as well.
    pub addnode: Vec<String>,
    pub max_inbound: usize,
    /// Most inbound connections from one IP address.
    pub max_inbound_per_ip: usize,
    /// Most inbound connections from one network group (IPv4 /24, IPv6 /48).
    pub max_inbound_per_netgroup: usize,
    pub max_outbound: usize,
    /// Mean announcement delay for origin hiding; `None` announces at once.
    pub trickle: Option<Duration>,
    pub ban_time: Duration,
    pub peers_file: Option<PathBuf>,
    /// Address to advertise to peers (default: the listen address if it is a specific IP).
    pub external: Option<SocketAddr>,
}

impl P2pConfig {
    pub fn new(network: Network) -> P2pConfig {
        P2pConfig {
            network,
            listen: None,
            connect: Vec::new(),
            addnode: Vec::new(),
            max_inbound: 64,
            max_inbound_per_ip: 8,
            max_inbound_per_netgroup: 16,
            max_outbound: 8,
            trickle: None,
            ban_time: Duration::from_secs(24 * 3600),
            peers_file: None,
            external: None,
        }
    }
}

/// One row of `bump peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRow {
    pub addr: String,
    pub inbound: bool,
    pub user_agent: String,
    pub version: u32,
    pub services: String,
    pub bump: bool,
    pub handshake_done: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub score: u32,
    pub connected_secs: u64,
    pub ping_ms: Option<u64>,
}

/// Catch-up and relay progress for `bump status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncStatus {
    pub peers: usize,
    pub bump_peers: usize,
    /// Packets asked for and not yet received.
    pub requested: usize,
    /// Packets received from peers since start.
    pub received: u64,
    /// Packets peers have asked us for and we have not sent yet.
    pub serving: usize,
    pub listening: Option<String>,
    /// Set reconciliation (§5.5): steps answered, payload bytes sent and received.
    #[serde(default)]
    pub recon_steps: u64,
    #[serde(default)]
    pub recon_bytes_out: u64,
    #[serde(default)]
    pub recon_bytes_in: u64,
}

pub struct Overlay {
    node: Arc<Node>,
    cfg: P2pConfig,
    peers: Mutex<HashMap<u64, Arc<PeerShared>>>,
    fetch: Mutex<Fetcher>,
    addrbook: Mutex<AddrBook>,
    /// What every connection is started with (events come back on its channel).
    peer_ctx: Arc<PeerCtx>,
    dialing: Mutex<HashSet<SocketAddr>>,
    ingest: Ingest,
    next_id: AtomicU64,
    received: AtomicU64,
    listening: Mutex<Option<SocketAddr>>,
    shutdown: CancellationToken,
    /// The store's items for reconciliation, shared by all sessions, rebuilt when older than
    /// [`SNAPSHOT_AGE`].
    snapshot: tokio::sync::Mutex<Option<(Instant, u64, Arc<Snapshot>)>>,
    /// Reconciliation bytes sent and received, and steps answered.
    recon_bytes_out: AtomicU64,
    recon_bytes_in: AtomicU64,
    recon_steps: AtomicU64,
    /// Sessions started in the current burst of connections: (burst start, count).
    recon_burst: Mutex<(Instant, u32)>,
}

impl Overlay {
    /// Start the overlay: listener (if configured), connector, relay, ingest and upkeep tasks.
    /// Returns once the listener is bound.
    pub async fn start(
        node: Arc<Node>,
        cfg: P2pConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<Overlay>> {
        let book = match &cfg.peers_file {
            Some(p) => AddrBook::load(p),
            None => AddrBook::in_memory(),
        };
        let listener = match cfg.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let bound = match &listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let advertised = cfg
            .external
            .or_else(|| bound.filter(|a| !a.ip().is_unspecified()));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let peer_ctx = Arc::new(PeerCtx {
            magic: cfg.network.magic(),
            version: VersionTemplate::new(advertised),
            nonces: Arc::new(Nonces::default()),
            store: node.store().clone(),
            trickle: cfg.trickle,
            events: events_tx,
            ingest_total: Arc::new(tokio::sync::Semaphore::new(super::ingest::INGEST_TOTAL)),
        });
        let overlay = Arc::new(Overlay {
            node,
            cfg,
            peers: Mutex::new(HashMap::new()),
            fetch: Mutex::new(Fetcher::new()),
            addrbook: Mutex::new(book),
            peer_ctx,
            dialing: Mutex::new(HashSet::new()),
            ingest: Ingest::new(),
            next_id: AtomicU64::new(1),
            received: AtomicU64::new(0),
            listening: Mutex::new(bound),
            shutdown,
            snapshot: tokio::sync::Mutex::new(None),
            recon_burst: Mutex::new((Instant::now(), 0)),
            recon_bytes_out: AtomicU64::new(0),
            recon_bytes_in: AtomicU64::new(0),
            recon_steps: AtomicU64::new(0),
        });
        if let (Some(listener), Some(bound)) = (listener, bound) {
            tracing::info!(%bound, "P2P listening");
            tokio::spawn(overlay.clone().accept_loop(listener));
        }
        tokio::spawn(overlay.clone().event_loop(events_rx));
        tokio::spawn(overlay.clone().ingest_loop());
        tokio::spawn(overlay.clone().floor_loop());
        tokio::spawn(overlay.clone().recon_loop());
        tokio::spawn(overlay.clone().relay_loop());
        tokio::spawn(overlay.clone().connect_loop());
        tokio::spawn(overlay.clone().upkeep_loop());
        Ok(overlay)
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
    pub fn network(&self) -> Network {
        self.cfg.network
    }
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        *self.listening.locked()
    }

    fn advertised_addr(&self) -> Option<SocketAddr> {
        self.cfg
            .external
            .or_else(|| self.listen_addr().filter(|a| !a.ip().is_unspecified()))
    }

    fn peers_snapshot(&self) -> Vec<Arc<PeerShared>> {
        self.peers.locked().values().cloned().collect()
    }

    /// Start a connection over `stream` and track it at once (so slots count it).
    fn open(self: &Arc<Self>, stream: TcpStream, addr: SocketAddr, outbound: bool) {
        let _ = stream.set_nodelay(true);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peer = peer::spawn(
            self.peer_ctx.clone(),
            id,
            stream,
            addr,
            outbound,
            self.shutdown.child_token(),
        );
        self.track(peer);
    }

    /// Handle what connections report, in order, until shutdown.
    async fn event_loop(self: Arc<Self>, mut rx: mpsc::Receiver<PeerEvent>) {
        loop {
            let ev = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
            };
            match ev {
                PeerEvent::Connected(p) => self.on_connected(&p),
                PeerEvent::Inv(p, ids) => self.on_inv(&p, &ids),
                PeerEvent::NotFound(p, ids) => self.on_notfound(&p, &ids),
                PeerEvent::Packets(p, list) => self.on_packets(&p, list),
                PeerEvent::Addr(_, entries) => self.on_addr(&entries),
                PeerEvent::GetAddr(p) => self.answer_getaddr(&p),
                PeerEvent::Recon(p, ranges) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.on_recon(&p, ranges).await });
                }
                PeerEvent::Misbehaved(p, points, why) => self.misbehave(&p, points, &why),
                PeerEvent::Closed(p, why, ack) => {
                    self.untrack(&p, why);
                    let _ = ack.send(());
                }
            }
        }
    }

    fn track(&self, peer: Arc<PeerShared>) {
        self.peers.locked().insert(peer.id, peer);
    }

    fn untrack(&self, peer: &Arc<PeerShared>, why: Ended) {
        self.peers.locked().remove(&peer.id);
        // Other announcers deliver what this one owed us.
        let asks = self.fetch.locked().peer_gone(peer.id, Instant::now());
        self.ask(asks);
        if peer.handshake_done() {
            tracing::info!(peer = %peer.addr, reason = ?why, "peer disconnected");
        } else {
            tracing::debug!(peer = %peer.addr, reason = ?why, "connection ended before handshake");
            if peer.outbound {
                self.addrbook.locked().failed(peer.addr);
            }
        }
    }

    /// Add misbehaviour points; at [`BAN_SCORE`] disconnect and ban the peer's IP.
    pub fn misbehave(&self, peer: &PeerShared, points: u32, why: &str) {
        let before = peer.score.fetch_add(points, Ordering::Relaxed);
        let score = before.saturating_add(points);
        tracing::info!(peer = %peer.addr, points, score, "misbehaviour: {why}");
        // Ban once, when the score crosses the line (the connection may be ending already).
        if before < BAN_SCORE && score >= BAN_SCORE {
            let until = unix_secs() + self.cfg.ban_time.as_secs();
            let mut book = self.addrbook.locked();
            book.ban(peer.addr.ip(), until);
            // Written at once, so a ban survives a crash right after it.
            if let Err(e) = book.save() {
                tracing::warn!("cannot save the peer table: {e}");
            }
            drop(book);
            tracing::warn!(peer = %peer.addr, "banned for {} s", self.cfg.ban_time.as_secs());
            peer.cancel.cancel();
        }
    }

    fn on_connected(self: &Arc<Self>, peer: &Arc<PeerShared>) {
        let info = peer.info.locked().clone();
        tracing::info!(
            peer = %peer.addr, inbound = !peer.outbound, agent = %info.user_agent, bump = peer.is_bump(),
            "peer connected"
        );
        if peer.outbound {
            self.addrbook
                .locked()
                .connected(peer.addr, info.services, peer.is_bump(), unix_secs());
        }
        if peer.is_bump() {
            peer.tell_floor(self.floor_to_tell());
            peer.send(&Message::GetAddr);
            let (me, p) = (self.clone(), peer.clone());
            if peer.bump_version.load(Ordering::Relaxed) >= RECON_VERSION {
                // Reconciliation: the dialling side starts; the other answers.
                if peer.outbound {
                    let delay = self.recon_delay();
                    tokio::spawn(async move {
                        // (A zero sleep would still wait for the timer's next tick.)
                        if !delay.is_zero() {
                            tokio::select! {
                                _ = me.shutdown.cancelled() => return,
                                _ = p.cancel.cancelled() => return,
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                        me.start_recon(&p).await
                    });
                }
            } else {
                tokio::spawn(async move { me.catch_up(&p).await });
            }
        }
    }

    /// Announce every packet we hold to a newly connected BuMP peer.
    async fn catch_up(&self, peer: &Arc<PeerShared>) {
        let store = self.node.store().clone();
        let now = crate::unix_now();
        let base = self.node.base_work();
        // Only what meets the floor the peer told us (none told yet: everything).
        let p = peer.clone();
        let ids = match tokio::task::spawn_blocking(move || {
            // In disk order, as reconciliation's finds: the peer's requests read in runs.
            let mut live = store.live_located(now);
            live.sort_unstable_by_key(|&(_, expires, record)| (expires / SEGMENT_SECS, record));
            live.into_iter()
                .filter(|(id, expires, _)| p.meets_floor(id, *expires, now, base))
                .map(|(id, _, _)| id)
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(ids) => ids,
            Err(e) => return tracing::warn!("catch-up task failed: {e}"),
        };
        tracing::debug!(peer = %peer.addr, packets = ids.len(), "announcing inventory for catch-up");
        peer.mark_known(&ids);
        for chunk in ids.chunks(MAX_INV) {
            if !peer.send(&Message::Inv {
                ids: chunk.to_vec(),
                other: 0,
            }) {
                return;
            }
        }
    }

    /// The reconciliation snapshot: the live items of the store, at most [`SNAPSHOT_AGE`] old.
    async fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let mut cached = self.snapshot.lock().await;
        let generation = self.node.store().generation();
        if let Some((at, was, snap)) = cached.as_ref() {
            // A snapshot taken before the store changed would answer for a past store (and a
            // peer that missed what came since would learn of it only at the next session).
            if *was == generation && at.elapsed() < SNAPSHOT_AGE {
                return Some(snap.clone());
            }
        }
        let store = self.node.store().clone();
        let now = crate::unix_now();
        let items = tokio::task::spawn_blocking(move || {
            store
                .live_located(now)
                .into_iter()
                .map(|(id, expires, record)| recon::Item {
                    expires,
                    id,
                    record,
                })
                .collect::<Vec<_>>()
        })
        .await;
        match items {
            Ok(items) => {
                let snap = Arc::new(Snapshot::new(items));
                *cached = Some((Instant::now(), generation, snap.clone()));
                Some(snap)
            }
            Err(e) => {
                tracing::warn!("reconciliation snapshot task failed: {e}");
                None
            }
        }
    }

    fn send_recon(&self, peer: &PeerShared, ranges: Vec<recon::Range>) {
        let m = Message::Recon(ranges);
        self.recon_bytes_out
            .fetch_add(m.encode().payload.len() as u64, Ordering::Relaxed);
        peer.send(&m);
    }

    /// How long a newly dialled peer waits for its first session: 0 for the first of a burst
    /// of connections, [`RECON_STAGGER`] more for each further one. A burst ends once its
    /// staggered sessions have all had their turn.
    fn recon_delay(&self) -> Duration {
        let mut burst = self.recon_burst.locked();
        let now = Instant::now();
        if now.duration_since(burst.0) > RECON_STAGGER * burst.1 {
            *burst = (now, 0);
        }
        let delay = RECON_STAGGER * burst.1;
        burst.1 += 1;
        delay
    }

    /// Open a reconciliation session with a peer (on connect and every [`RECON_EVERY`]).
    async fn start_recon(&self, peer: &Arc<PeerShared>) {
        if let Some(snap) = self.snapshot().await {
            tracing::debug!(peer = %peer.addr, items = snap.len(), "reconciling");
            self.send_recon(peer, recon::initiate(&snap));
        }
    }

    /// One step of reconciliation: fetch what the peer has and we lack, announce what we have
    /// and it lacks, answer the rest.
    async fn on_recon(&self, peer: &Arc<PeerShared>, ranges: Vec<recon::Range>) {
        let bytes = recon::encode(&ranges).len() as u64;
        self.recon_bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.recon_steps.fetch_add(1, Ordering::Relaxed);
        let Some(snap) = self.snapshot().await else {
            return;
        };
        let out = match tokio::task::spawn_blocking(move || recon::respond(&snap, &ranges)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return self.misbehave(peer, penalty::MALFORMED, &format!("bumprecon: {e}"))
            }
            Err(e) => return tracing::warn!("reconciliation task failed: {e}"),
        };
        if !out.need.is_empty() {
            tracing::debug!(peer = %peer.addr, missing = out.need.len(), "reconciliation: the peer has packets we lack");
            for chunk in out.need.chunks(super::peer::EVENT_IDS) {
                self.want(peer, chunk, false);
            }
        }
        if !out.have.is_empty() {
            // Announced as the packets lie on disk: the peer asks in this order, and reads of
            // neighbouring records are served together. The first piece is picked out and
            // announced before the rest is sorted, so the peer can start asking at once.
            // The rest is sorted on a blocking thread, leaving this worker to the writer.
            let mut head = out.have;
            let key = |i: &recon::Item| (i.expires / SEGMENT_SECS, i.record);
            let first = head.len().min(super::peer::INV_SEND);
            if first < head.len() {
                head.select_nth_unstable_by_key(first, key);
            }
            let mut tail = head.split_off(first);
            let (now, base) = (crate::unix_now(), self.node.base_work());
            let announce = move |peer: &PeerShared, items: &mut [recon::Item]| {
                items.sort_unstable_by_key(key);
                for piece in items.chunks(super::peer::INV_SEND) {
                    peer.announce_lacking(piece.iter().map(|i| (i.id, i.expires)), now, base);
                }
            };
            announce(peer, &mut head);
            if !tail.is_empty() {
                let p = peer.clone();
                let sorted = tokio::task::spawn_blocking(move || announce(&p, &mut tail));
                if let Err(e) = sorted.await {
                    tracing::warn!("announcing a reconciliation's finds failed: {e}");
                }
            }
        }
        if !out.reply.is_empty() {
            self.send_recon(peer, out.reply);
        }
    }

    /// Every [`RECON_EVERY`], reconcile again with the peers we dialled, which heals anything
    /// a flood or a full queue dropped.
    async fn recon_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RECON_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for p in self.peers_snapshot() {
                if p.outbound
                    && p.handshake_done()
                    && p.bump_version.load(Ordering::Relaxed) >= RECON_VERSION
                {
                    self.start_recon(&p).await;
                }
            }
        }
    }

    /// Send `getdata` for each (peer, ids).
    fn ask(&self, asks: super::fetch::Asks) {
        if asks.is_empty() {
            return;
        }
        let peers = self.peers.locked();
        for (pid, ids) in asks {
            if let Some(p) = peers.get(&pid) {
                for chunk in ids.chunks(MAX_INV) {
                    p.send(&Message::GetData {
                        ids: chunk.to_vec(),
                        other: 0,
                    });
                }
            }
        }
    }

    /// A BuMP peer announced ids: queue those we lack; ask what its budget allows now.
    fn on_inv(&self, peer: &Arc<PeerShared>, ids: &[PacketId]) {
        self.want(peer, ids, true)
    }

    /// Ids a peer holds (announced, or found by reconciliation when `!announced`): fetch those
    /// we lack that can meet our floor.
    fn want(&self, peer: &Arc<PeerShared>, ids: &[PacketId], announced: bool) {
        peer.mark_known(ids);
        // A packet's score never exceeds its id's work, so ids under our floor cannot get in:
        // they are not fetched. Under half the floor the peer has had time to learn is a
        // peer ignoring it.
        let floor = self.node.store().floor(crate::unix_now());
        let told = peer.told_floor();
        let mut ignored = false;
        let above: Vec<PacketId> = ids
            .iter()
            .filter(|id| {
                let work = crate::pow::work_of(id);
                if work >= floor {
                    return true;
                }
                ignored |= work < told / 2;
                false
            })
            .copied()
            .collect();
        if ignored && announced {
            self.misbehave(
                peer,
                penalty::IGNORED_FLOOR,
                "announced packets far below the floor we told it",
            );
        }
        if above.is_empty() {
            return;
        }
        let want = self.node.store().with_membership(|have| {
            let lacking: Vec<PacketId> = above.into_iter().filter(|id| !have(id)).collect();
            if lacking.is_empty() {
                return Vec::new();
            }
            self.fetch
                .locked()
                .announced(peer.id, lacking, Instant::now(), have)
        });
        if !want.is_empty() {
            self.ask(vec![(peer.id, want)]);
        }
    }

    fn on_notfound(&self, peer: &PeerShared, ids: &[PacketId]) {
        // Lock order everywhere: the store's index (membership), then the fetcher.
        let asks = self.node.store().with_membership(|have| {
            self.fetch
                .locked()
                .not_found(peer.id, ids, Instant::now(), have)
        });
        self.ask(asks);
    }

    /// `bump` packets from one peer, in arrival order: each is accepted only if we asked this
    /// peer for it (else [`penalty::UNREQUESTED_PACKET`] each); admission checks them. Their
    /// ids were computed from the bytes as they arrived (the frames' checksum hashes).
    fn on_packets(&self, peer: &Arc<PeerShared>, list: Vec<super::peer::Arrived>) {
        let now = Instant::now();
        let mut accepted = Vec::with_capacity(list.len());
        let mut more = Vec::new();
        let mut unrequested = 0;
        self.node.store().with_membership(|have| {
            let mut fetch = self.fetch.locked();
            for a in list {
                debug_assert_eq!(a.id, a.packet.id());
                let (requested_here, next) = fetch.delivered(peer.id, &a.id, now, have);
                more.extend(next);
                if requested_here {
                    accepted.push(a);
                } else {
                    unrequested += 1;
                }
            }
        });
        for _ in 0..unrequested {
            self.misbehave(peer, penalty::UNREQUESTED_PACKET, "unrequested bump packet");
        }
        self.ask(vec![(peer.id, more)]);
        // Not marked known here: `want` did when they were asked for, and the relay does
        // not announce a packet back to the connection it came from.
        peer.packets_in
            .fetch_add(accepted.len() as u64, Ordering::Relaxed);
        self.ingest.push_many(
            accepted
                .into_iter()
                .map(|a| Item {
                    peer: peer.id,
                    id: a.id,
                    packet: a.packet,
                    permit: a.permit,
                })
                .collect(),
        );
    }

    /// Gossiped addresses (the decoder already refused lists over [`MAX_ADDR`]).
    fn on_addr(&self, entries: &[(u64, SocketAddr)]) {
        let mut book = self.addrbook.locked();
        for (services, addr) in entries {
            if services & NODE_BUMP != 0 && addr.port() != 0 && !addr.ip().is_unspecified() {
                book.add(*addr, *services, "gossip");
            }
        }
    }

    fn answer_getaddr(&self, peer: &PeerShared) {
        let mut list: Vec<(u32, Address)> = Vec::new();
        let services = ServiceFlags::from(NODE_BUMP);
        if let Some(me) = self.advertised_addr() {
            list.push((crate::unix_now(), Address::new(&me, services)));
        }
        let book = self.addrbook.locked();
        for (seen, a) in book.gossip(MAX_ADDR - 1) {
            if a != peer.addr {
                list.push((seen as u32, Address::new(&a, services)));
            }
        }
        drop(book);
        peer.send(&Message::Addr(list));
    }

    /// Store packets from peers, a batch at a time, taken fairly over peers ([`Ingest`]).
    async fn ingest_loop(self: Arc<Self>) {
        // Up to INGEST_PIPELINE batches being checked and written at once, and up to
        // DURABLE_PIPELINE written and waiting for their sync (the store's group commit
        // covers them all). A batch's ingest slots are freed once it is written, so the peers
        // keep sending while the disk syncs.
        let pipeline = Arc::new(tokio::sync::Semaphore::new(INGEST_PIPELINE));
        let syncing = Arc::new(tokio::sync::Semaphore::new(DURABLE_PIPELINE));
        loop {
            let batch = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                b = self.ingest.next(INGEST_BATCH) => b,
            };
            let slots = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                s = async {
                    let w = syncing.clone().acquire_owned().await;
                    let i = pipeline.clone().acquire_owned().await;
                    (i, w)
                } => s,
            };
            let (Ok(writing), Ok(waiting)) = slots else {
                return;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.store_batch(batch, writing).await;
                drop(waiting);
            });
        }
    }

    /// Store one batch from the ingest queues; penalise the peers of invalid packets.
    /// `writing` (a pipeline slot) and the batch's ingest permits go once it is written.
    async fn store_batch(
        &self,
        batch: Vec<super::ingest::Item>,
        writing: tokio::sync::OwnedSemaphorePermit,
    ) {
        {
            let now = crate::unix_now();
            let mut from = Vec::with_capacity(batch.len());
            let mut packets = Vec::with_capacity(batch.len());
            let mut permits = Vec::with_capacity(batch.len());
            for item in batch {
                from.push(item.peer);
                packets.push((item.id, item.packet, item.peer));
                permits.push(item.permit);
            }
            let count = packets.len() as u64;
            // Written (or refused): the peers may send more, while the disk syncs.
            let written = move || drop((permits, writing));
            match self.node.admit_each(packets, now, written).await {
                Ok((a, refused)) => {
                    self.received
                        .fetch_add(count - refused.len() as u64, Ordering::Relaxed);
                    tracing::trace!(
                        new = a.new,
                        duplicates = a.duplicates,
                        refused = refused.len(),
                        "stored packets from peers"
                    );
                    for (i, e) in refused {
                        // A packet that expired in transit is no fault; anything else is.
                        let innocent = matches!(e, PacketError::Expired { expires, .. } if now.saturating_sub(expires) < 3600);
                        let peer = from
                            .get(i)
                            .and_then(|id| self.peers.locked().get(id).cloned());
                        if let (false, Some(p)) = (innocent, peer) {
                            self.misbehave(
                                &p,
                                penalty::INVALID_PACKET,
                                &format!("invalid packet: {e}"),
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!("could not store packets from peers: {e}"),
            }
        }
    }

    /// The floor we tell peers: ours, rounded down to the announcement grid.
    fn floor_to_tell(&self) -> u64 {
        crate::admission::quantize(self.node.store().floor(crate::unix_now()))
    }

    /// Every second: tell BuMP peers our floor when it moved to another grid step, and give
    /// the node the median of the floors they told us (what own sends solve for; the median,
    /// so one peer announcing an absurd floor cannot make this node burn its cores).
    async fn floor_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FLOOR_EVERY);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let floor = self.floor_to_tell();
            let mut theirs = Vec::new();
            for p in self.peers_snapshot() {
                if p.is_bump() && p.handshake_done() {
                    p.tell_floor(floor);
                    theirs.push(p.their_floor.load(Ordering::Relaxed));
                }
            }
            theirs.sort_unstable();
            let median = theirs.get(theirs.len() / 2).copied().unwrap_or(0);
            self.node.set_peer_floor(median);
            // Own packets under what peers now ask are solved again (like a fee bump), up to
            // the cap own sends apply to peers' floors.
            let cap = self
                .node
                .store()
                .floor(crate::unix_now())
                .max(self.node.base_work())
                .saturating_mul(crate::node::PEER_FLOOR_CAP);
            let ask = median.min(cap);
            if ask > self.node.base_work() {
                let node = self.node.clone();
                tokio::spawn(async move { node.raise_own(ask, crate::unix_now()).await });
            }
        }
    }

    /// Announce newly stored packets to BuMP peers.
    async fn relay_loop(self: Arc<Self>) {
        let mut rx = self.node.subscribe();
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                ev = rx.recv() => ev,
            };
            let mut ids = Vec::new();
            match first {
                Ok(batch) => ids.extend(batch.iter().map(|ev| (ev.id, ev.packet.expires, ev.from))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "relay fell behind; re-announcing the whole inventory"
                    );
                    for p in self
                        .peers_snapshot()
                        .into_iter()
                        .filter(|p| p.is_bump() && p.handshake_done())
                    {
                        self.catch_up(&p).await;
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            while ids.len() < MAX_INV {
                match rx.try_recv() {
                    Ok(batch) => {
                        ids.extend(batch.iter().map(|ev| (ev.id, ev.packet.expires, ev.from)))
                    }
                    Err(_) => break,
                }
            }
            let (now, base) = (crate::unix_now(), self.node.base_work());
            for p in self.peers_snapshot() {
                if p.is_bump() && p.handshake_done() {
                    p.announce(&ids, now, base);
                }
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, addr) = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if self.addrbook.locked().is_banned(&addr.ip(), unix_secs()) {
                tracing::debug!(peer = %addr, "refused: banned");
                continue;
            }
            let inbound: Vec<Arc<PeerShared>> = self
                .peers_snapshot()
                .into_iter()
                .filter(|p| !p.outbound)
                .collect();
            let same_ip = inbound.iter().filter(|p| p.addr.ip() == addr.ip()).count();
            if same_ip >= self.cfg.max_inbound_per_ip {
                tracing::debug!(peer = %addr, same_ip, "refused: too many inbound connections from this IP");
                continue;
            }
            let group = netgroup(&addr.ip());
            let same_group = inbound
                .iter()
                .filter(|p| netgroup(&p.addr.ip()) == group)
                .count();
            if same_group >= self.cfg.max_inbound_per_netgroup {
                tracing::debug!(peer = %addr, same_group, "refused: too many inbound connections from this network");
                continue;
            }
            if inbound.len() >= self.cfg.max_inbound {
                match select_eviction(&inbound) {
                    Some(victim) => {
                        tracing::info!(peer = %victim.addr, new = %addr, "inbound slots full: evicting a peer to make room");
                        victim.cancel.cancel();
                        // Its slot is free once it is untracked; the new peer takes it now.
                        self.peers.locked().remove(&victim.id);
                    }
                    None => {
                        tracing::debug!(peer = %addr, "refused: inbound slots full and every peer protected");
                        continue;
                    }
                }
            }
            self.open(stream, addr, false);
        }
    }

    async fn dial(self: Arc<Self>, addr: SocketAddr) {
        self.addrbook.locked().attempted(addr, unix_secs());
        let result = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await;
        self.dialing.locked().remove(&addr);
        let err = match result {
            Ok(Ok(stream)) => return self.open(stream, addr, true),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::debug!(peer = %addr, "connect failed: {err}");
        self.addrbook.locked().failed(addr);
    }

    async fn resolve(target: &str, default_port: u16) -> Vec<SocketAddr> {
        if let Ok(a) = target.parse::<SocketAddr>() {
            return vec![a];
        }
        let with_port = if target.contains(':') {
            target.to_string()
        } else {
            format!("{target}:{default_port}")
        };
        match tokio::net::lookup_host(with_port).await {
            Ok(it) => it.collect(),
            Err(e) => {
                tracing::warn!("cannot resolve {target}: {e}");
                Vec::new()
            }
        }
    }

    /// Keep manual connections up and outbound slots filled.
    async fn connect_loop(self: Arc<Self>) {
        let default_port = crate::config::default_p2p_port(self.cfg.network);
        let mut manual: Vec<SocketAddr> = Vec::new();
        for t in self.cfg.connect.iter().chain(&self.cfg.addnode) {
            manual.extend(Self::resolve(t, default_port).await);
        }
        {
            let mut book = self.addrbook.locked();
            for a in &manual {
                book.add(*a, 0, "manual");
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = unix_secs();
            let peers = self.peers_snapshot();
            let mut busy: HashSet<SocketAddr> = peers
                .iter()
                .filter(|p| p.outbound)
                .map(|p| p.addr)
                .collect();
            busy.extend(self.dialing.locked().iter().copied());
            let mut to_dial = Vec::new();
            {
                let book = self.addrbook.locked();
                for a in &manual {
                    if !busy.contains(a) && book.may_dial(a, now) {
                        to_dial.push(*a);
                    }
                }
                if self.cfg.connect.is_empty() {
                    let outbound_auto = peers
                        .iter()
                        .filter(|p| p.outbound && !manual.contains(&p.addr))
                        .count();
                    let free = self.cfg.max_outbound.saturating_sub(outbound_auto);
                    let mut exclude = busy.clone();
                    exclude.extend(manual.iter().copied());
                    if let Some(me) = self.listen_addr() {
                        exclude.insert(me);
                    }
                    to_dial.extend(
                        book.candidates(now, NODE_BUMP, &exclude)
                            .into_iter()
                            .take(free),
                    );
                }
            }
            for a in to_dial {
                if self.dialing.locked().insert(a) {
                    tokio::spawn(self.clone().dial(a));
                }
            }
        }
    }

    /// Periodic chores: expire stale requests, save the peer table, log catch-up progress.
    async fn upkeep_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut saves = 0u32;
        let mut last_received = 0u64;
        loop {
            let stop = tokio::select! {
                _ = self.shutdown.cancelled() => true,
                _ = tick.tick() => false,
            };
            let now = Instant::now();
            let (asks, stalled, outstanding) = self.node.store().with_membership(|have| {
                let mut f = self.fetch.locked();
                let (asks, stalled) = f.tick(now, have);
                (asks, stalled, f.inflight() + f.backlog())
            });
            let drained: Vec<u64> = {
                let f = self.fetch.locked();
                self.peers
                    .locked()
                    .keys()
                    .copied()
                    .filter(|p| f.drained_after_overflow(*p))
                    .collect()
            };
            self.ask(asks);
            for pid in stalled {
                if let Some(p) = self.peers.locked().get(&pid) {
                    tracing::info!(peer = %p.addr, "peer is stalling (asked for packets, answers nothing); disconnecting");
                    p.cancel.cancel();
                }
            }
            for pid in drained {
                if let Some(p) = self.peers.locked().get(&pid) {
                    tracing::info!(peer = %p.addr, "announced more than we could queue; reconnecting to continue catch-up");
                    p.cancel.cancel();
                }
            }
            let received = self.received.load(Ordering::Relaxed);
            if outstanding > 1000 {
                tracing::info!(
                    outstanding,
                    received,
                    rate = (received - last_received) / 5,
                    "catching up: packets still to fetch from peers"
                );
            }
            last_received = received;
            saves += 1;
            if stop || saves.is_multiple_of(12) {
                let mut book = self.addrbook.locked();
                book.prune_bans(unix_secs());
                if let Err(e) = book.save() {
                    tracing::warn!("cannot save the peer table: {e}");
                }
            }
            if stop {
                return;
            }
        }
    }

    /// For each id: how many connected BuMP peers are known to hold it (they announced or
    /// sent it to us, or we announced it to them).
    pub fn holders(&self, ids: &[PacketId]) -> Vec<usize> {
        let peers = self.peers_snapshot();
        ids.iter()
            .map(|id| peers.iter().filter(|p| p.is_bump() && p.knows(id)).count())
            .collect()
    }

    pub fn peer_rows(&self) -> Vec<PeerRow> {
        let mut rows: Vec<PeerRow> = self
            .peers_snapshot()
            .iter()
            .map(|p| {
                let i = p.info.locked().clone();
                PeerRow {
                    addr: p.addr.to_string(),
                    inbound: !p.outbound,
                    user_agent: i.user_agent,
                    version: i.version,
                    services: format!("{:016x}", i.services),
                    bump: p.is_bump(),
                    handshake_done: i.handshake_done,
                    bytes_in: p.bytes_in.load(Ordering::Relaxed),
                    bytes_out: p.bytes_out.load(Ordering::Relaxed),
                    packets_in: p.packets_in.load(Ordering::Relaxed),
                    packets_out: p.packets_out.load(Ordering::Relaxed),
                    score: p.score.load(Ordering::Relaxed),
                    connected_secs: p.connected_at.elapsed().as_secs(),
                    ping_ms: i.ping_ms,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.addr.cmp(&b.addr));
        rows
    }

    pub fn sync_status(&self) -> SyncStatus {
        let peers = self.peers_snapshot();
        SyncStatus {
            peers: peers.iter().filter(|p| p.handshake_done()).count(),
            bump_peers: peers
                .iter()
                .filter(|p| p.handshake_done() && p.is_bump())
                .count(),
            requested: {
                let f = self.fetch.locked();
                f.inflight() + f.backlog()
            },
            received: self.received.load(Ordering::Relaxed),
            serving: peers.iter().map(|p| p.serve_backlog()).sum(),
            listening: self.listen_addr().map(|a| a.to_string()),
            recon_steps: self.recon_steps.load(Ordering::Relaxed),
            recon_bytes_out: self.recon_bytes_out.load(Ordering::Relaxed),
            recon_bytes_in: self.recon_bytes_in.load(Ordering::Relaxed),
        }
    }

    /// Save the peer table now (at shutdown).
    pub fn save_peers(&self) {
        if let Err(e) = self.addrbook.locked().save() {
            tracing::warn!("cannot save the peer table: {e}");
        }
    }
}

/// The network group of an address, for spreading inbound slots: IPv4 /24, IPv6 /48
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub fn netgroup(ip: &std::net::IpAddr) -> Vec<u8> {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => vec![4, v4.octets()[0], v4.octets()[1], v4.octets()[2]],
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => vec![4, v4.octets()[0], v4.octets()[1], v4.octets()[2]],
            None => {
                let mut g = vec![6];
                g.extend_from_slice(&v6.octets()[..6]);
                g
            }
        },
    }
}

/// Inbound peers protected from eviction for relaying BuMP packets well.
pub const PROTECT_RELAYERS: usize = 8;
/// Longest-connected BuMP peers protected from eviction.
pub const PROTECT_LONGEST: usize = 4;

/// Which inbound peer to drop when a new one arrives and the slots are full, in the manner of
/// Bitcoin Core's `SelectNodeToEvict`: protect the [`PROTECT_RELAYERS`] peers that delivered
/// the most BuMP packets and the [`PROTECT_LONGEST`] longest-connected BuMP peers; of the rest,
/// take the network group with the most connections, and in it the peer that has not finished
/// its handshake, else a coin-only one, else any — the newest first. `None` when every peer is
/// protected.
pub fn select_eviction(inbound: &[Arc<PeerShared>]) -> Option<Arc<PeerShared>> {
    let mut protected: HashSet<u64> = HashSet::new();
    let mut relayers: Vec<&Arc<PeerShared>> = inbound
        .iter()
        .filter(|p| p.packets_in.load(Ordering::Relaxed) > 0)
        .collect();
    relayers.sort_by_key(|p| std::cmp::Reverse(p.packets_in.load(Ordering::Relaxed)));
    protected.extend(relayers.iter().take(PROTECT_RELAYERS).map(|p| p.id));
    let mut longest: Vec<&Arc<PeerShared>> = inbound
        .iter()
        .filter(|p| p.is_bump() && p.handshake_done())
        .collect();
    longest.sort_by_key(|p| p.connected_at);
    protected.extend(longest.iter().take(PROTECT_LONGEST).map(|p| p.id));
    let candidates: Vec<&Arc<PeerShared>> = inbound
        .iter()
        .filter(|p| !protected.contains(&p.id))
        .collect();
    let mut groups: HashMap<Vec<u8>, usize> = HashMap::new();
    for p in &candidates {
        *groups.entry(netgroup(&p.addr.ip())).or_default() += 1;
    }
    candidates
        .into_iter()
        .max_by_key(|p| {
            (
                groups.get(&netgroup(&p.addr.ip())).copied().unwrap_or(0),
                !p.handshake_done(),
                !p.is_bump(),
                p.connected_at,
            )
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::peer::test_peer;

    #[test]
    fn netgroups_are_ipv4_slash_24_and_ipv6_slash_48() {
        let g = |s: &str| netgroup(&s.parse().unwrap());
        assert_eq!(g("10.1.2.3"), g("10.1.2.250"));
        assert_ne!(g("10.1.2.3"), g("10.1.3.3"));
        assert_eq!(g("::ffff:10.1.2.3"), g("10.1.2.9"), "mapped IPv4 is IPv4");
        assert_eq!(g("2001:db8:1::1"), g("2001:db8:1:ffff::2"));
        assert_ne!(g("2001:db8:1::1"), g("2001:db8:2::1"));
    }

    fn handshaked(p: &Arc<PeerShared>, bump: bool) {
        p.info.locked().handshake_done = true;
        p.bump.store(bump, Ordering::Relaxed);
    }

    #[test]
    fn eviction_spares_good_relayers_and_takes_the_crowded_group_first() {
        // Ten BuMP relayers in distinct groups, all protected.
        let mut inbound: Vec<Arc<PeerShared>> = (0..10)
            .map(|i| {
                let p = test_peer(i, &format!("10.0.{i}.1:1"), false);
                handshaked(&p, true);
                p.packets_in.store(100 + i, Ordering::Relaxed);
                p
            })
            .collect();
        // Three coin-only peers in one group, one silent socket elsewhere.
        for i in 0..3 {
            let p = test_peer(20 + i, &format!("192.168.7.{i}:1"), false);
            handshaked(&p, false);
            inbound.push(p);
        }
        inbound.push(test_peer(30, "172.16.0.1:1", false));
        let v = select_eviction(&inbound).unwrap();
        assert!(
            (20..23).contains(&v.id),
            "the most crowded group goes first: {v:?}"
        );
        assert_eq!(v.id, 22, "newest of that group");
        // Without the crowded group, the silent socket goes before any relayer.
        inbound.retain(|p| !(20..23).contains(&p.id));
        assert_eq!(select_eviction(&inbound).unwrap().id, 30);
        // Only protected peers left: nobody is evicted.
        let protected: Vec<_> = inbound.into_iter().filter(|p| p.id < 8).collect();
        assert!(select_eviction(&protected).is_none());
    }
}
