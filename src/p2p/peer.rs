//! One peer connection: the reader, the writer, and what they share.
//!
//! A connection knows nothing of the overlay that owns it. It is given a [`PeerCtx`] — the
//! network magic, what to say in `version`, our own nonces, where to read packets it is asked
//! for, and a channel for [`PeerEvent`]s — and reports everything the overlay decides on
//! (handshake done, announcements, packets, addresses, misbehaviour, the end) as events. The
//! overlay talks back only through the [`PeerShared`] handle: queue a message, announce ids,
//! cancel.
//!
//! The reader decodes frames, applies the rate limit, runs the [`Handshake`], answers pings
//! and queues `getdata` itself; it never waits on this peer's own writes, so two nodes that
//! request bulk data from each other cannot deadlock. The writer owns the write half and, in
//! priority order, sends queued control messages, pending announcements (as `inv`, at once or
//! on a Poisson trickle timer), and packets the peer asked for (served lazily from the store,
//! a slice at a time).

use super::handshake::{Handshake, Nonces, VersionTemplate};
use super::ingest::IngestPermit;
use super::message::{cmd, max_payload, DecodeError, Message, MAX_INV};
use super::penalty;
use crate::packet::{Packet, PacketId, PACKET_LEN};
use crate::store::Store;
use crate::sync::Locked;
use futures::{SinkExt, StreamExt};
use namecoin::wire::{Command, CommandPolicy, Frame, MessageCodec, Outgoing, WireError};
use rand::Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Control messages queued for one peer before it counts as too slow and is dropped.
pub const CONTROL_QUEUE: usize = 4096;
/// Packet ids a peer may have asked for and not yet received.
pub const MAX_SERVE_QUEUE: usize = 4 * MAX_INV;
/// Packet ids remembered per peer as "it has this" (about 3 MiB); past this the set starts
/// over, which costs at worst a repeated announcement the peer ignores.
pub const KNOWN_CAP: usize = 65_536;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
pub const PING_EVERY: Duration = Duration::from_secs(120);
pub const PONG_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Message rate limit: bucket size and refill per second (requested `bump` replies are free).
pub const RATE_BURST: f64 = 50_000.0;
pub const RATE_PER_SEC: f64 = 25_000.0;
/// Pings answered: bucket size and refill per second. Each ping beyond costs
/// [`penalty::FLOOD`] and gets no pong, so a ping flood ends in a ban, not in a full queue.
pub const PING_BURST: f64 = 10.0;
pub const PING_PER_SEC: f64 = 1.0;
/// Most ids one event carries (an `inv` of 50,000 becomes 49 events).
pub const EVENT_IDS: usize = 1024;
/// Packets of one peer received and not yet stored; its reader waits for a free slot.
pub const INGEST_SLOTS: usize = 4096;
/// After we tell a peer a higher floor, how long announcements below it go unpunished.
pub const FLOOR_GRACE: Duration = Duration::from_secs(30);
/// Bytes gathered before the writer writes to the socket (see [`spawn`]).
const WRITE_BATCH: usize = 64 * 1024;
/// Longest one write to the socket may take; a peer that reads slower is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the reader takes of each command ([`max_payload`]); `bump` payloads come
/// unverified, to be hashed off the reading task ([`Reader::hand_on`]).
#[derive(Clone, Copy)]
pub(crate) struct Policy;

impl CommandPolicy for Policy {
    fn max_payload(&self, command: &Command) -> Option<usize> {
        max_payload(command)
    }

    fn verify_later(&self, command: &Command) -> bool {
        *command == cmd::BUMP
    }
}

/// A `bump` payload as read, its checksum not yet checked; it holds its ingest permit.
struct Raw {
    payload: bytes::Bytes,
    sum: [u8; 4],
    permit: IngestPermit,
}

/// A batch of [`Raw`] payloads after hashing: the packets, and the points and reason for
/// each payload that failed its checksum or is no packet.
#[derive(Default)]
struct Checked {
    arrived: Vec<Arrived>,
    faults: Vec<(u32, String)>,
}

/// Hash and decode a batch (on a blocking thread): each payload's SHA256d is checked against
/// its frame's checksum and is the packet's id.
fn check_raw(raw: Vec<Raw>) -> Checked {
    let mut out = Checked {
        arrived: Vec::with_capacity(raw.len()),
        ..Checked::default()
    };
    for r in raw {
        let digest = namecoin::wire::digest(&r.payload);
        if namecoin::wire::checksum_of(&digest) != r.sum {
            let why = "bad checksum on bump".to_string();
            out.faults.push((penalty::BAD_CHECKSUM, why));
            continue;
        }
        match Packet::decode(&r.payload) {
            Ok(p) => out.arrived.push(Arrived {
                id: PacketId(digest),
                packet: p,
                permit: r.permit,
            }),
            Err(e) => out.faults.push((penalty::MALFORMED, format!("bump: {e}"))),
        }
    }
    out
}

/// What the rest of the node knows about a connected peer.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub user_agent: String,
    pub version: u32,
    pub services: u64,
    pub start_height: i32,
    pub handshake_done: bool,
    pub ping_ms: Option<u64>,
}

/// What a connection reports to its owner. Events of one peer arrive in the order they
/// happened; [`PeerEvent::Closed`] is the last.
#[derive(Debug)]
pub enum PeerEvent {
    /// The handshake completed.
    Connected(Arc<PeerShared>),
    /// A BuMP peer announced these packet ids.
    Inv(Arc<PeerShared>, Vec<PacketId>),
    /// The peer does not have these ids we asked for.
    NotFound(Arc<PeerShared>, Vec<PacketId>),
    /// A `bump` packet arrived (requested or not: the owner knows what it asked for). The
    /// permit is one of the peer's [`INGEST_SLOTS`]: it is held until the packet is stored,
    /// so a peer that sends faster than its share is slowed alone (docs/admission.md §4).
    /// `bump` packets that arrived one after the other (a run the reader found already
    /// buffered, at most [`PACKET_BATCH`]), in order.
    Packets(Arc<PeerShared>, Vec<Arrived>),
    /// Addresses gossiped by the peer: (services, address).
    Addr(Arc<PeerShared>, Vec<(u64, SocketAddr)>),
    /// The peer asks for addresses (first time only).
    GetAddr(Arc<PeerShared>),
    /// A step of set reconciliation from a BuMP peer.
    Recon(Arc<PeerShared>, Vec<super::recon::Range>),
    /// The peer broke a rule: points and why.
    Misbehaved(Arc<PeerShared>, u32, String),
    /// The connection ended. The socket stays open until the owner answers on the channel
    /// (or 5 s pass), so whatever the owner decides on the events before — a ban — is in
    /// force before the peer sees the connection close.
    Closed(Arc<PeerShared>, Ended, oneshot::Sender<()>),
}

