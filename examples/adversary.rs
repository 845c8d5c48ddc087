//! A global passive adversary against a live BuMP network (issue #15):
//!
//!     cargo build --release && cargo run --release --example adversary -- [NODES] [MESSAGES] [LEVEL] [SEED]
//!
//! Starts NODES `bump node` processes (target/release/bump, regtest, loopback, defaults: every
//! node a mix, its record on the bus, cover on) connected in a ring with chords, and a **spy**
//! peer connected to every node that records who announces which packet id first and when.
//! Senders (the harness, through the nodes' RPC) send MESSAGES messages at Tau LEVEL from random
//! nodes at Poisson times, 30 % of them multi-part. At the end the harness reads every packet
//! from a node's store and, as an omniscient judge holding every mix key (read from the
//! datadirs), peels each relay packet to learn the truth: which announcement was a node's own
//! insertion (no visible packet peels into it) and which a mix release.
//!
//! The adversary knows no key. He sees announcements (node, time, packet tag and expiry: the
//! clear fields) and the public defaults. He is given two attacks:
//!
//! - **insertion or release?** For each announcement: the size of the announcing node's burst
//!   (announcements within 50 ms) and the time since a packet addressed to that node's mix tag
//!   was last seen. The best single threshold on either, chosen in hindsight with the truth
//!   (an upper bound for such rules), gives a balanced accuracy (0.5 = coin flip).
//! - **who sent it?** He knows the defaults, so the route length (own layer + min(3, others)
//!   mixes) and the level's minimum delay per hop. From each message's final packet backwards:
//!   a packet released by mix Z at t came from one of the packets addressed to Z seen between
//!   a horizon H (1.5, 4 or 15 minutes) and the minimum delay before t; mass is spread
//!   uniformly over them, hop by hop, for the route's number of remote hops; the announcers of
//!   the packets reached get it. The top-1 node is his guess, by raw mass or by mass divided
//!   by the node's average share over all finals (so a busy node is not everyone's suspect).
//!   Parts of a message are combined
//!   by adding their mass: in plain mode he groups them exactly (they share a tag); in sealed
//!   mode (5th argument `sealed`: every message sealed to one group all nodes are in, §8.4)
//!   all finals share the group's tag, so he groups the finals seen within a window W (0, 5,
//!   20, 60, 180 s) of the message's first. The best (H, W, rule) in hindsight is reported, separately
//!   for single- and multi-part messages. Also: delivery times.
//!
//! `ADVERSARY_ROWS=FILE` writes every judged announcement (node, time, truth, burst, time
//! since input) as CSV. Before the first send the network runs cover and loops until every
//! node has announced a packet, then `ADVERSARY_WARMUP_S` seconds more (60 unless set; 0 = no
//! warm-up): insertion vs release is judged on a live network, from the first send on, and
//! printed again from the network's birth (when every node, with no input yet, must go first
//! once).
//!
//! The best (H, W, rule) in hindsight is an upper bound (30 rules, few messages); the estimate
//! is the rule chosen on half the messages and counted on the other half, both ways
//! (two-fold cross-validation). A 6th argument sets the share of multi-part messages (0.3).
//!
//! One run is one row of the table in docs/anonymity.md; run several seeds per row:
//! `... -- 10 40 standard SEED sealed`, or `... -- 10 40 standard SEED plain 0.5`.

#[path = "../tests/common/raw.rs"]
#[allow(dead_code)]
mod raw;

