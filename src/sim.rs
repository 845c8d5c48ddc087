//! A discrete-event simulator of the BuMP overlay at internet scale (issue #13): thousands of
//! nodes on a random graph, no sockets, simulated time. What runs is the node's own logic:
//!
//! - **fetch**: every node has a real [`Fetcher`] (one request per id at a time, alternates,
//!   backlog bounds, `peer_gone` when a link drops);
//! - **relay**: the overlay's rule — a packet a node stores is announced in an `inv` to every
//!   peer not known to have it (the peer it came from, peers that announced it, peers we told);
//!   at once, or on a Poisson trickle per peer;
//! - **reconciliation**: real [`recon`] sessions over real encoded messages when a node comes
//!   back from downtime (the node that comes back dials; the dialler initiates), with what
//!   they find fed to the fetcher (`need`) and announced (`have`), as the overlay does.
//!
//! Message sizes are those of the wire (24-byte header + payload; `inv`/`getdata` 36 bytes an
//! entry, a packet 1,024 bytes, `bumprecon` its encoded length). Links have a latency
//! drawn per link; bandwidth is not limited (queueing is not modelled). Every node holds the
//! same base store at the start (the reconciliation snapshot is the base plus what arrived).
//!
//! Deterministic for a seed. `examples/simulate.rs` runs it and prints the table of
//! docs/scale.md.

use crate::p2p::fetch::Fetcher;
use crate::p2p::recon::{self, Item, Snapshot};
use crate::packet::PacketId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Bytes of a message header on the wire (magic, command, length, checksum).
pub const HEADER: u64 = 24;
/// Bytes of one `inv` / `getdata` entry.
pub const INV_ENTRY: u64 = 36;
/// Bytes of a `bump` packet payload.
pub const PACKET_MSG: u64 = crate::packet::PACKET_LEN as u64;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Links per node (a random regular graph).
    pub degree: usize,
    /// New packets over the run, created at random online nodes.
    pub packets: usize,
    /// Network-wide rate of new packets, per second.
    pub rate: f64,
    /// Items every node holds at the start.
    pub base_items: usize,
    /// Fraction of nodes that go offline once and come back.
    pub churn: f64,
    /// When the churned nodes go down (seconds from the start), and for how long.
    pub down_at: f64,
    pub down_for: f64,
    /// One-way link latency, drawn uniformly per link, milliseconds.
    pub latency_ms: (f64, f64),
    /// Mean of the Poisson trickle per peer; `None`: announce at once (the default).
    pub trickle_ms: Option<f64>,
    /// A node coming back reconciles with its k-th link `k × recon_stagger_ms` after the first
    /// (0: with all at once).
    pub recon_stagger_ms: f64,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10_000,
            degree: 8,
            packets: 1_000,
            rate: 10.0,
            base_items: 20_000,
            churn: 0.10,
            down_at: 20.0,
            down_for: 60.0,
            latency_ms: (10.0, 150.0),
            trickle_ms: None,
            recon_stagger_ms: crate::p2p::overlay::RECON_STAGGER.as_millis() as f64,
            seed: 1,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: usize,
    pub packets: usize,
    pub seconds: f64,
    /// Bytes sent + received per node per second over the run: mean, p99.
    pub node_bytes_per_s: (f64, f64),
    /// `inv` entries received per packet stored (1.0 = no duplicate announcement).
    pub announcements_per_packet: f64,
    /// Packets received twice (two peers delivered the same id).
    pub duplicate_deliveries: u64,
    /// Creation → stored, over every (packet, node that was online throughout): p50, p99, max (ms).
    pub latency_ms: (f64, f64, f64),
    /// Fraction of (packet, node) pairs stored by the end.
    pub delivered: f64,
    /// Nodes that went down and came back.
    pub rejoined: usize,
    /// Packets a rejoined node missed while down: mean.
    pub missed_mean: f64,
    /// Reconciliation bytes (both ways, every session the node took part in) per rejoined
    /// node: mean, p99.
    pub recon_bytes: (f64, f64),
    /// Reconciliation messages per rejoined node: mean.
    pub recon_messages: f64,
    /// From coming back to holding every packet it missed: p50, p99 (ms).
    pub catch_up_ms: (f64, f64),
    /// All bytes (recon + inv + getdata + packets, new traffic included) a rejoined node
    /// exchanged from coming back to holding all it missed, divided by what it missed × 1,024
    /// (1.0 = only the packets themselves).
    pub catch_up_overhead: f64,
    pub events: u64,
}