/// One `bump` packet as it arrived (requested or not: the owner knows what it asked for).
#[derive(Debug)]
pub struct Arrived {
    /// From the frame's checksum hash: a `bump` payload is the packet's bytes, so their
    /// SHA256d is its id, computed once.
    pub id: PacketId,
    pub packet: Packet,
    pub permit: IngestPermit,
}

/// What the known sets keep of an id: its first 8 bytes (a quarter of the memory and of the
/// comparing). Two ids alike there by chance: 2^-64; on purpose: about 2^32 packets with their
/// proof of work. A false match only skips one announcement to one peer, which reconciliation
/// makes good.
fn known_key(id: &PacketId) -> u64 {
    id.prefix()
}

/// Most ids the writer puts in one `inv` (the protocol allows [`MAX_INV`]): the peer can
/// start asking after 36 KiB rather than after 1.8 MB.
pub const INV_SEND: usize = 1024;

/// Most ids the writer announces before it serves the next slice of asked-for packets.
pub const ANNOUNCE_SLICE: usize = 8 * INV_SEND;

/// Most packets one [`PeerEvent::Packets`] carries.
pub const PACKET_BATCH: usize = 256;

/// What a connection is given by its owner.
pub struct PeerCtx {
    pub magic: [u8; 4],
    pub version: VersionTemplate,
    pub nonces: Arc<Nonces>,
    /// Where packets the peer asks for are read from.
    pub store: Arc<Store>,
    /// Mean announcement delay; `None` announces at once.
    pub trickle: Option<Duration>,
    pub events: mpsc::Sender<PeerEvent>,
    /// The node's [`super::ingest::INGEST_TOTAL`] permits, shared by all connections.
    pub ingest_total: Arc<Semaphore>,
}

/// State shared between a peer's reader, writer and the overlay.
pub struct PeerShared {
    pub id: u64,
    pub addr: SocketAddr,
    pub outbound: bool,
    pub connected_at: Instant,
    pub bump: AtomicBool,
    /// The BuMP version the peer announced (0 for coin-only peers).
    pub bump_version: std::sync::atomic::AtomicU8,
    pub score: AtomicU32,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub info: Mutex<PeerInfo>,
    pub cancel: CancellationToken,
    control: mpsc::Sender<Outgoing>,
    announce: Mutex<Vec<PacketId>>,
    serve: Mutex<VecDeque<PacketId>>,
    wake: Notify,
    /// Packets the peer is known to have, by [`known_key`] (hashbrown: randomly seeded
    /// foldhash, as the store index).
    known: Mutex<hashbrown::HashSet<u64>>,
    /// The floor this peer told us (`bumpfloor`; 0 until it does): packets scoring below
    /// are not announced to it.
    pub their_floor: AtomicU64,
    /// The floors we told it: (now, since, the one before).
    told: Mutex<Option<(u64, Instant, u64)>>,
    /// See [`INGEST_SLOTS`].
    pub ingest_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for PeerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

impl PeerShared {
    pub fn is_bump(&self) -> bool {
        self.bump.load(Ordering::Relaxed)
    }

    pub fn handshake_done(&self) -> bool {
        self.info.locked().handshake_done
    }