use bump::onion::layer::{mix_tag, peel};
use bump::p2p::message::Message;
use bump::packet::{Packet, PacketId, PacketJson};
use bump::tag::Tag;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Node {
    dir: tempfile::TempDir,
    child: Child,
    rpc: SocketAddr,
    p2p: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn netdir(d: &Path) -> PathBuf {
    d.join("regtest")
}

fn wait_file(p: &Path, secs: u64) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{} not written",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(bin: &Path, connect: &[String]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--datadir",
        dir.path().to_str().unwrap(),
        "--regtest",
        "node",
        "--rpc-bind",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    for c in connect {
        args.push("--connect".into());
        args.push(c.clone());
    }
    let child = Command::new(bin)
        .args(&args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bump node (cargo build --release first)");
    let rpc = wait_file(&netdir(dir.path()).join("rpc.addr"), 20)
        .parse()
        .unwrap();
    let p2p = wait_file(&netdir(dir.path()).join("p2p.addr"), 20);
    Node {
        dir,
        child,
        rpc,
        p2p,
    }
}

fn rpc(n: &Node, method: &str, params: serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let cookie = std::fs::read_to_string(netdir(n.dir.path()).join(".cookie")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(cookie.trim());
    let body =
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string();
    let mut s = std::net::TcpStream::connect(n.rpc).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Basic {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        n.rpc,
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    serde_json::from_slice(&resp[at..]).unwrap_or(serde_json::Value::Null)
}

/// What the spy saw: the first announcement of each id (node, time in ms since start) and
/// every node's announcements in order.
#[derive(Default)]
struct Seen {
    first: HashMap<PacketId, (usize, f64)>,
}

fn spy(nodes: &[Node], t0: Instant) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    for (i, n) in nodes.iter().enumerate() {
        let mut p = raw::RawPeer::connect(&n.p2p, [127, 0, 0, 100 + i as u8]).unwrap();
        p.handshake().unwrap();
        p.s.set_read_timeout(None).unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            while let Some(m) = p.read_msg() {
                match m {
                    Message::Inv { ids, .. } => {
                        let t = t0.elapsed().as_secs_f64() * 1000.0;
                        let mut s = seen.lock().unwrap();
                        for id in ids {
                            s.first.entry(id).or_insert((i, t));
                        }
                    }
                    Message::Ping(n) => {
                        let _ = p.send(&Message::Pong(n));
                    }
                    _ => {}
                }
            }
        });
    }
    seen
}

struct Sent {
    sender: usize,
    tag: Tag,
    /// Sealed mode: the message id inside the sealed frames (the judge opens them).
    msgid: Option<bump::message::MessageId>,
    at_ms: f64,
    parts: usize,
}

/// One judged announcement: (truly an insertion, burst size, ms since the node's last input).
type Row = (bool, f64, f64);

/// Balanced accuracy of the rule "insertion iff (feature >= th) != dir" on `rs`.
fn score(rs: &[&Row], f: &dyn Fn(&Row) -> f64, th: f64, dir: bool) -> f64 {
    let (mut tp, mut tn, mut p, mut n) = (0usize, 0usize, 0usize, 0usize);
    for r in rs {
        let guess_ins = (f(r) >= th) != dir;
        if r.0 {
            p += 1;
            tp += (guess_ins) as usize;
        } else {
            n += 1;
            tn += (!guess_ins) as usize;
        }
    }
    0.5 * (tp as f64 / p.max(1) as f64 + tn as f64 / n.max(1) as f64)
}

/// The best rule on `rs` (threshold, direction, its accuracy there).
fn fit(rs: &[&Row], f: &dyn Fn(&Row) -> f64) -> (f64, bool, f64) {
    let mut vals: Vec<f64> = rs.iter().map(|r| f(r)).collect();
    vals.sort_by(|a, b| a.total_cmp(b));
    vals.dedup();
    let mut best = (f64::INFINITY, false, 0.5);
    for th in vals {
        for dir in [false, true] {
            let acc = score(rs, f, th, dir);
            if acc > best.2 {
                best = (th, dir, acc);
            }
        }
    }
    best
}