enum Ev {
    Create(u32),
    Inv { from: u32, to: u32, ids: Vec<u32> },
    GetData { from: u32, to: u32, ids: Vec<u32> },
    Packet { from: u32, to: u32, p: u32 },
    Flush { node: u32, slot: u8 },
    Down(u32),
    Up(u32),
    Recon { from: u32, to: u32, msg: Vec<u8> },
    StartRecon { node: u32, slot: u8 },
}

struct Node {
    links: Vec<u32>,
    online: bool,
    /// Per packet: when stored (ms), or NaN.
    stored: Vec<f32>,
    /// Per packet: bit s set = the peer on link s is known to have it.
    known: Vec<u16>,
    /// Per link: ids queued for the next trickle `inv`.
    queued: Vec<Vec<u32>>,
    flush_armed: Vec<bool>,
    fetcher: Fetcher,
    bytes: u64,
    /// Whether the link's session is up (both ends online since the last reconnect).
    up: Vec<bool>,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: StdRng,
    nodes: Vec<Node>,
    /// Link latency, by (node, slot), in ms.
    lat: Vec<Vec<f32>>,
    /// The slot of `a` on `b`'s side, by (a, slot on a).
    back: Vec<Vec<u8>>,
    ids: Vec<PacketId>,
    expires: Vec<u32>,
    by_id: HashMap<PacketId, u32>,
    created: Vec<f64>,
    base: Vec<Item>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    next_ev: u64,
    now_ms: f64,
    t0: Instant,
    inv_entries: u64,
    duplicates: u64,
    rejoin: HashMap<u32, Rejoin>,
}

#[derive(Default, Clone)]
struct Rejoin {
    at: f64,
    missed: Vec<u32>,
    recon_bytes: u64,
    recon_messages: u64,
    bytes_at_up: u64,
    bytes_to_catch_up: Option<u64>,
    caught_up: Option<f64>,
}

fn msg_bytes(entries: usize) -> u64 {
    HEADER + varint_len(entries as u64) + INV_ENTRY * entries as u64
}

fn varint_len(n: u64) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// A random `degree`-regular multigraph-free graph by the pairing method (retries on loops and
/// repeated pairs; leftover stubs are dropped, so a few nodes may have one link fewer).
fn graph(n: usize, degree: usize, rng: &mut StdRng) -> Vec<Vec<u32>> {
    let mut links: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut stubs: Vec<u32> = (0..n as u32)
        .flat_map(|v| std::iter::repeat_n(v, degree))
        .collect();
    stubs.shuffle(rng);
    while stubs.len() >= 2 {
        let a = stubs.pop().unwrap_or(0);
        let mut tries = 0;
        loop {
            let k = rng.gen_range(0..stubs.len());
            let b = stubs[k];
            if b != a && !links[a as usize].contains(&b) {
                stubs.swap_remove(k);
                links[a as usize].push(b);
                links[b as usize].push(a);
                break;
            }
            tries += 1;
            if tries > 50 {
                break;
            }
        }
    }
    links
}

fn random_id(rng: &mut StdRng) -> PacketId {
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    PacketId(id)
}