    /// Queue a control message. A peer whose queue is full is too slow: it is disconnected.
    pub fn send(&self, m: &Message) -> bool {
        match self.control.try_send(m.encode()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(peer = %self.addr, "send queue full; disconnecting slow peer");
                self.cancel.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Note that the peer has these packets (it announced or sent them, or we announced them).
    pub fn mark_known<'a>(&self, ids: impl IntoIterator<Item = &'a PacketId>) {
        let mut k = self.known.locked();
        for id in ids {
            if k.len() >= KNOWN_CAP {
                k.clear();
            }
            k.insert(known_key(id));
        }
    }

    /// Whether the peer is known to have this packet.
    pub fn knows(&self, id: &PacketId) -> bool {
        self.known.locked().contains(&known_key(id))
    }

    /// Whether a packet (id, expiry) meets the floor this peer told us. A floor at or under
    /// the network's `base` adds nothing to the proof-of-work rule every packet already met
    /// (whose score, by rounding, may sit a hair under the base).
    pub fn meets_floor(&self, id: &PacketId, expires: u32, now: u32, base: u64) -> bool {
        let floor = self.their_floor.load(Ordering::Relaxed);
        floor <= base || crate::pow::score(id, expires.saturating_sub(now)) >= floor
    }

    /// Queue announcements of the packets (id, expiry, the connection it came from) that did
    /// not come from this peer, that it does not know yet and that meet its floor at `now`
    /// ([`PeerShared::meets_floor`]).
    pub fn announce(&self, packets: &[(PacketId, u32, Option<u64>)], now: u32, base: u64) {
        let fresh: Vec<PacketId> = {
            let mut k = self.known.locked();
            packets
                .iter()
                .filter(|(id, expires, from)| {
                    *from != Some(self.id) && self.meets_floor(id, *expires, now, base)
                })
                .map(|(id, _, _)| id)
                .filter(|id| {
                    if k.len() >= KNOWN_CAP {
                        k.clear();
                    }
                    k.insert(known_key(id))
                })
                .copied()
                .collect()
        };
        self.queue_announcements(fresh);
    }

    /// Queue announcements of packets the peer lacks (reconciliation found so), whatever we
    /// thought it knew, if they meet its floor. They are not added to the known set: these
    /// are packets we already hold, which the relay never announces again, and a catch-up's
    /// worth of them would only push out what the set knows of recent traffic.
    pub fn announce_lacking(
        &self,
        packets: impl IntoIterator<Item = (PacketId, u32)>,
        now: u32,
        base: u64,
    ) {
        let fresh: Vec<PacketId> = packets
            .into_iter()
            .filter(|(id, expires)| self.meets_floor(id, *expires, now, base))
            .map(|(id, _)| id)
            .collect();
        self.queue_announcements(fresh);
    }

    fn queue_announcements(&self, ids: Vec<PacketId>) {
        if !ids.is_empty() {
            self.announce.locked().extend(ids);
            self.wake.notify_one();
        }
    }

    /// Queue packets the peer asked for. Returns false if that would exceed the queue bound.
    pub fn queue_serve(&self, ids: &[PacketId]) -> bool {
        let mut q = self.serve.locked();
        if q.len() + ids.len() > MAX_SERVE_QUEUE {
            return false;
        }
        q.extend(ids.iter().copied());
        drop(q);
        self.wake.notify_one();
        true
    }

    pub fn serve_backlog(&self) -> usize {
        self.serve.locked().len()
    }

    /// Tell the peer our floor (already quantized) unless it was the last one told.
    pub fn tell_floor(&self, floor: u64) {
        let mut t = self.told.locked();
        let before = match *t {
            Some((f, _, _)) if f == floor => return,
            Some((f, _, _)) => f,
            None => floor,
        };
        if self.send(&Message::Floor(floor)) {
            *t = Some((floor, Instant::now(), before));
        }
    }

    /// The floor the peer should be honouring by now: the last told, or during the
    /// [`FLOOR_GRACE`] after a change the lower of it and the one before. 0 if none told.
    pub fn told_floor(&self) -> u64 {
        match *self.told.locked() {
            Some((f, since, before)) if since.elapsed() < FLOOR_GRACE => f.min(before),
            Some((f, _, _)) => f,
            None => 0,
        }
    }
}

/// A peer handle with no connection behind it, for tests of the overlay's choices.
impl PeerShared {
    /// A fresh handle: nothing known, nothing queued, score 0.
    fn new(
        id: u64,
        addr: SocketAddr,
        outbound: bool,
        cancel: CancellationToken,
        control: mpsc::Sender<Outgoing>,
    ) -> PeerShared {
        PeerShared {
            id,
            addr,
            outbound,
            connected_at: Instant::now(),
            bump: AtomicBool::new(false),
            bump_version: std::sync::atomic::AtomicU8::new(0),
            score: AtomicU32::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            info: Mutex::new(PeerInfo::default()),
            cancel,
            control,
            announce: Mutex::new(Vec::new()),
            serve: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            known: Mutex::new(hashbrown::HashSet::new()),
            their_floor: AtomicU64::new(0),
            told: Mutex::new(None),
            ingest_slots: Arc::new(Semaphore::new(INGEST_SLOTS)),
        }
    }
}

/// A peer handle with no connection behind it, for tests of the overlay's choices.
#[cfg(test)]
pub(crate) fn test_peer(id: u64, addr: &str, outbound: bool) -> Arc<PeerShared> {
    let (control, _) = mpsc::channel(1);
    Arc::new(PeerShared::new(
        id,
        addr.parse().unwrap(),
        outbound,
        CancellationToken::new(),
        control,
    ))
}

/// Draw an exponential delay with the given mean (Poisson process inter-arrival time).
pub fn poisson_delay(mean: Duration) -> Duration {
    let u: f64 = rand::thread_rng().gen_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln())
}

/// Start a connection over `stream` and return its handle at once; the connection runs until
/// it ends (or `cancel` fires) and then reports [`PeerEvent::Closed`].
pub fn spawn<S>(
    ctx: Arc<PeerCtx>,
    id: u64,
    stream: S,
    addr: SocketAddr,
    outbound: bool,
    cancel: CancellationToken,
) -> Arc<PeerShared>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let reader = FramedRead::with_capacity(rd, MessageCodec::new(ctx.magic, Policy), 256 * 1024);
    let mut writer = FramedWrite::new(wr, MessageCodec::new(ctx.magic, Policy));
    // Packets are fed a slice at a time and flushed at its end; a larger boundary than the
    // default 8 KiB means one socket write per 64 packets instead of per 8.
    writer.set_backpressure_boundary(WRITE_BATCH);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let shared = Arc::new(PeerShared::new(id, addr, outbound, cancel, control_tx));
    let peer = shared.clone();
    tokio::spawn(async move {
        let w = tokio::spawn(write_loop(ctx.clone(), peer.clone(), writer, control_rx));
        let (result, reader) = Reader::new(&ctx, &peer).run(reader).await;
        peer.cancel.cancel();
        let writer = w.await;
        let why = result.err().unwrap_or(Ended::Closed);
        let (ack, acked) = oneshot::channel();
        if ctx
            .events
            .send(PeerEvent::Closed(peer, why, ack))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
        }
        drop((reader, writer));
    });
    shared
}

type Sink<W> = FramedWrite<WriteHalf<W>, MessageCodec<Policy>>;

/// Run one socket write with the deadline, giving up at once when the peer is cancelled:
/// false when it failed, timed out or was cancelled.
async fn guarded<E>(
    peer: &PeerShared,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> bool {
    tokio::select! {
        _ = peer.cancel.cancelled() => false,
        r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::info!(peer = %peer.addr, "write timed out after {} s; dropping slow peer", WRITE_TIMEOUT.as_secs());
                false
            }
        },
    }
}

/// Write until the connection ends; gives the sink back so the caller decides when the socket
/// closes.
async fn write_loop<W: AsyncWrite + Send>(
    ctx: Arc<PeerCtx>,
    peer: Arc<PeerShared>,
    mut sink: Sink<W>,
    control: mpsc::Receiver<Outgoing>,
) -> Option<Sink<W>> {
    let done = write_frames(&ctx, &peer, &mut sink, control).await;
    peer.cancel.cancel();
    done.then_some(sink)
}

