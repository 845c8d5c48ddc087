//! One peer connection: the handshake, the reader loop, and the writer.
//!
//! The reader decodes frames and hands them to the [`Overlay`]; it never waits on this peer's
//! own writes, so two nodes that request bulk data from each other cannot deadlock. The writer
//! owns the socket's write half and, in priority order, sends queued control messages, pending
//! announcements (as `inv`, immediately or on a Poisson trickle timer), and packets the peer
//! asked for (`getdata` is served lazily from the store, a slice at a time).

use super::message::{cmd, max_payload, Message, BUMP_PROTOCOL_VERSION, FEATURE_ID, MAX_INV};
use super::overlay::Overlay;
use crate::packet::PacketId;
use crate::sync::Locked;
use futures::{SinkExt, StreamExt};
use namecoin::wire::{Command, Frame, MessageCodec, Outgoing, WireError};
use rand::Rng;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Control messages queued for one peer before it counts as too slow and is dropped.
pub const CONTROL_QUEUE: usize = 4096;
/// Packet ids a peer may have asked for and not yet received.
pub const MAX_SERVE_QUEUE: usize = 4 * MAX_INV;
/// Packet ids remembered per peer as "it has this"; past this the set starts over.
pub const KNOWN_CAP: usize = 500_000;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
pub const PING_EVERY: Duration = Duration::from_secs(120);
pub const PONG_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Message rate limit: bucket size and refill per second (requested `bump` replies are free).
pub const RATE_BURST: f64 = 50_000.0;
pub const RATE_PER_SEC: f64 = 25_000.0;

type Policy = fn(&Command) -> Option<usize>;

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

/// State shared between a peer's reader, writer and the overlay.
pub struct PeerShared {
    pub id: u64,
    pub addr: SocketAddr,
    pub outbound: bool,
    pub connected_at: Instant,
    pub bump: AtomicBool,
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
    known: Mutex<HashSet<PacketId>>,
}

impl PeerShared {
    pub fn is_bump(&self) -> bool {
        self.bump.load(Ordering::Relaxed)
    }

    pub fn handshake_done(&self) -> bool {
        self.info.lock().map(|i| i.handshake_done).unwrap_or(false)
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
            k.insert(*id);
        }
    }

    /// Queue announcements of the ids the peer does not know yet.
    pub fn announce(&self, ids: &[PacketId]) {
        let fresh: Vec<PacketId> = {
            let mut k = self.known.locked();
            ids.iter()
                .filter(|id| {
                    if k.len() >= KNOWN_CAP {
                        k.clear();
                    }
                    k.insert(**id)
                })
                .copied()
                .collect()
        };
        if fresh.is_empty() {
            return;
        }
        self.announce.locked().extend(fresh);
        self.wake.notify_one();
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
        self.serve.lock().map(|q| q.len()).unwrap_or(0)
    }
}

/// Draw an exponential delay with the given mean (Poisson process inter-arrival time).
pub fn poisson_delay(mean: Duration) -> Duration {
    let u: f64 = rand::thread_rng().gen_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln())
}

/// Run a connection until it ends. Registers with the overlay after a successful handshake.
pub async fn run(overlay: Arc<Overlay>, stream: TcpStream, addr: SocketAddr, outbound: bool) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let magic = overlay.network().magic();
    let reader = FramedRead::with_capacity(
        rd,
        MessageCodec::new(magic, max_payload as Policy),
        256 * 1024,
    );
    let writer = FramedWrite::new(wr, MessageCodec::new(magic, max_payload as Policy));
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let shared = Arc::new(PeerShared {
        id: overlay.next_peer_id(),
        addr,
        outbound,
        connected_at: Instant::now(),
        bump: AtomicBool::new(false),
        score: AtomicU32::new(0),
        bytes_in: AtomicU64::new(0),
        bytes_out: AtomicU64::new(0),
        packets_in: AtomicU64::new(0),
        packets_out: AtomicU64::new(0),
        info: Mutex::new(PeerInfo::default()),
        cancel: overlay.shutdown_token().child_token(),
        control: control_tx,
        announce: Mutex::new(Vec::new()),
        serve: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        known: Mutex::new(HashSet::new()),
    });
    overlay.track(shared.clone());
    let w = tokio::spawn(write_loop(
        overlay.clone(),
        shared.clone(),
        writer,
        control_rx,
    ));
    let result = read_loop(&overlay, &shared, reader).await;
    shared.cancel.cancel();
    let _ = w.await;
    overlay.untrack(&shared, result.err());
}