/// Run the simulation.
pub fn run(cfg: &SimConfig) -> Report {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let links = graph(cfg.nodes, cfg.degree, &mut rng);
    assert!(cfg.degree <= 16, "known-bits are 16 wide");
    let mut back = Vec::with_capacity(cfg.nodes);
    let mut lat: Vec<Vec<f32>> = links.iter().map(|l| vec![0.0; l.len()]).collect();
    for (a, l) in links.iter().enumerate() {
        back.push(
            l.iter()
                .map(|&b| {
                    links[b as usize]
                        .iter()
                        .position(|&x| x as usize == a)
                        .unwrap_or(0) as u8
                })
                .collect::<Vec<u8>>(),
        );
    }
    for a in 0..cfg.nodes {
        for s in 0..links[a].len() {
            let b = links[a][s] as usize;
            if b > a {
                let l = rng.gen_range(cfg.latency_ms.0..=cfg.latency_ms.1) as f32;
                lat[a][s] = l;
                let t = back[a][s] as usize;
                lat[b][t] = l;
            }
        }
    }
    let now_unix = 1_800_000_000u32;
    let mut base: Vec<Item> = (0..cfg.base_items)
        .map(|_| Item {
            expires: now_unix + rng.gen_range(3600..41 * 3600),
            id: random_id(&mut rng),
            record: 0,
        })
        .collect();
    base.sort_unstable();
    let ids: Vec<PacketId> = (0..cfg.packets).map(|_| random_id(&mut rng)).collect();
    let expires: Vec<u32> = (0..cfg.packets)
        .map(|_| now_unix + rng.gen_range(3600..41 * 3600))
        .collect();
    let by_id = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    let nodes = links
        .into_iter()
        .map(|l| Node {
            online: true,
            stored: vec![f32::NAN; cfg.packets],
            known: vec![0; cfg.packets],
            queued: vec![Vec::new(); l.len()],
            flush_armed: vec![false; l.len()],
            up: vec![true; l.len()],
            fetcher: Fetcher::new(),
            bytes: 0,
            links: l,
        })
        .collect();
    let mut sim = Sim {
        cfg,
        rng,
        nodes,
        lat,
        back,
        ids,
        expires,
        by_id,
        created: vec![f64::NAN; cfg.packets],
        base,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        next_ev: 0,
        now_ms: 0.0,
        t0: Instant::now(),
        inv_entries: 0,
        duplicates: 0,
        rejoin: HashMap::new(),
    };
    // Creations: a Poisson process at `rate`.
    let mut t = 0.0;
    for p in 0..cfg.packets as u32 {
        t += -(sim.rng.gen_range(f64::EPSILON..1.0f64)).ln() / cfg.rate * 1000.0;
        sim.at(t, Ev::Create(p));
    }
    let churned = (cfg.nodes as f64 * cfg.churn) as usize;
    let mut order: Vec<u32> = (0..cfg.nodes as u32).collect();
    order.shuffle(&mut sim.rng);
    for &v in &order[..churned] {
        // Spread over a few seconds so they do not all move at the same instant.
        let jitter = sim.rng.gen_range(0.0..5000.0);
        sim.at(cfg.down_at * 1000.0 + jitter, Ev::Down(v));
        sim.at((cfg.down_at + cfg.down_for) * 1000.0 + jitter, Ev::Up(v));
    }
    let mut events = 0u64;
    while let Some(Reverse((t, k))) = sim.queue.pop() {
        let Some(ev) = sim.events.remove(&k) else {
            continue;
        };
        sim.now_ms = t as f64 / 1000.0;
        events += 1;
        sim.handle(ev);
    }
    sim.report(events)
}