/// The writer's loop; false when the socket failed.
async fn write_frames<W: AsyncWrite + Send>(
    ctx: &PeerCtx,
    peer: &PeerShared,
    sink: &mut Sink<W>,
    mut control: mpsc::Receiver<Outgoing>,
) -> bool {
    let trickle = ctx.trickle;
    let mut next_trickle = Instant::now();
    // Announcements taken from the queue (at once, or on the trickle timer) and not yet sent:
    // they go out [`ANNOUNCE_SLICE`] ids at a time between slices of served packets, so a
    // catch-up's 100k announcements do not hold back the packets already asked for.
    let mut taken: std::collections::VecDeque<PacketId> = Default::default();
    loop {
        let mut wrote = false;
        // 1. Control messages first.
        while let Ok(m) = control.try_recv() {
            peer.bytes_out
                .fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
            if !guarded(peer, sink.feed(m)).await {
                return false;
            }
            wrote = true;
        }
        // 2. Announcements, now or on the trickle timer; only after the handshake.
        if taken.is_empty()
            && peer.handshake_done()
            && peer.is_bump()
            && trickle
                .map(|_| Instant::now() >= next_trickle)
                .unwrap_or(true)
        {
            let ids = std::mem::take(&mut *peer.announce.locked());
            if let Some(mean) = trickle {
                if !ids.is_empty() || Instant::now() >= next_trickle {
                    next_trickle = Instant::now() + poisson_delay(mean);
                }
            }
            taken = ids.into();
        }
        let mut announced = 0;
        while !taken.is_empty() && (announced < ANNOUNCE_SLICE || peer.serve.locked().is_empty()) {
            let n = taken.len().min(INV_SEND);
            announced += n;
            let m = Message::Inv {
                ids: taken.drain(..n).collect(),
                other: 0,
            }
            .encode();
            peer.bytes_out
                .fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
            if !guarded(peer, sink.feed(m)).await {
                return false;
            }
            wrote = true;
        }
        // 3. Serve a slice of requested packets.
        let slice: Vec<PacketId> = {
            let mut q = peer.serve.locked();
            let n = q.len().min(256);
            q.drain(..n).collect()
        };
        if !slice.is_empty() {
            // Expired but not yet swept counts as gone. The bytes go out as stored, framed
            // straight into the writer's buffer: they were checked against the id, which is
            // also the frame's checksum (docs/protocol.md §5.1).
            let mut sent = vec![false; slice.len()];
            let buf = sink.write_buffer_mut();
            let read = ctx
                .store
                .get_many_bytes_live(&slice, crate::unix_now(), |i, bytes| {
                    super::message::frame_packet(ctx.magic, bytes, &slice[i], buf);
                    sent[i] = true;
                });
            if let Err(e) = read {
                tracing::warn!("could not read packets to serve: {e}");
            }
            let n = sent.iter().filter(|s| **s).count() as u64;
            peer.bytes_out
                .fetch_add(n * (24 + PACKET_LEN as u64), Ordering::Relaxed);
            peer.packets_out.fetch_add(n, Ordering::Relaxed);
            let missing: Vec<PacketId> = slice
                .iter()
                .zip(&sent)
                .filter(|(_, s)| !**s)
                .map(|(id, _)| *id)
                .collect();
            if !missing.is_empty() {
                let m = Message::NotFound {
                    ids: missing,
                    other: 0,
                }
                .encode();
                if !guarded(peer, sink.feed(m)).await {
                    return false;
                }
            }
            wrote = true;
        }
        if wrote {
            if !guarded(peer, sink.flush()).await {
                return false;
            }
            continue;
        }
        let pending_announce = !peer.announce.locked().is_empty();
        let trickle_wait = async {
            match (trickle, pending_announce) {
                (Some(_), true) => tokio::time::sleep_until(next_trickle.into()).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = peer.cancel.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.flush()).await;
                return true;
            }
            m = control.recv() => match m {
                Some(m) => {
                    peer.bytes_out.fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
                    // `send` flushes, and more queued messages go out at the top of the loop.
                    if !guarded(peer, sink.send(m)).await {
                        return false;
                    }
                }
                None => return true,
            },
            _ = peer.wake.notified() => {}
            _ = trickle_wait => {}
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed,
    Wire(WireError),
    HandshakeTimeout,
    PingTimeout,
    SelfConnection,
    Cancelled,
}

/// The reading side of one connection.
struct Reader<'a> {
    ctx: &'a PeerCtx,
    peer: &'a Arc<PeerShared>,
    tokens: f64,
    last_refill: Instant,
    ping_tokens: f64,
    ping_out: Option<(u64, Instant)>,
    answered_getaddr: bool,
    /// Packets read and not yet handed to the owner (see [`PeerEvent::Packets`]).
    packets: Vec<Arrived>,
    /// `bump` payloads read and not yet hashed.
    raw: Vec<Raw>,
    /// The batch before them, being hashed on a blocking thread.
    hashing: Option<tokio::task::JoinHandle<Checked>>,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a PeerCtx, peer: &'a Arc<PeerShared>) -> Self {
        Reader {
            ctx,
            peer,
            tokens: RATE_BURST,
            last_refill: Instant::now(),
            ping_tokens: PING_BURST,
            ping_out: None,
            answered_getaddr: false,
            packets: Vec::new(),
            raw: Vec::new(),
            hashing: None,
        }
    }

    /// Whether packets read are still to be handed on.
    fn holding(&self) -> bool {
        !self.packets.is_empty() || !self.raw.is_empty() || self.hashing.is_some()
    }

    /// One permit of `sem`; if none is free, the packets read so far are handed on first.
    async fn permit(&mut self, sem: &Arc<Semaphore>) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Some(p);
        }
        self.flush_packets().await;
        sem.clone().acquire_owned().await.ok()
    }

    /// Both ingest permits a packet needs (see [`Message::Bump`] in `dispatch`).
    async fn ingest_permit(&mut self) -> Option<IngestPermit> {
        let own = self.permit(&self.peer.ingest_slots).await?;
        let total = self.permit(&self.ctx.ingest_total).await?;
        Some(IngestPermit::new(own, total))
    }

    /// A `bump` payload from a BuMP peer: into the batch to hash, handed on when full.
    async fn take_raw(&mut self, payload: bytes::Bytes, sum: [u8; 4]) {
        let Some(permit) = self.ingest_permit().await else {
            return;
        };
        self.raw.push(Raw {
            payload,
            sum,
            permit,
        });
        if self.raw.len() >= PACKET_BATCH {
            self.hand_on(false).await;
        }
    }

    /// Hand all packets read so far to the owner, in the order they came.
    async fn flush_packets(&mut self) {
        self.hand_on(true).await;
        if !self.packets.is_empty() {
            let list = std::mem::take(&mut self.packets);
            let _ = self
                .ctx
                .events
                .send(PeerEvent::Packets(self.peer.clone(), list))
                .await;
        }
    }

    /// Start hashing the payloads read since the last batch on a blocking thread, then hand
    /// on the batch before it: with `all`, the new one too; else that keeps running while
    /// this task reads the next batch (the two use two cores).
    async fn hand_on(&mut self, all: bool) {
        let before = self.hashing.take();
        if !self.raw.is_empty() {
            let raw = std::mem::take(&mut self.raw);
            self.hashing = Some(tokio::task::spawn_blocking(move || check_raw(raw)));
        }
        if let Some(h) = before {
            self.emit_checked(h).await;
        }
        if all {
            if let Some(h) = self.hashing.take() {
                self.emit_checked(h).await;
            }
        }
    }

    async fn emit_checked(&mut self, h: tokio::task::JoinHandle<Checked>) {
        let checked = match h.await {
            Ok(c) => c,
            Err(e) => return tracing::warn!("packet hashing task failed: {e}"),
        };
        let events = &self.ctx.events;
        // The owner is gone only at shutdown; the connection ends then anyway.
        if !checked.arrived.is_empty() {
            let _ = events
                .send(PeerEvent::Packets(self.peer.clone(), checked.arrived))
                .await;
        }
        for (points, why) in checked.faults {
            let _ = events
                .send(PeerEvent::Misbehaved(self.peer.clone(), points, why))
                .await;
        }
    }

    async fn emit(&mut self, ev: PeerEvent) {
        // Events stay in the order they happened: packets read before go first.
        self.flush_packets().await;
        // The owner is gone only at shutdown; the connection ends then anyway.
        let _ = self.ctx.events.send(ev).await;
    }

    async fn misbehave(&mut self, points: u32, why: impl Into<String>) {
        self.emit(PeerEvent::Misbehaved(self.peer.clone(), points, why.into()))
            .await;
    }

    /// Take one token for a message; over the rate costs [`penalty::FLOOD`].
    async fn spend_token(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + secs * RATE_PER_SEC).min(RATE_BURST);
        self.ping_tokens = (self.ping_tokens + secs * PING_PER_SEC).min(PING_BURST);
        self.last_refill = now;
        self.tokens -= 1.0;
        if self.tokens < 0.0 {
            self.tokens = 0.0;
            self.misbehave(penalty::FLOOD, "message flood over the per-peer rate")
                .await;
        }
    }

    /// Read until the connection ends; gives the reader back so the caller decides when the
    /// socket closes.
    async fn run<R: AsyncRead>(
        mut self,
        mut reader: FramedRead<ReadHalf<R>, MessageCodec<Policy>>,
    ) -> (
        Result<(), Ended>,
        FramedRead<ReadHalf<R>, MessageCodec<Policy>>,
    ) {
        let our_nonce: u64 = rand::random();
        self.ctx.nonces.add(our_nonce);
        let (mut handshake, first) = Handshake::start(
            self.peer.outbound,
            our_nonce,
            &self.ctx.version,
            self.peer.addr,
        );
        for m in &first {
            self.peer.send(m);
        }
        let result = self.read_frames(&mut reader, &mut handshake).await;
        self.flush_packets().await;
        self.ctx.nonces.remove(our_nonce);
        (result, reader)
    }

    async fn read_frames<R: AsyncRead>(
        &mut self,
        reader: &mut FramedRead<ReadHalf<R>, MessageCodec<Policy>>,
        handshake: &mut Handshake,
    ) -> Result<(), Ended> {
        let peer = self.peer;
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut ping_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            // While packets are waiting to be handed on, take the next frame only if it is
            // already here; otherwise hand them on before waiting.
            let ready = if !self.holding() {
                None
            } else if peer.cancel.is_cancelled() {
                return Err(Ended::Cancelled);
            } else {
                futures::FutureExt::now_or_never(reader.next())
            };
            if ready.is_none() {
                self.flush_packets().await;
            }
            let frame = match ready {
                Some(f) => f,
                None => tokio::select! {
                _ = peer.cancel.cancelled() => return Err(Ended::Cancelled),
                _ = tokio::time::sleep_until(deadline), if !peer.handshake_done() => return Err(Ended::HandshakeTimeout),
                _ = ping_timer.tick(), if peer.handshake_done() => {
                    if let Some((_, sent)) = self.ping_out {
                        if sent.elapsed() > PONG_TIMEOUT {
                            return Err(Ended::PingTimeout);
                        }
                    } else {
                        let n: u64 = rand::random();
                        self.ping_out = Some((n, Instant::now()));
                        peer.send(&Message::Ping(n));
                    }
                    continue;
                }
                f = reader.next() => f,
                },
            };
            // A `bump` payload from a BuMP peer goes to the next batch to hash; anything else
            // unverified is checked here.
            let frame = match frame {
                Some(Ok(Frame::Unverified {
                    command,
                    payload,
                    sum,
                })) if command == cmd::BUMP && peer.handshake_done() && peer.is_bump() => {
                    peer.bytes_in
                        .fetch_add(24 + payload.len() as u64, Ordering::Relaxed);
                    self.take_raw(payload, sum).await;
                    continue;
                }
                Some(Ok(f @ Frame::Unverified { .. })) => Some(Ok(f.verify())),
                f => f,
            };
            let (command, payload, digest) = match frame {
                None => return Err(Ended::Closed),
                Some(Err(e)) => {
                    if !matches!(e, WireError::Io(_)) {
                        self.misbehave(penalty::BAD_FRAME, e.to_string()).await;
                    }
                    return Err(Ended::Wire(e));
                }
                Some(Ok(Frame::Message {
                    command,
                    payload,
                    digest,
                })) => {
                    peer.bytes_in
                        .fetch_add(24 + payload.len() as u64, Ordering::Relaxed);
                    (command, payload, digest)
                }
                Some(Ok(Frame::Skipped { len, .. })) => {
                    peer.bytes_in.fetch_add(24 + len as u64, Ordering::Relaxed);
                    self.spend_token().await;
                    continue;
                }
                Some(Ok(Frame::Unverified { .. })) => continue, // verified just above
                Some(Ok(Frame::BadChecksum { command, len })) => {
                    peer.bytes_in.fetch_add(24 + len as u64, Ordering::Relaxed);
                    self.misbehave(penalty::BAD_CHECKSUM, format!("bad checksum on {command}"))
                        .await;
                    continue;
                }
            };
            // Rate limit: every frame costs a token except packets (checked as requested).
            if command != cmd::BUMP {
                self.spend_token().await;
            }
            let msg = match Message::decode(command, &payload) {
                Ok(m) => m,
                Err(e) => {
                    let points = if matches!(e, DecodeError::TooMany { .. }) {
                        penalty::TOO_MANY_ENTRIES
                    } else {
                        penalty::MALFORMED
                    };
                    self.misbehave(points, e.to_string()).await;
                    continue;
                }
            };
            if !peer.handshake_done() {
                let step =
                    handshake.on_message(msg, &self.ctx.nonces, &self.ctx.version, peer.addr);
                if step.self_connection {
                    return Err(Ended::SelfConnection);
                }
                if let Some(r) = step.remote {
                    let mut i = peer.info.locked();
                    i.user_agent = r.user_agent;
                    i.version = r.version;
                    i.services = r.services;
                    i.start_height = r.start_height;
                }
                for m in &step.replies {
                    peer.send(m);
                }
                if step.bump {
                    peer.bump.store(true, Ordering::Relaxed);
                    peer.bump_version
                        .store(step.bump_version, Ordering::Relaxed);
                }
                if let Some((points, why)) = step.penalty {
                    self.misbehave(points, why).await;
                }
                if step.done {
                    peer.info.locked().handshake_done = true;
                    self.emit(PeerEvent::Connected(peer.clone())).await;
                }
                continue;
            }
            self.dispatch(msg, digest).await;
        }
    }

    /// A message after the handshake; `digest` is its payload's SHA256d.
    async fn dispatch(&mut self, msg: Message, digest: [u8; 32]) {
        let peer = self.peer;
        match msg {
            Message::Ping(n) => {
                if self.ping_tokens >= 1.0 {
                    self.ping_tokens -= 1.0;
                    peer.send(&Message::Pong(n));
                } else {
                    self.misbehave(penalty::FLOOD, "ping flood over the per-peer ping rate")
                        .await;
                }
            }
            Message::Pong(n) => {
                if let Some((want, sent)) = self.ping_out {
                    if want == n {
                        peer.info.locked().ping_ms = Some(sent.elapsed().as_millis() as u64);
                        self.ping_out = None;
                    }
                }
            }
            Message::Inv { ids, .. } => {
                // In slices, so the bounded event queue also bounds the memory it holds.
                if peer.is_bump() {
                    for chunk in ids.chunks(EVENT_IDS) {
                        self.emit(PeerEvent::Inv(peer.clone(), chunk.to_vec()))
                            .await;
                    }
                }
            }
            Message::GetData { ids, .. } => {
                if ids.is_empty() {
                } else if !peer.is_bump() {
                    self.misbehave(
                        penalty::GETDATA_FROM_COIN_PEER,
                        "getdata for BuMP packets from a coin-only peer",
                    )
                    .await;
                } else if !peer.queue_serve(&ids) {
                    self.misbehave(
                        penalty::GETDATA_OVER_BOUND,
                        "getdata beyond the serve queue bound",
                    )
                    .await;
                }
            }
            Message::NotFound { ids, .. } => {
                for chunk in ids.chunks(EVENT_IDS) {
                    self.emit(PeerEvent::NotFound(peer.clone(), chunk.to_vec()))
                        .await;
                }
            }
            Message::Bump(p) => {
                // Waits only when this peer has INGEST_SLOTS packets not yet stored, or all
                // peers together INGEST_TOTAL (in that order: a peer holds at most its slots).
                // Before waiting, the packets read so far are handed on: held here, their
                // permits would never come back.
                let Some(permit) = self.ingest_permit().await else {
                    return;
                };
                // After whatever came before it.
                self.hand_on(true).await;
                self.packets.push(Arrived {
                    id: PacketId(digest),
                    packet: *p,
                    permit,
                });
                if self.packets.len() >= PACKET_BATCH {
                    self.flush_packets().await;
                }
            }
            Message::Recon(ranges) => {
                // Each step costs us a pass over part of the store: it shares the ping rate.
                if !peer.is_bump() {
                } else if self.ping_tokens >= 1.0 {
                    self.ping_tokens -= 1.0;
                    self.emit(PeerEvent::Recon(peer.clone(), ranges)).await;
                } else {
                    self.misbehave(penalty::FLOOD, "bumprecon over the per-peer rate")
                        .await;
                }
            }
            Message::Floor(f) => {
                if !peer.is_bump() {
                } else if self.ping_tokens >= 1.0 {
                    self.ping_tokens -= 1.0;
                    peer.their_floor.store(f, Ordering::Relaxed);
                } else {
                    self.misbehave(penalty::FLOOD, "bumpfloor flood over the per-peer rate")
                        .await;
                }
            }
            Message::Addr(list) => {
                let entries = list
                    .iter()
                    .filter_map(|(_, a)| a.socket_addr().ok().map(|s| (a.services.to_u64(), s)))
                    .collect();
                self.emit(PeerEvent::Addr(peer.clone(), entries)).await;
            }
            Message::AddrV2(list) => {
                let entries = list
                    .iter()
                    .filter_map(|a| a.socket_addr().ok().map(|s| (a.services.to_u64(), s)))
                    .collect();
                self.emit(PeerEvent::Addr(peer.clone(), entries)).await;
            }
            Message::GetAddr => {
                if peer.is_bump() && !self.answered_getaddr {
                    self.answered_getaddr = true;
                    self.emit(PeerEvent::GetAddr(peer.clone())).await;
                }
            }
            Message::SendAddrV2 => {}
            Message::Version(_) | Message::Verack => {
                self.misbehave(
                    penalty::HANDSHAKE_ORDER,
                    "handshake message after handshake",
                )
                .await
            }
            Message::Feature { .. } => {
                self.misbehave(penalty::HANDSHAKE_ORDER, "feature after verack")
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use namecoin::Network;
    use tokio::io::DuplexStream;

    type Far = (
        FramedRead<ReadHalf<DuplexStream>, MessageCodec<Policy>>,
        FramedWrite<WriteHalf<DuplexStream>, MessageCodec<Policy>>,
    );

    fn setup(store: Arc<Store>) -> (Arc<PeerShared>, mpsc::Receiver<PeerEvent>, Far) {
        let (near, far) = tokio::io::duplex(1 << 20);
        let (tx, rx) = mpsc::channel(64);
        let magic = Network::Regtest.magic();
        let ctx = Arc::new(PeerCtx {
            magic,
            version: VersionTemplate::new(None),
            nonces: Arc::new(Nonces::default()),
            store,
            trickle: None,
            events: tx,
            ingest_total: Arc::new(Semaphore::new(super::super::ingest::INGEST_TOTAL)),
        });
        let peer = spawn(
            ctx,
            1,
            near,
            "127.0.0.1:9".parse().unwrap(),
            false,
            CancellationToken::new(),
        );
        let (rd, wr) = tokio::io::split(far);
        let far = (
            FramedRead::new(rd, MessageCodec::new(magic, Policy)),
            FramedWrite::new(wr, MessageCodec::new(magic, Policy)),
        );
        (peer, rx, far)
    }

    async fn next_msg(r: &mut FramedRead<ReadHalf<DuplexStream>, MessageCodec<Policy>>) -> Message {
        let f = tokio::time::timeout(Duration::from_secs(5), r.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("valid frame");
        match f.verify() {
            Frame::Message {
                command, payload, ..
            } => Message::decode(command, &payload).unwrap(),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<PeerEvent>) -> PeerEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("channel open")
    }

    fn their_version() -> Message {
        let mut v = VersionTemplate::new(None).message("127.0.0.1:1".parse().unwrap(), 42);
        v.user_agent = "/test:1/".into();
        Message::Version(v)
    }

    /// A fresh store holding one packet, which expires in an hour.
    fn store_holding_one() -> (tempfile::TempDir, Arc<Store>, Packet) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreConfig::default()).unwrap());
        let now = crate::unix_now();
        let packet = Packet {
            tag: crate::tag::Tag([3; 20]),
            expires: now + 3600,
            nonce: 0,
            body: Box::new([9; crate::packet::BODY_LEN]),
        };
        store.insert(&packet, now).unwrap();
        (dir, store, packet)
    }

    #[tokio::test]
    async fn handshake_then_inv_getdata_ping_and_penalties_over_a_duplex_stream() {
        let (_dir, store, packet) = store_holding_one();
        let (peer, mut rx, (mut rd, mut wr)) = setup(store);

        bump_handshake(&mut rx, &mut rd, &mut wr).await;
        assert_eq!(peer.info.locked().user_agent, "/test:1/");

        // Inv becomes an event; ping is answered by the connection itself.
        let id = PacketId([5; 32]);
        wr.send(
            Message::Inv {
                ids: vec![id],
                other: 0,
            }
            .encode(),
        )
        .await
        .unwrap();
        match next_event(&mut rx).await {
            PeerEvent::Inv(_, ids) => assert_eq!(ids, vec![id]),
            other => panic!("{other:?}"),
        }
        wr.send(Message::Ping(77).encode()).await.unwrap();
        assert_eq!(next_msg(&mut rd).await, Message::Pong(77));

        // getdata is served from the store: the packet, then notfound for an unknown id.
        wr.send(
            Message::GetData {
                ids: vec![packet.id(), id],
                other: 0,
            }
            .encode(),
        )
        .await
        .unwrap();
        assert_eq!(next_msg(&mut rd).await, Message::Bump(Box::new(packet)));
        assert!(
            matches!(next_msg(&mut rd).await, Message::NotFound { ids, .. } if ids == vec![id])
        );

        // A second version after the handshake is charged.
        wr.send(their_version().encode()).await.unwrap();
        match next_event(&mut rx).await {
            PeerEvent::Misbehaved(_, points, why) => {
                assert_eq!(points, penalty::HANDSHAKE_ORDER);
                assert!(why.contains("after handshake"), "{why}");
            }
            other => panic!("{other:?}"),
        }

        // Closing our end ends the connection with a Closed event.
        drop(wr);
        drop(rd);
        loop {
            if let PeerEvent::Closed(p, _, ack) = next_event(&mut rx).await {
                assert_eq!(p.id, 1);
                let _ = ack.send(());
                break;
            }
        }
    }

    /// Handshake as a BuMP peer: their version → our version, feature, verack; their
    /// feature + verack. Returns once the connection reported it done.
    async fn bump_handshake(
        rx: &mut mpsc::Receiver<PeerEvent>,
        rd: &mut FramedRead<ReadHalf<DuplexStream>, MessageCodec<Policy>>,
        wr: &mut FramedWrite<WriteHalf<DuplexStream>, MessageCodec<Policy>>,
    ) {
        wr.send(their_version().encode()).await.unwrap();
        assert!(matches!(next_msg(rd).await, Message::Version(v) if !v.relay));
        assert!(matches!(next_msg(rd).await, Message::Feature { .. }));
        assert_eq!(next_msg(rd).await, Message::Verack);
        wr.send(
            Message::Feature {
                id: super::super::message::FEATURE_ID.into(),
                data: vec![super::super::message::BUMP_PROTOCOL_VERSION],
            }
            .encode(),
        )
        .await
        .unwrap();
        wr.send(Message::Verack.encode()).await.unwrap();
        match next_event(rx).await {
            PeerEvent::Connected(p) => assert!(p.is_bump() && p.handshake_done()),
            other => panic!("{other:?}"),
        }
    }

    /// A connection to a BuMP peer past its handshake, over a fresh store.
    async fn bump_peer() -> (
        tempfile::TempDir,
        Arc<PeerShared>,
        mpsc::Receiver<PeerEvent>,
        Far,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreConfig::default()).unwrap());
        let (peer, mut rx, (mut rd, mut wr)) = setup(store);
        bump_handshake(&mut rx, &mut rd, &mut wr).await;
        (dir, peer, rx, (rd, wr))
    }

    #[test]
    fn the_relay_does_not_announce_back_to_the_origin_nor_what_a_peer_knows() {
        let p = test_peer(7, "127.0.0.1:1", true);
        let id = |b: u8| PacketId([b; 32]);
        p.mark_known([&id(3)]);
        let exp = crate::unix_now() + 3600;
        let batch = [
            (id(1), exp, Some(7)), // came from this peer
            (id(2), exp, Some(8)), // from another
            (id(3), exp, Some(8)), // from another, but this peer announced it
            (id(4), exp, None),    // made here
        ];
        p.announce(&batch, crate::unix_now(), 0);
        assert_eq!(*p.announce.locked(), vec![id(2), id(4)]);
        // What was announced is known now: not again.
        p.announce(&batch, crate::unix_now(), 0);
        assert_eq!(p.announce.locked().len(), 2);
    }

    #[tokio::test]
    async fn asked_packets_go_out_between_slices_of_a_long_announcement() {
        let (_dir, store, packet) = store_holding_one();
        let now = crate::unix_now();
        let (peer, mut rx, (mut rd, mut wr)) = setup(store);
        bump_handshake(&mut rx, &mut rd, &mut wr).await;

        // A catch-up's worth of announcements queued, and a packet asked for with them.
        let total = 30 * INV_SEND;
        let ids = (0..total as u32).map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            (PacketId(id), now + 3600)
        });
        peer.announce_lacking(ids, now, 0);
        assert!(peer.queue_serve(&[packet.id()]));

        let (mut announced, mut served_after) = (0, None);
        while announced < total || served_after.is_none() {
            match next_msg(&mut rd).await {
                Message::Inv { ids, .. } => {
                    assert!(ids.len() <= INV_SEND);
                    announced += ids.len();
                }
                Message::Bump(p) => {
                    assert_eq!(*p, packet);
                    served_after = Some(announced);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(announced, total, "every announcement went out");
        let after = served_after.unwrap();
        assert!(
            after <= ANNOUNCE_SLICE,
            "the packet waited for {after} announcements (a slice is {ANNOUNCE_SLICE})"
        );
    }

    #[tokio::test]
    async fn packets_in_a_row_arrive_as_batches_in_order_with_their_ids_and_permits() {
        let (_dir, peer, mut rx, (mut rd, mut wr)) = bump_peer().await;
        let n = PACKET_BATCH + 44;
        let packets: Vec<Packet> = (0..n)
            .map(|i| Packet {
                tag: crate::tag::Tag([1; 20]),
                expires: 7,
                nonce: i as u64,
                body: Box::new([(i % 251) as u8; crate::packet::BODY_LEN]),
            })
            .collect();
        // All written at once, then a ping: the packets are handed on before the ping is
        // answered, in order, none in a batch over PACKET_BATCH.
        for p in &packets {
            wr.feed(Message::Bump(Box::new(p.clone())).encode())
                .await
                .unwrap();
        }
        wr.send(Message::Ping(5).encode()).await.unwrap();
        let mut got = Vec::new();
        let mut batches = 0;
        while got.len() < n {
            match next_event(&mut rx).await {
                PeerEvent::Packets(_, list) => {
                    assert!(!list.is_empty() && list.len() <= PACKET_BATCH);
                    batches += 1;
                    got.extend(list);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(batches >= 2 && batches < n, "{batches} batches");
        for (a, p) in got.iter().zip(&packets) {
            assert_eq!(
                a.id,
                p.id(),
                "the id is the frame's hash of the packet's bytes"
            );
            assert_eq!(a.packet, *p);
        }
        // Each held packet holds one of the peer's ingest slots until it is dropped.
        assert_eq!(peer.ingest_slots.available_permits(), INGEST_SLOTS - n);
        drop(got);
        assert_eq!(peer.ingest_slots.available_permits(), INGEST_SLOTS);
        assert_eq!(next_msg(&mut rd).await, Message::Pong(5));
    }

    #[tokio::test]
    async fn packets_hashed_off_the_reader_with_a_bad_checksum_or_length_cost_points() {
        use tokio::io::AsyncWriteExt;
        let (_dir, peer, mut rx, (mut rd, mut wr)) = bump_peer().await;
        let packet = |i: u64| Packet {
            tag: crate::tag::Tag([2; 20]),
            expires: 9,
            nonce: i,
            body: Box::new([i as u8; crate::packet::BODY_LEN]),
        };
        let magic = Network::Regtest.magic();
        let mut bytes = bytes::BytesMut::new();
        let frame = |payload: &[u8], bytes: &mut bytes::BytesMut| {
            namecoin::wire::encode_message(magic, cmd::BUMP, payload, bytes)
        };
        frame(&packet(0).encode(), &mut bytes);
        let at = bytes.len();
        frame(&packet(1).encode(), &mut bytes);
        bytes[at + 20] ^= 0x40; // its checksum
        frame(&[5; 100], &mut bytes); // summed right, but no packet
        frame(&packet(2).encode(), &mut bytes);
        wr.get_mut().write_all(&bytes).await.unwrap();
        wr.send(Message::Ping(8).encode()).await.unwrap();
        let (mut got, mut checksums, mut malformed) = (Vec::new(), 0, 0);
        while got.len() < 2 || checksums + malformed < 2 {
            match next_event(&mut rx).await {
                PeerEvent::Packets(_, list) => got.extend(list),
                PeerEvent::Misbehaved(_, points, why) => {
                    if why.contains("checksum") {
                        assert_eq!(points, penalty::BAD_CHECKSUM);
                        checksums += 1;
                    } else {
                        assert_eq!(points, penalty::MALFORMED, "{why}");
                        assert!(why.contains("1024 bytes"), "{why}");
                        malformed += 1;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        let ids: Vec<PacketId> = got.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![packet(0).id(), packet(2).id()]);
        assert_eq!((checksums, malformed), (1, 1));
        // The refused ones gave their ingest slots back at once; the others hold theirs.
        assert_eq!(peer.ingest_slots.available_permits(), INGEST_SLOTS - 2);
        drop(got);
        assert_eq!(peer.ingest_slots.available_permits(), INGEST_SLOTS);
        assert_eq!(next_msg(&mut rd).await, Message::Pong(8));
    }

    #[tokio::test]
    async fn a_bad_frame_costs_the_full_score_and_ends_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreConfig::default()).unwrap());
        let (_peer, mut rx, (_rd, wr)) = setup(store);
        let mut raw = wr.into_inner();
        tokio::io::AsyncWriteExt::write_all(&mut raw, &[0u8; 24])
            .await
            .unwrap();
        match next_event(&mut rx).await {
            PeerEvent::Misbehaved(_, points, _) => assert_eq!(points, penalty::BAD_FRAME),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            next_event(&mut rx).await,
            PeerEvent::Closed(_, Ended::Wire(_), _)
        ));
    }
}