async fn write_loop(
    overlay: Arc<Overlay>,
    peer: Arc<PeerShared>,
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, MessageCodec<Policy>>,
    mut control: mpsc::Receiver<Outgoing>,
) {
    let trickle = overlay.trickle();
    let mut next_trickle = Instant::now();
    loop {
        let mut wrote = false;
        // 1. Control messages first.
        while let Ok(m) = control.try_recv() {
            peer.bytes_out
                .fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
            if sink.feed(m).await.is_err() {
                return peer.cancel.cancel();
            }
            wrote = true;
        }
        // 2. Announcements, now or on the trickle timer; only after the handshake.
        if peer.handshake_done()
            && peer.is_bump()
            && trickle
                .map(|_| Instant::now() >= next_trickle)
                .unwrap_or(true)
        {
            let ids: Vec<PacketId> = std::mem::take(&mut *peer.announce.locked());
            for chunk in ids.chunks(MAX_INV) {
                let m = Message::Inv {
                    ids: chunk.to_vec(),
                    other: 0,
                }
                .encode();
                peer.bytes_out
                    .fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
                if sink.feed(m).await.is_err() {
                    return peer.cancel.cancel();
                }
                wrote = true;
            }
            if let Some(mean) = trickle {
                if !ids.is_empty() || Instant::now() >= next_trickle {
                    next_trickle = Instant::now() + poisson_delay(mean);
                }
            }
        }
        // 3. Serve a slice of requested packets.
        let slice: Vec<PacketId> = {
            let mut q = peer.serve.locked();
            let n = q.len().min(256);
            q.drain(..n).collect()
        };
        if !slice.is_empty() {
            let mut missing = Vec::new();
            for id in &slice {
                match overlay.node().store().get(id) {
                    Ok(Some((_, p))) => {
                        let m = Message::Bump(Box::new(p)).encode();
                        peer.bytes_out
                            .fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
                        peer.packets_out.fetch_add(1, Ordering::Relaxed);
                        if sink.feed(m).await.is_err() {
                            return peer.cancel.cancel();
                        }
                    }
                    _ => missing.push(*id),
                }
            }
            if !missing.is_empty() {
                let m = Message::NotFound {
                    ids: missing,
                    other: 0,
                }
                .encode();
                if sink.feed(m).await.is_err() {
                    return peer.cancel.cancel();
                }
            }
            wrote = true;
        }
        if wrote {
            if sink.flush().await.is_err() {
                return peer.cancel.cancel();
            }
            continue;
        }
        let pending_announce = !peer.announce.lock().map(|a| a.is_empty()).unwrap_or(true);
        let trickle_wait = async {
            match (trickle, pending_announce) {
                (Some(_), true) => tokio::time::sleep_until(next_trickle.into()).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = peer.cancel.cancelled() => {
                let _ = sink.flush().await;
                return;
            }
            m = control.recv() => match m {
                Some(m) => {
                    peer.bytes_out.fetch_add(24 + m.payload.len() as u64, Ordering::Relaxed);
                    // `send` flushes, and more queued messages go out at the top of the loop.
                    if sink.send(m).await.is_err() {
                        return peer.cancel.cancel();
                    }
                }
                None => return,
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

async fn read_loop(
    overlay: &Arc<Overlay>,
    peer: &Arc<PeerShared>,
    mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, MessageCodec<Policy>>,
) -> Result<(), Ended> {
    let our_nonce: u64 = rand::random();
    overlay.add_nonce(our_nonce);
    if peer.outbound {
        peer.send(&Message::Version(
            overlay.version_message(peer.addr, our_nonce),
        ));
    }
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut got_version = false;
    let mut tokens = RATE_BURST;
    let mut last_refill = Instant::now();
    let mut ping_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut ping_out: Option<(u64, Instant)> = None;
    let mut answered_getaddr = false;
    let result = loop {
        let frame = tokio::select! {
            _ = peer.cancel.cancelled() => break Err(Ended::Cancelled),
            _ = tokio::time::sleep_until(deadline), if !peer.handshake_done() => break Err(Ended::HandshakeTimeout),
            _ = ping_timer.tick(), if peer.handshake_done() => {
                if let Some((_, sent)) = ping_out {
                    if sent.elapsed() > PONG_TIMEOUT {
                        break Err(Ended::PingTimeout);
                    }
                } else {
                    let n: u64 = rand::random();
                    ping_out = Some((n, Instant::now()));
                    peer.send(&Message::Ping(n));
                }
                continue;
            }
            f = reader.next() => f,
        };
        let frame = match frame {
            None => break Err(Ended::Closed),
            Some(Err(e)) => {
                if !matches!(e, WireError::Io(_)) {
                    overlay.misbehave(peer, 100, &e.to_string());
                }
                break Err(Ended::Wire(e));
            }
            Some(Ok(f)) => f,
        };
        // Rate limit: every frame costs a token except packets we asked for.
        let now = Instant::now();
        tokens =
            (tokens + now.duration_since(last_refill).as_secs_f64() * RATE_PER_SEC).min(RATE_BURST);
        last_refill = now;
        let (command, payload) = match frame {
            Frame::Message { command, payload } => {
                peer.bytes_in
                    .fetch_add(24 + payload.len() as u64, Ordering::Relaxed);
                (command, payload)
            }
            Frame::Skipped { len, .. } => {
                peer.bytes_in.fetch_add(24 + len as u64, Ordering::Relaxed);
                tokens -= 1.0;
                continue;
            }
            Frame::BadChecksum { command, len } => {
                peer.bytes_in.fetch_add(24 + len as u64, Ordering::Relaxed);
                overlay.misbehave(peer, 20, &format!("bad checksum on {command}"));
                continue;
            }
        };
        if command != cmd::BUMP {
            tokens -= 1.0;
        }
        if tokens < 0.0 {
            overlay.misbehave(peer, 1, "message flood over the per-peer rate");
            tokens = 0.0;
        }
        let msg = match Message::decode(command, &payload) {
            Ok(m) => m,
            Err(e) => {
                let points = if matches!(e, super::message::DecodeError::TooMany { .. }) {
                    100
                } else {
                    20
                };
                overlay.misbehave(peer, points, &e.to_string());
                continue;
            }
        };
        if !peer.handshake_done() {
            match msg {
                Message::Version(v) => {
                    if got_version {
                        overlay.misbehave(peer, 10, "duplicate version");
                        continue;
                    }
                    if overlay.is_own_nonce(v.nonce) {
                        break Err(Ended::SelfConnection);
                    }
                    got_version = true;
                    {
                        let mut i = peer.info.locked();
                        i.user_agent = v.user_agent.chars().take(256).collect();
                        i.version = v.version;
                        i.services = v.services.to_u64();
                        i.start_height = v.start_height;
                    }
                    if !peer.outbound {
                        peer.send(&Message::Version(
                            overlay.version_message(peer.addr, our_nonce),
                        ));
                    }
                    if v.version >= namecoin::PROTOCOL_VERSION {
                        peer.send(&Message::Feature {
                            id: FEATURE_ID.into(),
                            data: vec![BUMP_PROTOCOL_VERSION],
                        });
                    }
                    peer.send(&Message::Verack);
                }
                Message::Feature { id, data }
                    if got_version
                        && id == FEATURE_ID
                        && data.first().copied().unwrap_or(0) >= 1 =>
                {
                    peer.bump.store(true, Ordering::Relaxed);
                }
                Message::Verack => {
                    if !got_version {
                        overlay.misbehave(peer, 10, "verack before version");
                        continue;
                    }
                    peer.info.locked().handshake_done = true;
                    overlay.handshake_complete(peer);
                }
                _ => {} // sendaddrv2 and the like before verack: nothing to do
            }
            continue;
        }
        match msg {
            Message::Ping(n) => {
                peer.send(&Message::Pong(n));
            }
            Message::Pong(n) => {
                if let Some((want, sent)) = ping_out {
                    if want == n {
                        peer.info.locked().ping_ms = Some(sent.elapsed().as_millis() as u64);
                        ping_out = None;
                    }
                }
            }
            Message::Inv { ids, .. } => {
                if peer.is_bump() && !ids.is_empty() {
                    overlay.on_inv(peer, &ids);
                }
            }
            Message::GetData { ids, .. } => {
                if !ids.is_empty() {
                    if !peer.is_bump() {
                        overlay.misbehave(
                            peer,
                            10,
                            "getdata for BuMP packets from a coin-only peer",
                        );
                    } else if !peer.queue_serve(&ids) {
                        overlay.misbehave(peer, 50, "getdata beyond the serve queue bound");
                    }
                }
            }
            Message::NotFound { ids, .. } => overlay.on_notfound(peer, &ids),
            Message::Bump(p) => overlay.on_packet(peer, *p).await,
            Message::Addr(list) => {
                let entries: Vec<(u64, SocketAddr)> = list
                    .iter()
                    .filter_map(|(_, a)| a.socket_addr().ok().map(|s| (a.services.to_u64(), s)))
                    .collect();
                overlay.on_addr(peer, &entries);
            }
            Message::AddrV2(list) => {
                let entries: Vec<(u64, SocketAddr)> = list
                    .iter()
                    .filter_map(|a| a.socket_addr().ok().map(|s| (a.services.to_u64(), s)))
                    .collect();
                overlay.on_addr(peer, &entries);
            }
            Message::GetAddr => {
                if peer.is_bump() && !answered_getaddr {
                    answered_getaddr = true;
                    overlay.answer_getaddr(peer);
                }
            }
            Message::SendAddrV2 => {}
            Message::Version(_) | Message::Verack => {
                overlay.misbehave(peer, 10, "handshake message after handshake")
            }
            Message::Feature { .. } => overlay.misbehave(peer, 10, "feature after verack"),
        }
    };
    overlay.remove_nonce(our_nonce);
    result
}