impl Sim<'_> {
    /// Schedule at `t` ms.
    fn at(&mut self, t: f64, ev: Ev) {
        let k = self.next_ev;
        self.next_ev += 1;
        self.events.insert(k, ev);
        self.queue.push(Reverse(((t * 1000.0) as u64, k)));
    }

    /// An `Instant` for the fetcher that stands for simulated time.
    fn instant(&self) -> Instant {
        self.t0 + Duration::from_micros((self.now_ms * 1000.0) as u64)
    }

    /// Send from `a` over its link `s`: count the bytes at both ends, deliver after the latency.
    fn send(&mut self, a: u32, s: usize, bytes: u64, ev: Ev) {
        let b = self.nodes[a as usize].links[s];
        self.nodes[a as usize].bytes += bytes;
        self.nodes[b as usize].bytes += bytes;
        let t = self.now_ms + self.lat[a as usize][s] as f64;
        self.at(t, ev);
    }

    fn slot_of(&self, a: u32, b: u32) -> Option<usize> {
        self.nodes[a as usize].links.iter().position(|&x| x == b)
    }

    fn link_up(&self, a: u32, s: usize) -> bool {
        let n = &self.nodes[a as usize];
        n.online && n.up[s] && self.nodes[n.links[s] as usize].online
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Create(p) => {
                // At a random online node.
                let v = loop {
                    let v = self.rng.gen_range(0..self.cfg.nodes as u32);
                    if self.nodes[v as usize].online {
                        break v;
                    }
                };
                self.created[p as usize] = self.now_ms;
                self.store(v, p, None);
            }
            Ev::Inv { from, to, ids } => {
                let Some(s) = self.slot_of(to, from) else {
                    return;
                };
                if !self.link_up(to, s) {
                    return;
                }
                self.inv_entries += ids.len() as u64;
                self.want(to, s, ids);
            }
            Ev::GetData { from, to, ids } => {
                let Some(s) = self.slot_of(to, from) else {
                    return;
                };
                if !self.link_up(to, s) {
                    return;
                }
                for p in ids {
                    if !self.nodes[to as usize].stored[p as usize].is_nan() {
                        self.send(
                            to,
                            s,
                            HEADER + PACKET_MSG,
                            Ev::Packet {
                                from: to,
                                to: from,
                                p,
                            },
                        );
                    }
                }
            }
            Ev::Packet { from, to, p } => {
                let Some(s) = self.slot_of(to, from) else {
                    return;
                };
                if !self.link_up(to, s) {
                    return;
                }
                let now = self.instant();
                let id = self.ids[p as usize];
                let (ok, more) = {
                    let (nodes, by_id) = (&mut self.nodes, &self.by_id);
                    let node = &mut nodes[to as usize];
                    let stored = &node.stored;
                    let have =
                        |i: &PacketId| by_id.get(i).is_none_or(|&q| !stored[q as usize].is_nan());
                    node.fetcher.delivered(from as u64, &id, now, have)
                };
                if !ok || !self.nodes[to as usize].stored[p as usize].is_nan() {
                    self.duplicates += 1;
                }
                if ok {
                    self.store(to, p, Some(s));
                }
                self.ask(to, vec![(from as u64, more)]);
            }
            Ev::Flush { node, slot } => {
                let s = slot as usize;
                self.nodes[node as usize].flush_armed[s] = false;
                let ids = std::mem::take(&mut self.nodes[node as usize].queued[s]);
                if !ids.is_empty() && self.link_up(node, s) {
                    let to = self.nodes[node as usize].links[s];
                    self.send(
                        node,
                        s,
                        msg_bytes(ids.len()),
                        Ev::Inv {
                            from: node,
                            to,
                            ids,
                        },
                    );
                }
            }
            Ev::Down(v) => {
                self.nodes[v as usize].online = false;
                // Every link of v drops, at both ends.
                let now = self.instant();
                for s in 0..self.nodes[v as usize].links.len() {
                    let b = self.nodes[v as usize].links[s];
                    let t = self.back[v as usize][s] as usize;
                    self.nodes[b as usize].up[t] = false;
                    self.nodes[v as usize].up[s] = false;
                    let asks = self.nodes[b as usize].fetcher.peer_gone(v as u64, now);
                    self.ask(b, asks);
                    let asks = self.nodes[v as usize].fetcher.peer_gone(b as u64, now);
                    drop(asks); // v is offline: it asks no one
                }
            }
            Ev::Up(v) => {
                self.nodes[v as usize].online = true;
                let missed: Vec<u32> = (0..self.cfg.packets as u32)
                    .filter(|&p| {
                        let c = self.created[p as usize];
                        !c.is_nan()
                            && c <= self.now_ms
                            && self.nodes[v as usize].stored[p as usize].is_nan()
                    })
                    .collect();
                self.rejoin.insert(
                    v,
                    Rejoin {
                        at: self.now_ms,
                        missed,
                        bytes_at_up: self.nodes[v as usize].bytes,
                        ..Rejoin::default()
                    },
                );
                // Reconnect every link whose other end is online: fresh sessions know nothing.
                let snap = self.snapshot(v);
                let first = recon::encode(&recon::initiate(&snap));
                let mut k = 0;
                for s in 0..self.nodes[v as usize].links.len() {
                    let b = self.nodes[v as usize].links[s];
                    if !self.nodes[b as usize].online {
                        continue;
                    }
                    let t = self.back[v as usize][s] as usize;
                    self.nodes[v as usize].up[s] = true;
                    self.nodes[b as usize].up[t] = true;
                    for p in 0..self.cfg.packets {
                        self.nodes[v as usize].known[p] &= !(1 << s);
                        self.nodes[b as usize].known[p] &= !(1 << t);
                    }
                    if k == 0 || self.cfg.recon_stagger_ms <= 0.0 {
                        self.recon_send(v, s, first.clone());
                    } else {
                        let at = self.now_ms + k as f64 * self.cfg.recon_stagger_ms;
                        self.at(
                            at,
                            Ev::StartRecon {
                                node: v,
                                slot: s as u8,
                            },
                        );
                    }
                    k += 1;
                }
                // Links to nodes that are still down come back when those do (their Up).
                self.check_caught_up(v);
            }
            Ev::StartRecon { node, slot } => {
                let s = slot as usize;
                if self.link_up(node, s) {
                    let msg = recon::encode(&recon::initiate(&self.snapshot(node)));
                    self.recon_send(node, s, msg);
                }
            }
            Ev::Recon { from, to, msg } => {
                let Some(s) = self.slot_of(to, from) else {
                    return;
                };
                if !self.link_up(to, s) {
                    return;
                }
                let ranges = match recon::decode(&msg) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let snap = self.snapshot(to);
                let Ok(out) = recon::respond(&snap, &ranges) else {
                    return;
                };
                let need: Vec<u32> = out
                    .need
                    .iter()
                    .filter_map(|id| self.by_id.get(id).copied())
                    .collect();
                if !need.is_empty() {
                    self.want(to, s, need);
                }
                let have: Vec<u32> = out
                    .have
                    .iter()
                    .filter_map(|i| self.by_id.get(&i.id).copied())
                    .collect();
                for p in have {
                    self.nodes[to as usize].known[p as usize] &= !(1 << s);
                    self.announce(to, s, p);
                }
                if !out.reply.is_empty() {
                    self.recon_send(to, s, recon::encode(&out.reply));
                }
            }
        }
    }

    fn recon_send(&mut self, a: u32, s: usize, msg: Vec<u8>) {
        let b = self.nodes[a as usize].links[s];
        let bytes = HEADER + msg.len() as u64;
        for v in [a, b] {
            if let Some(r) = self.rejoin.get_mut(&v) {
                r.recon_bytes += bytes;
                r.recon_messages += 1;
            }
        }
        self.send(
            a,
            s,
            bytes,
            Ev::Recon {
                from: a,
                to: b,
                msg,
            },
        );
    }

    /// The node's reconciliation items: the base and the packets it stored.
    fn snapshot(&self, v: u32) -> Snapshot {
        let n = &self.nodes[v as usize];
        let mut extra: Vec<Item> = (0..self.cfg.packets)
            .filter(|&p| !n.stored[p].is_nan())
            .map(|p| Item {
                expires: self.expires[p],
                id: self.ids[p],
                record: 0,
            })
            .collect();
        extra.sort_unstable();
        // A merge of two sorted runs, so that `Snapshot::new`'s sort finds it sorted.
        let mut items = Vec::with_capacity(self.base.len() + extra.len());
        let (mut i, mut j) = (0, 0);
        while i < self.base.len() || j < extra.len() {
            if j == extra.len() || (i < self.base.len() && self.base[i] < extra[j]) {
                items.push(self.base[i]);
                i += 1;
            } else {
                items.push(extra[j]);
                j += 1;
            }
        }
        Snapshot::new(items)
    }

    /// Ids the peer on link `s` holds: remember it has them; fetch those we lack.
    fn want(&mut self, v: u32, s: usize, ps: Vec<u32>) {
        let peer = self.nodes[v as usize].links[s] as u64;
        let mut lacking = Vec::new();
        for p in ps {
            self.nodes[v as usize].known[p as usize] |= 1 << s;
            if self.nodes[v as usize].stored[p as usize].is_nan() {
                lacking.push(self.ids[p as usize]);
            }
        }
        if lacking.is_empty() {
            return;
        }
        let now = self.instant();
        let asks = {
            let (nodes, by_id) = (&mut self.nodes, &self.by_id);
            let node = &mut nodes[v as usize];
            let stored = &node.stored;
            let have = |i: &PacketId| by_id.get(i).is_none_or(|&q| !stored[q as usize].is_nan());
            node.fetcher.announced(peer, lacking, now, have)
        };
        self.ask(v, vec![(peer, asks)]);
    }

    fn ask(&mut self, v: u32, asks: Vec<(u64, Vec<PacketId>)>) {
        for (peer, ids) in asks {
            if ids.is_empty() {
                continue;
            }
            let Some(s) = self.slot_of(v, peer as u32) else {
                continue;
            };
            if !self.link_up(v, s) {
                continue;
            }
            let ps: Vec<u32> = ids
                .iter()
                .filter_map(|id| self.by_id.get(id).copied())
                .collect();
            for chunk in ps.chunks(crate::p2p::message::MAX_INV) {
                self.send(
                    v,
                    s,
                    msg_bytes(chunk.len()),
                    Ev::GetData {
                        from: v,
                        to: peer as u32,
                        ids: chunk.to_vec(),
                    },
                );
            }
        }
    }

    /// `v` now holds `p` (from the peer on link `src`, or made here).
    fn store(&mut self, v: u32, p: u32, src: Option<usize>) {
        if !self.nodes[v as usize].stored[p as usize].is_nan() {
            return;
        }
        self.nodes[v as usize].stored[p as usize] = self.now_ms as f32;
        if let Some(s) = src {
            self.nodes[v as usize].known[p as usize] |= 1 << s;
        }
        for s in 0..self.nodes[v as usize].links.len() {
            self.announce(v, s, p);
        }
        if self.rejoin.contains_key(&v) {
            self.check_caught_up(v);
        }
    }

    /// Announce `p` on link `s` unless the peer is known to have it.
    fn announce(&mut self, v: u32, s: usize, p: u32) {
        if self.nodes[v as usize].known[p as usize] & (1 << s) != 0 || !self.link_up(v, s) {
            return;
        }
        self.nodes[v as usize].known[p as usize] |= 1 << s;
        let to = self.nodes[v as usize].links[s];
        match self.cfg.trickle_ms {
            None => self.send(
                v,
                s,
                msg_bytes(1),
                Ev::Inv {
                    from: v,
                    to,
                    ids: vec![p],
                },
            ),
            Some(mean) => {
                self.nodes[v as usize].queued[s].push(p);
                if !self.nodes[v as usize].flush_armed[s] {
                    self.nodes[v as usize].flush_armed[s] = true;
                    let d = -(self.rng.gen_range(f64::EPSILON..1.0f64)).ln() * mean;
                    self.at(
                        self.now_ms + d,
                        Ev::Flush {
                            node: v,
                            slot: s as u8,
                        },
                    );
                }
            }
        }
    }

    fn check_caught_up(&mut self, v: u32) {
        let now = self.now_ms;
        let bytes = self.nodes[v as usize].bytes;
        let stored = &self.nodes[v as usize].stored;
        if let Some(r) = self.rejoin.get_mut(&v) {
            if r.caught_up.is_none() && r.missed.iter().all(|&p| !stored[p as usize].is_nan()) {
                r.caught_up = Some(now - r.at);
                r.bytes_to_catch_up = Some(bytes - r.bytes_at_up);
            }
        }
    }

    fn report(&self, events: u64) -> Report {
        let secs = self.now_ms / 1000.0;
        let mut per_node: Vec<f64> = self.nodes.iter().map(|n| n.bytes as f64 / secs).collect();
        per_node.sort_by(f64::total_cmp);
        let mut lats = Vec::new();
        let mut pairs = 0u64;
        let mut delivered = 0u64;
        let mut stored_total = 0u64;
        for (v, n) in self.nodes.iter().enumerate() {
            let churned = self.rejoin.contains_key(&(v as u32));
            for p in 0..self.cfg.packets {
                pairs += 1;
                if !n.stored[p].is_nan() {
                    delivered += 1;
                    stored_total += 1;
                    if !churned {
                        lats.push(n.stored[p] as f64 - self.created[p]);
                    }
                }
            }
        }
        lats.sort_by(f64::total_cmp);
        let q = |v: &[f64], f: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * f) as usize]
            }
        };
        let rj: Vec<&Rejoin> = self.rejoin.values().collect();
        let mut rb: Vec<f64> = rj.iter().map(|r| r.recon_bytes as f64).collect();
        rb.sort_by(f64::total_cmp);
        let mut cu: Vec<f64> = rj
            .iter()
            .map(|r| r.caught_up.unwrap_or(f64::INFINITY))
            .collect();
        cu.sort_by(f64::total_cmp);
        let missed: f64 = rj.iter().map(|r| r.missed.len() as f64).sum::<f64>();
        let spent: f64 = rj
            .iter()
            .map(|r| r.bytes_to_catch_up.unwrap_or(0) as f64)
            .sum();
        let n = rj.len().max(1) as f64;
        Report {
            nodes: self.cfg.nodes,
            packets: self.cfg.packets,
            seconds: secs,
            node_bytes_per_s: (
                per_node.iter().sum::<f64>() / per_node.len().max(1) as f64,
                q(&per_node, 0.99),
            ),
            announcements_per_packet: self.inv_entries as f64 / stored_total.max(1) as f64,
            duplicate_deliveries: self.duplicates,
            latency_ms: (
                q(&lats, 0.5),
                q(&lats, 0.99),
                lats.last().copied().unwrap_or(0.0),
            ),
            delivered: delivered as f64 / pairs.max(1) as f64,
            rejoined: rj.len(),
            missed_mean: missed / n,
            recon_bytes: (rb.iter().sum::<f64>() / n, q(&rb, 0.99)),
            recon_messages: rj.iter().map(|r| r.recon_messages as f64).sum::<f64>() / n,
            catch_up_ms: (q(&cu, 0.5), q(&cu, 0.99)),
            catch_up_overhead: spent / (missed * 1024.0).max(1.0),
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(trickle: Option<f64>) -> SimConfig {
        SimConfig {
            nodes: 300,
            degree: 8,
            packets: 200,
            rate: 20.0,
            base_items: 2_000,
            churn: 0.10,
            down_at: 2.0,
            down_for: 5.0,
            trickle_ms: trickle,
            seed: 7,
            ..SimConfig::default()
        }
    }

    #[test]
    fn every_packet_reaches_every_node_and_rejoiners_catch_up_by_reconciliation() {
        for trickle in [None, Some(200.0)] {
            let r = run(&small(trickle));
            assert_eq!(r.delivered, 1.0, "{r:?}");
            assert_eq!(r.rejoined, 30);
            assert!(
                r.missed_mean > 10.0,
                "they were down while packets flowed: {r:?}"
            );
            assert!(
                r.catch_up_ms.1.is_finite(),
                "every rejoiner caught up: {r:?}"
            );
            assert!(
                r.recon_messages >= 8.0,
                "one session per link at least: {r:?}"
            );
            // Each link carries an announcement at most once each way: fewer than `degree`
            // entries per packet stored.
            assert!(r.announcements_per_packet < 8.0, "{r:?}");
            assert!(r.announcements_per_packet > 1.0, "{r:?}");
            assert!(r.latency_ms.0 > 10.0 && r.latency_ms.1 < 10_000.0, "{r:?}");
        }
    }

    #[test]
    fn staggered_sessions_cost_less_than_all_at_once() {
        let staggered = run(&small(None));
        let burst = run(&SimConfig {
            recon_stagger_ms: 0.0,
            ..small(None)
        });
        assert_eq!((staggered.delivered, burst.delivered), (1.0, 1.0));
        assert!(
            staggered.recon_bytes.0 * 2.0 < burst.recon_bytes.0,
            "{} vs {}",
            staggered.recon_bytes.0,
            burst.recon_bytes.0
        );
    }

    #[test]
    fn same_seed_same_run() {
        let a = run(&small(Some(100.0)));
        let b = run(&small(Some(100.0)));
        assert_eq!(a.events, b.events);
        assert_eq!(a.latency_ms, b.latency_ms);
        assert_eq!(a.recon_bytes, b.recon_bytes);
    }

    #[test]
    fn wire_sizes_match_the_encoder() {
        use crate::p2p::message::Message;
        let ids = vec![PacketId([1; 32]); 3];
        let m = Message::Inv { ids, other: 0 }.encode();
        assert_eq!(HEADER + m.payload.len() as u64, msg_bytes(3));
        let p = crate::packet::Packet {
            tag: crate::tag::Tag([0; 20]),
            expires: 1,
            nonce: 0,
            body: Box::new([0; crate::packet::BODY_LEN]),
        };
        assert_eq!(
            Message::Bump(Box::new(p)).encode().payload.len() as u64,
            PACKET_MSG
        );
    }
}