/// Insertion or release, on `rows`: the best threshold rule in hindsight on burst size and
/// on time since input, and each cross-validated (two-fold, announcements alternately in
/// time order: the rule is chosen on one half and scored on the other, so a threshold
/// picked to fit noise does not count).
fn classify(rows: &[Row]) -> (f64, f64, f64, f64) {
    let all: Vec<&Row> = rows.iter().collect();
    let halves: [Vec<&Row>; 2] = [
        rows.iter().step_by(2).collect(),
        rows.iter().skip(1).step_by(2).collect(),
    ];
    let cross = |f: &dyn Fn(&Row) -> f64| -> f64 {
        let (a, b) = (&halves[0], &halves[1]);
        let (ta, da, _) = fit(a, f);
        let (tb, db, _) = fit(b, f);
        0.5 * (score(b, f, ta, da) + score(a, f, tb, db))
    };
    let burst = |r: &Row| r.1;
    let since = |r: &Row| r.2;
    (
        fit(&all, &burst).2,
        fit(&all, &since).2,
        cross(&burst),
        cross(&since),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_nodes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let n_msgs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
    let level = args.get(3).cloned().unwrap_or_else(|| "low".into());
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    // "plain": one plain tag per message; "sealed": every message sealed to one group all
    // nodes are in (§8.4), so all final packets share the group's tag of the day.
    let sealed = args.get(5).is_some_and(|m| m == "sealed");
    // Share of multi-part messages (6th argument; 0.3 unless given): raise it to measure
    // multi-part linking on more messages.
    let multi_share: f64 = args
        .get(6)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3f64)
        .clamp(0.0, 1.0);
    let group = bump::sealed::keys::GroupKey::from_passphrase(&format!("adversary-{seed}"))
        .expect("argon2id");
    let frame_key = bump::sealed::parts::group_frame_key(&group);
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/bump");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // A ring with chords: node i dials i-1 and i-3.
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n_nodes {
        let mut c = Vec::new();
        if i >= 1 {
            c.push(nodes[i - 1].p2p.clone());
        }
        if i >= 3 {
            c.push(nodes[i - 3].p2p.clone());
        }
        if i == n_nodes - 1 && n_nodes > 2 {
            c.push(nodes[0].p2p.clone());
        }
        nodes.push(start(&bin, &c));
    }
    let t0 = Instant::now();
    let seen = spy(&nodes, t0);
    // Every node learns the others' mix records.
    let keys: Vec<(secp256k1::SecretKey, Tag)> = nodes
        .iter()
        .map(|n| {
            let hex = wait_file(&netdir(n.dir.path()).join("mixkey"), 10);
            let sk = secp256k1::SecretKey::from_slice(&hex::decode(hex).unwrap()).unwrap();
            let pk = secp256k1::PublicKey::from_secret_key(secp256k1::SECP256K1, &sk);
            (sk, mix_tag(&pk))
        })
        .collect();
    let ready = Instant::now();
    while ready.elapsed() < Duration::from_secs(120) {
        let ok = nodes.iter().all(|n| {
            rpc(n, "bump_mixstatus", serde_json::json!([]))["result"]["bus_mixes"]
                .as_u64()
                .unwrap_or(0) as usize
                == n_nodes - 1
        });
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if sealed {
        for n in &nodes {
            let v = rpc(
                n,
                "bump_groupjoin",
                serde_json::json!([{"name": "adv", "passphrase": format!("adversary-{seed}")}]),
            );
            assert!(v["result"].is_object(), "group join failed: {v}");
        }
    }
    eprintln!(
        "{n_nodes} nodes up, mixes known after {:.1} s; sending {n_msgs} {} messages at level {level}",
        ready.elapsed().as_secs_f64(),
        if sealed { "sealed" } else { "plain" }
    );

    // A live network: cover and loops run until every node has announced something (a
    // network being born first fills its crowds from its nodes' own cover, with no input
    // anywhere), then `ADVERSARY_WARMUP_S` seconds more (60 unless set), before the first
    // send; insertion vs release is judged from the first send on (and, for comparison, from
    // the network's birth).
    let warmup: f64 = std::env::var("ADVERSARY_WARMUP_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    if warmup > 0.0 {
        let birth = Instant::now();
        while birth.elapsed() < Duration::from_secs(900) {
            let announced: HashSet<usize> =
                seen.lock().unwrap().first.values().map(|v| v.0).collect();
            if announced.len() == n_nodes {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!(
            "every node announced by {:.0} s; warming up {warmup:.0} s more (cover and loops only)",
            t0.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs_f64(warmup));
    }
    let judge_from_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Poisson sends, mean 3 s apart, from random nodes.
    let mut sent = Vec::new();
    for k in 0..n_msgs {
        let wait = -(rng.gen_range(f64::EPSILON..1.0f64)).ln() * 3.0;
        std::thread::sleep(Duration::from_secs_f64(wait));
        let sender = rng.gen_range(0..n_nodes);
        let multi = rng.gen_bool(multi_share);
        // Sealed: the envelope adds 57 bytes and pads to 256, so 150 bytes stay one part.
        let size = match (multi, sealed) {
            (true, _) => 1800,
            (false, false) => 300,
            (false, true) => 150,
        };
        let data: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
        let tag_s = format!("#adversary-{seed}-{k}");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let (v, result) = if sealed {
            let v = rpc(
                &nodes[sender],
                "bump_sealedsend",
                serde_json::json!([{"group": "adv", "tau": level, "data": b64}]),
            );
            let r = v["result"][0].clone();
            (v, r)
        } else {
            let v = rpc(
                &nodes[sender],
                "bump_send",
                serde_json::json!([{"tag": tag_s, "tau": level, "data": b64}]),
            );
            let r = v["result"].clone();
            (v, r)
        };
        let parts = result["packets"].as_u64().unwrap_or(0) as usize;
        if parts == 0 {
            eprintln!("send failed: {v}");
            continue;
        }
        let tag = match result["tag"].as_str().and_then(|t| Tag::from_arg(t).ok()) {
            Some(t) => t,
            None => Tag::from_human(&tag_s),
        };
        sent.push(Sent {
            sender,
            tag,
            msgid: result["msgid"]
                .as_str()
                .and_then(bump::message::MessageId::from_hex)
                .filter(|_| sealed),
            at_ms: t0.elapsed().as_secs_f64() * 1000.0,
            parts,
        });
    }
    // Wait for delivery (bounded).
    let deadline = Instant::now() + Duration::from_secs(900);
    // A final packet's message: its tag (plain), or the id inside its sealed frame.
    let final_of = |p: &Packet| -> (Tag, Option<bump::message::MessageId>) {
        let id = sealed
            .then(|| bump::sealed::parts::open_unit(&frame_key, &p.tag, &p.body[..]))
            .flatten()
            .map(|(h, _)| h.msg_id);
        (p.tag, id)
    };
    let all_delivered = || {
        let tags: HashSet<Tag> = sent.iter().map(|s| s.tag).collect();
        let mut have: HashMap<(Tag, Option<bump::message::MessageId>), usize> = HashMap::new();
        for t in tags {
            let v = rpc(
                &nodes[0],
                "bump_getpackets",
                serde_json::json!([t.to_hex()]),
            );
            for j in v["result"].as_array().cloned().unwrap_or_default() {
                if let Some(p) = serde_json::from_value::<PacketJson>(j)
                    .ok()
                    .and_then(|pj| Packet::from_json(&pj).ok())
                {
                    *have.entry(final_of(&p)).or_default() += 1;
                }
            }
        }
        sent.iter()
            .all(|s| have.get(&(s.tag, s.msgid)).copied().unwrap_or(0) >= s.parts)
    };
    while Instant::now() < deadline && !all_delivered() {
        std::thread::sleep(Duration::from_secs(3));
    }
    std::thread::sleep(Duration::from_secs(3));
    let end_ms = t0.elapsed().as_secs_f64() * 1000.0;

    // The judge: every packet under every mix tag and final tag, from node 0's store.
    let mut packets: HashMap<PacketId, Packet> = HashMap::new();
    let tags: HashSet<Tag> = keys
        .iter()
        .map(|k| k.1)
        .chain(sent.iter().map(|s| s.tag))
        .collect();
    for t in &tags {
        let v = rpc(
            &nodes[0],
            "bump_getpackets",
            serde_json::json!([t.to_hex()]),
        );
        for j in v["result"].as_array().cloned().unwrap_or_default() {
            if let Ok(pj) = serde_json::from_value::<PacketJson>(j) {
                if let Ok(p) = Packet::from_json(&pj) {
                    packets.insert(p.id(), p);
                }
            }
        }
    }
    let key_of = |p: &Packet| (p.tag, p.body[..48].to_vec());
    let by_key: HashMap<(Tag, Vec<u8>), PacketId> =
        packets.iter().map(|(id, p)| (key_of(p), *id)).collect();
    // parent[child] = the visible packet that peels into it; `owner` of a packet = the mix
    // whose tag it carries.
    let mut parent: HashMap<PacketId, PacketId> = HashMap::new();
    let mix_of: HashMap<Tag, usize> = keys.iter().enumerate().map(|(i, k)| (k.1, i)).collect();
    for (id, p) in &packets {
        let Some(&m) = mix_of.get(&p.tag) else {
            continue;
        };
        if let Ok(u) = peel(&keys[m].0, p, &mut rand::rngs::OsRng) {
            if let Some(out) = u.outgoing {
                if let Some(child) = by_key.get(&key_of(&out)) {
                    parent.insert(*child, *id);
                }
            }
        }
    }
    let seen = seen.lock().unwrap();
    let first = &seen.first;

    // ---- insertion or release?
    let mut ann: Vec<(PacketId, usize, f64)> = first
        .iter()
        .filter(|(id, _)| packets.contains_key(id))
        .map(|(id, (n, t))| (*id, *n, *t))
        .collect();
    ann.sort_by(|a, b| a.2.total_cmp(&b.2));
    // Visible inputs to each node: first-seen times of packets carrying its mix tag.
    let mut inputs: Vec<Vec<f64>> = vec![Vec::new(); n_nodes];
    for (id, _, t) in &ann {
        if let Some(&m) = mix_of.get(&packets[id].tag) {
            inputs[m].push(*t);
        }
    }
    let mut rows = Vec::new(); // (truth_is_insertion, burst, since_input)
    for (id, n, t) in &ann {
        let burst = ann
            .iter()
            .filter(|(_, n2, t2)| n2 == n && (t2 - t).abs() <= 50.0)
            .count() as f64;
        let since = inputs[*n]
            .iter()
            .rfind(|x| **x <= *t)
            .map_or(1e9, |x| t - x);
        let truth = !parent.contains_key(id);
        rows.push((truth, burst, since));
    }
    // `ADVERSARY_ROWS=FILE`: every judged announcement as CSV, to study what a feature sees.
    if let Ok(path) = std::env::var("ADVERSARY_ROWS") {
        let mut csv = String::from("node,at_ms,insertion,burst,since_input_ms\n");
        for ((_, n, t), (truth, burst, since)) in ann.iter().zip(&rows) {
            csv.push_str(&format!("{n},{t:.0},{},{burst},{since:.0}\n", *truth as u8));
        }
        if let Err(e) = std::fs::write(&path, csv) {
            eprintln!("could not write {path}: {e}");
        }
    }
    let ins = rows.iter().filter(|r| r.0).count();
    let rel = rows.len() - ins;
    // From the first send on (the network has run `warmup` by then): a live network's figure.
    let live: Vec<Row> = ann
        .iter()
        .zip(&rows)
        .filter(|((_, _, t), _)| *t >= judge_from_ms)
        .map(|(_, r)| *r)
        .collect();
    let (acc_burst, acc_since, cv_burst, cv_since) = classify(&live);
    eprintln!(
        "insertion vs release (live, from the first send, {} announcements): in hindsight {acc_burst:.2} (burst) / {acc_since:.2} (since input); cross-validated {cv_burst:.2} / {cv_since:.2}",
        live.len()
    );
    let (b_burst, b_since, b_cv_burst, b_cv_since) = classify(&rows);
    eprintln!(
        "insertion vs release (from the network's birth, {} announcements): in hindsight {b_burst:.2} / {b_since:.2}; cross-validated {b_cv_burst:.2} / {b_cv_since:.2}",
        rows.len()
    );

    // ---- who sent it?
    // How far back a mix's input may lie: the adversary's choice; he gets the best of
    // these in hindsight.
    let horizons = [90_000.0, 240_000.0, 900_000.0];
    // Packets addressed to each mix, by first-seen time.
    let mut addressed: Vec<Vec<(f64, PacketId)>> = vec![Vec::new(); n_nodes];
    for (id, _, t) in &ann {
        if let Some(&m) = mix_of.get(&packets[id].tag) {
            addressed[m].push((*t, *id));
        }
    }
    // The public defaults tell him the route length: the node's own layer, then
    // min(3, other nodes) mixes; the message's first visible packet is that many hops before
    // its final packet, and each hop held it at least the level's delay.
    let remote_hops = 3.min(n_nodes - 1);
    let min_gap = bump::mix::tau::Tau::resolve(Some(&level), None, None)
        .map(|t| t.delay_secs as f64 * 1000.0 - 500.0)
        .unwrap_or(0.0)
        .max(0.0);
    let blame = |start: PacketId, horizon: f64| -> Vec<f64> {
        let mut out = vec![0.0; n_nodes];
        let mut frontier: HashMap<PacketId, f64> = HashMap::from([(start, 1.0f64)]);
        for _ in 0..remote_hops {
            let mut next: HashMap<PacketId, f64> = HashMap::new();
            for (id, mass) in frontier {
                let Some(&(z, t)) = first.get(&id) else {
                    continue;
                };
                let cands: Vec<PacketId> = addressed[z]
                    .iter()
                    .filter(|(t2, _)| t - t2 >= min_gap && t - t2 <= horizon)
                    .map(|(_, i)| *i)
                    .collect();
                if cands.is_empty() {
                    // Nothing visible went in: he blames the announcer.
                    out[z] += mass;
                    continue;
                }
                let each = mass / cands.len() as f64;
                for c in cands {
                    *next.entry(c).or_default() += each;
                }
            }
            frontier = next;
        }
        for (id, mass) in frontier {
            if let Some(&(z, _)) = first.get(&id) {
                out[z] += mass;
            }
        }
        out
    };
    // Each message's final packets (the judge knows them) and when each was first seen.
    let mut latencies = Vec::new();
    let mut undelivered = 0;
    let mut judged: Vec<(&Sent, Vec<(f64, PacketId)>)> = Vec::new();
    for s in &sent {
        let mut finals: Vec<(f64, PacketId)> = packets
            .iter()
            .filter(|(_, p)| final_of(p) == (s.tag, s.msgid))
            .filter_map(|(id, _)| first.get(id).map(|x| (x.1, *id)))
            .collect();
        finals.sort_by(|a, b| a.0.total_cmp(&b.0));
        if finals.len() < s.parts {
            undelivered += 1;
            continue;
        }
        let done = finals.iter().map(|f| f.0).fold(0.0f64, f64::max);
        latencies.push((done - s.at_ms) / 1000.0);
        judged.push((s, finals));
    }
    // Every final packet on each tag, by first-seen time: what the adversary can group by.
    let mut on_tag: HashMap<Tag, Vec<(f64, PacketId)>> = HashMap::new();
    for (s, finals) in &judged {
        on_tag
            .entry(s.tag)
            .or_default()
            .extend(finals.iter().copied());
    }
    // Plain: the parts of a message are grouped exactly by their tag. Sealed: they share the
    // group's tag with every other message, so he groups by time: the finals on the tag seen
    // within `w` ms of the message's first final; the best `w` in hindsight is reported (w = 0:
    // the first final alone).
    let windows: &[f64] = if sealed {
        &[0.0, 5_000.0, 20_000.0, 60_000.0, 180_000.0]
    } else {
        &[f64::INFINITY]
    };
    let (mut single_best, mut multi_best) = ((0usize, 0usize, 0.0), (0usize, 0usize, 0.0));
    // Per (horizon, window, rule): whether each judged message's sender was named.
    let mut outcomes: Vec<Vec<bool>> = Vec::new();
    let all_finals: Vec<PacketId> = on_tag.values().flatten().map(|f| f.1).collect();
    for &horizon in &horizons {
        // Each final's blame once per horizon, and the average over all finals: the share of
        // blame a node gets from any message, which a careful adversary divides out (a busy
        // node is otherwise everyone's top suspect).
        let bl: HashMap<PacketId, Vec<f64>> = all_finals
            .iter()
            .map(|f| (*f, blame(*f, horizon)))
            .collect();
        let mut base = vec![0.0; n_nodes];
        for v in bl.values() {
            for (i, m) in v.iter().enumerate() {
                base[i] += m / bl.len().max(1) as f64;
            }
        }
        for &w in windows {
            for normalized in [false, true] {
                let (mut single, mut single_ok, mut multi, mut multi_ok) = (0, 0, 0, 0);
                let mut grouped = 0usize;
                let mut named = Vec::with_capacity(judged.len());
                for (s, finals) in &judged {
                    let t0f = finals[0].0;
                    let group: Vec<PacketId> = on_tag[&s.tag]
                        .iter()
                        .filter(|(t, id)| {
                            if w.is_infinite() {
                                !sealed || finals.iter().any(|f| f.1 == *id)
                            } else {
                                (t - t0f).abs() <= w || *id == finals[0].1
                            }
                        })
                        .map(|f| f.1)
                        .collect();
                    grouped += group.len();
                    let mut mass = vec![0.0; n_nodes];
                    for f in &group {
                        for (i, m) in bl[f].iter().enumerate() {
                            mass[i] += if normalized {
                                m / base[i].max(1e-9)
                            } else {
                                *m
                            };
                        }
                    }
                    let guess = (0..n_nodes)
                        .max_by(|a, b| mass[*a].total_cmp(&mass[*b]))
                        .unwrap_or(0);
                    named.push(guess == s.sender);
                    if s.parts > 1 {
                        multi += 1;
                        multi_ok += (guess == s.sender) as usize;
                    } else {
                        single += 1;
                        single_ok += (guess == s.sender) as usize;
                    }
                }
                outcomes.push(named);
                let rate = |ok: usize, n: usize| ok as f64 / n.max(1) as f64;
                if rate(single_ok, single) >= single_best.2 {
                    single_best = (single_ok, single, rate(single_ok, single));
                }
                if rate(multi_ok, multi) >= multi_best.2 {
                    multi_best = (multi_ok, multi, rate(multi_ok, multi));
                }
                eprintln!(
                    "horizon {horizon} ms, grouping window {w} ms, {}: {:.1} finals per group; single-part {single_ok}/{single}, multi-part {multi_ok}/{multi}",
                    if normalized { "normalized by base share" } else { "raw mass" },
                    grouped as f64 / judged.len().max(1) as f64
                );
            }
        }
    }
    let ((single_ok, single, _), (multi_ok, multi, _)) = (single_best, multi_best);
    // The best of 30 rules chosen in hindsight is an upper bound that grows with the number of
    // rules and shrinks with the number of messages. An estimate: two-fold cross-validation
    // over the messages (alternately in send order, separately for single- and multi-part),
    // the rule chosen on one half and counted on the other.
    let cross = |multi_part: bool| -> (usize, usize) {
        let idx: Vec<usize> = (0..judged.len())
            .filter(|&i| (judged[i].0.parts > 1) == multi_part)
            .collect();
        let (mut ok, mut n) = (0usize, 0usize);
        for fold in 0..2 {
            let half = |test: bool| -> Vec<usize> {
                idx.iter()
                    .enumerate()
                    .filter(|(k, _)| (k % 2 == fold) == test)
                    .map(|(_, i)| *i)
                    .collect()
            };
            let (train, test) = (half(false), half(true));
            let hits = |o: &Vec<bool>, set: &[usize]| set.iter().filter(|i| o[**i]).count();
            let Some(best) = outcomes.iter().max_by_key(|o| hits(o, &train)) else {
                continue;
            };
            ok += hits(best, &test);
            n += test.len();
        }
        (ok, n)
    };
    let (cv_single_ok, cv_single) = cross(false);
    let (cv_multi_ok, cv_multi) = cross(true);
    eprintln!(
        "sender linking, rule cross-validated: single-part {cv_single_ok}/{cv_single}, multi-part {cv_multi_ok}/{cv_multi}"
    );
    // What hindsight alone gives: always naming the node that sent the most of them (the
    // reference for a rule picked among many after the fact).
    let blind = |multi_part: bool| -> f64 {
        let mut by = vec![0usize; n_nodes];
        let mut n = 0usize;
        for (s, _) in judged.iter().filter(|(s, _)| (s.parts > 1) == multi_part) {
            by[s.sender] += 1;
            n += 1;
        }
        by.into_iter().max().unwrap_or(0) as f64 / n.max(1) as f64
    };
    eprintln!(
        "blind guess of the busiest sender: single-part {:.2}, multi-part {:.2}",
        blind(false),
        blind(true)
    );
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let senders: HashSet<usize> = sent.iter().map(|s| s.sender).collect();
    println!(
        "| {level}{} | {n_nodes} | {seed} | {} ({} multi-part) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} ({single_ok}/{single}) | {:.2} ({multi_ok}/{multi}) | {:.2} ({cv_single_ok}/{cv_single}) | {:.2} ({cv_multi_ok}/{cv_multi}) | {:.2} | {:.2} / {:.2} | {:.0} / {:.0} s | {undelivered} |",
        if sealed { ", sealed" } else { "" },
        sent.len(),
        sent.iter().filter(|s| s.parts > 1).count(),
        acc_burst,
        acc_since,
        cv_burst,
        cv_since,
        single_ok as f64 / single.max(1) as f64,
        multi_ok as f64 / multi.max(1) as f64,
        cv_single_ok as f64 / cv_single.max(1) as f64,
        cv_multi_ok as f64 / cv_multi.max(1) as f64,
        1.0 / senders.len().max(1) as f64,
        blind(false),
        blind(true),
        pct(0.5),
        pct(1.0),
    );
    eprintln!(
        "{} announcements judged: {ins} insertions, {rel} releases; {} packets read; run {:.0} s",
        rows.len(),
        packets.len(),
        end_ms / 1000.0
    );
}
