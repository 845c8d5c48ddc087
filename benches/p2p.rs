//! P2P figures, each beside a baseline measured in the same run:
//!
//! 1. relay throughput on a 3-node line (packets/s stored at the far end) vs. a raw TCP
//!    relay of the same bytes through the same number of hops;
//! 2. flood latency p50/p99 (send → stored at the last node) in random graphs of average
//!    degree 8, N = 20 and 50;
//! 3. catch-up time of a node that missed N packets vs. a raw TCP transfer of those bytes;
//! 4. relay throughput with the proof-of-work check on vs. off (same line, same run);
//! 5. the flood experiment (issue #12): an attacker peer floods a node at 10× its store in
//!    minimum-work packets while honest messages go both ways; delivery rate and latency
//!    beside the same honest traffic without the flood.
//!
//! `cargo bench --bench p2p` runs the full sizes; without `--bench` (e.g. `cargo test
//! --benches`) it runs small ones.

use bump::daemon::{start, DaemonSettings, Running};
use bump::node::Limits;
use bump::p2p::P2pConfig;
use bump::packet::{Packet, PacketId, BODY_LEN};
use bump::store::StoreConfig;
use bump::tag::Tag;
use namecoin::Network;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Bench {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Running>,
}

async fn node(dir: &std::path::Path, connect: Vec<String>) -> Running {
    node_with(dir, connect, Limits::default(), u64::MAX).await
}

async fn node_with(
    dir: &std::path::Path,
    connect: Vec<String>,
    limits: Limits,
    max_packets: u64,
) -> Running {
    let mut p2p = P2pConfig::new(Network::Regtest);
    p2p.listen = Some("127.0.0.1:0".parse().unwrap());
    p2p.connect = connect;
    p2p.max_outbound = 0;
    // Every node of the bench is on 127.0.0.1.
    p2p.max_inbound_per_ip = p2p.max_inbound;
    p2p.max_inbound_per_netgroup = p2p.max_inbound;
    let settings = DaemonSettings {
        chain: None,
        network: Network::Regtest,
        netdir: dir.join("regtest"),
        rpc_bind: "127.0.0.1:0".parse().unwrap(),
        rpc_user_password: None,
        limits,
        store: StoreConfig {
            max_packets,
            cache_bytes: cache_mb() << 20,
            ..StoreConfig::default()
        },
        sweep_interval: Duration::from_secs(3600),
        p2p,
        cover: None,
        own_via: Vec::new(),
        loops: bump::mix::loops::LoopConfig::off(),
        announce_mix: false,
        default_hops: 0,
    };
    start(settings, CancellationToken::new())
        .await
        .expect("node starts")
}

/// sled page cache per node, MiB (`BUMP_BENCH_CACHE_MB`, default: the node's default, 64).
fn cache_mb() -> u64 {
    std::env::var("BUMP_BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn p2p_addr(r: &Running) -> String {
    r.overlay.listen_addr().unwrap().to_string()
}

async fn graph(n: usize, edges: &[Vec<usize>]) -> Bench {
    graph_with(n, edges, Limits::default(), u64::MAX).await
}

async fn graph_with(n: usize, edges: &[Vec<usize>], limits: Limits, max_packets: u64) -> Bench {
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Running> = Vec::new();
    for i in 0..n {
        let connect = edges[i].iter().map(|&j| p2p_addr(&nodes[j])).collect();
        nodes.push(node_with(dirs[i].path(), connect, limits.clone(), max_packets).await);
    }
    let want: Vec<usize> = (0..n)
        .map(|i| edges[i].len() + edges.iter().filter(|e| e.contains(&i)).count())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .zip(&want)
        .all(|(r, &w)| r.overlay.sync_status().bump_peers >= w)
    {
        if Instant::now() > deadline {
            let have: Vec<usize> = nodes
                .iter()
                .map(|r| r.overlay.sync_status().bump_peers)
                .collect();
            panic!("graph did not connect: want {want:?}, have {have:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Bench { _dirs: dirs, nodes }
}

/// Random packets with the proof of work a regtest node asks (solved before the clock starts).
fn packets(n: usize) -> Vec<Packet> {
    solved_packets(n, 3600, |i| Tag([(i % 97) as u8; 20]))
}

/// `n` random packets with a `ttl`, tagged by `tag(i)`, solved at the regtest base.
fn solved_packets(n: usize, ttl: u32, tag: impl Fn(usize) -> Tag) -> Vec<Packet> {
    let mut rng = rand::thread_rng();
    let exp = bump::unix_now() + ttl;
    let mut v: Vec<Packet> = (0..n)
        .map(|i| {
            let mut body = Box::new([0u8; BODY_LEN]);
            rng.fill_bytes(&mut body[..]);
            Packet {
                tag: tag(i),
                expires: exp,
                nonce: 0,
                body,
            }
        })
        .collect();
    let work =
        bump::pow::required_work(bump::pow::REGTEST_BASE_WORK, ttl + bump::packet::CLOCK_SKEW);
    bump::pow::solve_all(&mut v, work);
    v
}

async fn wait_count(r: &Running, n: u64, secs: u64) -> Duration {
    let t = Instant::now();
    let mut last_log = Instant::now();
    while r.node.store().len() < n {
        if last_log.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  ... {} of {n} after {:.0} s: {:?}",
                r.node.store().len(),
                t.elapsed().as_secs_f64(),
                r.overlay.sync_status()
            );
            last_log = Instant::now();
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out: {} of {n}",
            r.node.store().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.elapsed()
}

/// Raw TCP: push `bytes` through `hops` loopback connections (each hop reads and forwards).
async fn raw_relay(bytes: usize, hops: usize) -> Duration {
    let mut listeners = Vec::new();
    for _ in 0..hops {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut tasks = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let next = addrs.get(i + 1).copied();
        tasks.push(tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut out = match next {
                Some(a) => Some(tokio::net::TcpStream::connect(a).await.unwrap()),
                None => None,
            };
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            while total < bytes {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                if let Some(o) = out.as_mut() {
                    o.write_all(&buf[..n]).await.unwrap();
                }
            }
            total
        }));
    }
    let t = Instant::now();
    let mut first = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
    let chunk = vec![7u8; 1024];
    for _ in 0..bytes / 1024 {
        first.write_all(&chunk).await.unwrap();
    }
    first.flush().await.unwrap();
    let last = tasks.pop().unwrap().await.unwrap();
    assert_eq!(last, bytes);
    t.elapsed()
}

async fn relay_throughput(n: usize) {
    relay_line(n, true).await;
}

/// Packets/s stored at the far end of a 3-node line, with or without the work check.
async fn relay_line(n: usize, verify_work: bool) -> f64 {
    let limits = Limits {
        verify_work,
        ..Limits::default()
    };
    let b = graph_with(3, &[vec![], vec![0], vec![1]], limits, u64::MAX).await;
    let all = packets(n);
    let t = Instant::now();
    let now = bump::unix_now();
    for chunk in all.chunks(1000) {
        b.nodes[0].node.admit(chunk.to_vec(), now).await.unwrap();
    }
    let admitted = t.elapsed();
    wait_count(&b.nodes[2], n as u64, 600).await;
    let total = t.elapsed();
    let raw = raw_relay(n * 1024, 3).await;
    println!(
        "relay, 3-node line, {n} packets, work check {}: {:>8.0} packets/s stored at the far end ({:.2} s; origin stored them in {:.2} s)   raw TCP relay of the same bytes: {:>9.0} packets/s ({:.3} s)",
        if verify_work { "on" } else { "off" },
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        admitted.as_secs_f64(),
        n as f64 / raw.as_secs_f64(),
        raw.as_secs_f64()
    );
    for r in b.nodes {
        r.finish().await.unwrap();
    }
    n as f64 / total.as_secs_f64()
}

async fn flood_latency(n: usize, sends: usize) {
    let mut rng = rand::thread_rng();
    // Each node dials 4 distinct earlier nodes (or all of them): average degree ≈ 8.
    let edges: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let mut prev: Vec<usize> = (0..i).collect();
            prev.shuffle(&mut rng);
            prev.truncate(4);
            prev
        })
        .collect();
    let b = graph(n, &edges).await;
    let arrivals: Arc<Mutex<HashMap<PacketId, (usize, Instant)>>> =
        Arc::new(Mutex::new(HashMap::new()));
    for r in &b.nodes {
        let mut rx = r.node.subscribe();
        let arr = arrivals.clone();
        tokio::spawn(async move {
            while let Ok(batch) = rx.recv().await {
                let now = Instant::now();
                let mut a = arr.lock().unwrap();
                for ev in batch.iter() {
                    let e = a.entry(ev.id).or_insert((0, now));
                    e.0 += 1;
                    e.1 = now;
                }
            }
        });
    }
    let mut lat = Vec::new();
    for p in packets(sends) {
        let origin = rng.gen_range(0..n);
        let id = p.id();
        let t0 = Instant::now();
        b.nodes[origin]
            .node
            .admit(vec![p], bump::unix_now())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((count, last)) = arrivals.lock().unwrap().get(&id).copied() {
                if count == n {
                    lat.push(last.duration_since(t0));
                    break;
                }
            }
            if Instant::now() > deadline {
                let has: Vec<bool> = b
                    .nodes
                    .iter()
                    .map(|r| r.node.store().contains(&id).unwrap())
                    .collect();
                let st: Vec<_> = b.nodes.iter().map(|r| r.overlay.sync_status()).collect();
                panic!("packet from {origin} did not reach all {n} nodes: {has:?}\nedges {edges:?}\n{st:?}");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat.sort();
    let pct = |q: f64| {
        lat[((lat.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    // Baseline: one loopback TCP round trip of a 1 KiB message, times the graph's diameter
    // is what pure transport would cost; report the single hop.
    let hop = raw_relay(1024, 1).await;
    println!(
        "flood latency, N={n}, degree≈8, {sends} packets: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms   raw 1 KiB over one loopback hop: {:.3} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        hop.as_secs_f64() * 1e3
    );
    for r in b.nodes {
        r.finish().await.unwrap();
    }
}

/// Tells a `perf record --control fifo:CTL -D -1` run to start or stop sampling, when
/// `BUMP_BENCH_PERF_CTL` names its control fifo: a profile of the measured window only.
fn perf_ctl(cmd: &str) {
    if let Some(path) = std::env::var_os("BUMP_BENCH_PERF_CTL") {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            use std::io::Write;
            let _ = writeln!(f, "{cmd}");
        }
    }
}

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / tick
}

/// Write `bytes` to a new file in 256 KiB writes and sync it once, as a store appending the
/// same bytes would at the least; the file is deleted after.
fn raw_file_write(bytes: usize) -> Duration {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let t = Instant::now();
    let mut f = std::fs::File::create(dir.path().join("raw")).unwrap();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len());
        f.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    f.sync_data().unwrap();
    t.elapsed()
}

async fn catch_up(n: usize) {
    let d0 = tempfile::tempdir().unwrap();
    let a = node(d0.path(), vec![]).await;
    let all = packets(n);
    let now = bump::unix_now();
    for chunk in all.chunks(1000) {
        a.node.admit(chunk.to_vec(), now).await.unwrap();
    }
    // The machine's speed moves by half from one second to the next (both figures do): the
    // catch-up is run `rounds` times, each by a new empty node, alternated with raw transfers
    // of the same bytes, and the medians are compared.
    let rounds: usize = std::env::var("BUMP_BENCH_CATCHUP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut transfers = Vec::new();
    let mut raws = Vec::new();
    let mut writes = Vec::new();
    let mut d1 = None;
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let b = node(dir.path(), vec![p2p_addr(&a)]).await;
        let started = t.elapsed();
        // Phases: the node's start (opening its store), the handshake, then the transfer from
        // the first packet asked for (reconciliation included) to the last one stored.
        let mut connected = None;
        let mut first = None;
        let mut cpu_at_connect = 0.0;
        let mut last_log = Instant::now();
        while b.node.store().len() < n as u64 {
            let st = b.overlay.sync_status();
            if connected.is_none() && st.bump_peers >= 1 {
                connected = Some(t.elapsed());
                cpu_at_connect = cpu_secs();
                perf_ctl("enable");
            }
            if first.is_none() && (st.requested > 0 || st.received > 0) {
                first = Some(t.elapsed());
            }
            if last_log.elapsed() > Duration::from_secs(5) {
                eprintln!("  ... {} of {n}: {st:?}", b.node.store().len());
                last_log = Instant::now();
            }
            assert!(t.elapsed() < Duration::from_secs(900), "catch-up timed out");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let took = t.elapsed();
        perf_ctl("disable");
        let cpu = cpu_secs() - cpu_at_connect;
        let connected = connected.unwrap_or(took);
        let transfer = took - connected;
        let st = b.overlay.sync_status();
        b.finish().await.unwrap();
        let raw = raw_relay(n * 1024, 1).await;
        let write = raw_file_write(n * 1024);
        println!(
            "  catch-up round {}: {:.3} s from connected to all stored ({:.0} packets/s; first ask {:.3} s after connected; {:.2} CPU s, both nodes; node start {:.3} s, handshake {:.3} s; reconciliation: {} steps, {} bytes out, {} in)   raw TCP transfer after it: {:.3} s; writing the same bytes to a new file: {:.3} s",
            round + 1,
            transfer.as_secs_f64(),
            n as f64 / transfer.as_secs_f64(),
            first.unwrap_or(took).saturating_sub(connected).as_secs_f64(),
            cpu,
            started.as_secs_f64(),
            connected.saturating_sub(started).as_secs_f64(),
            st.recon_steps,
            st.recon_bytes_out,
            st.recon_bytes_in,
            raw.as_secs_f64(),
            write.as_secs_f64(),
        );
        transfers.push(transfer);
        raws.push(raw);
        writes.push(write);
        d1 = Some(dir);
    }
    transfers.sort();
    raws.sort();
    writes.sort();
    let (transfer, raw, write) = (transfers[rounds / 2], raws[rounds / 2], writes[rounds / 2]);
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    };
    println!(
        "catch-up of {n} missed packets: {:.3} s (median of {rounds}: {:?})   raw TCP transfer of the same bytes: {:.3} s (median of {rounds}: {:?})   ratio {:.2}x   (writing the bytes to a new file, which catch-up must also do: {:.3} s, median of {:?}; catch-up / (raw + write) {:.2}x)",
        transfer.as_secs_f64(),
        ms(&transfers),
        raw.as_secs_f64(),
        ms(&raws),
        transfer.as_secs_f64() / raw.as_secs_f64(),
        write.as_secs_f64(),
        ms(&writes),
        transfer.as_secs_f64() / (raw + write).as_secs_f64(),
    );
    let d1 = d1.unwrap();
    // Reconnect with identical stores (the last round's node, now holding everything); then
    // with 1 % missed.
    for missed in [0usize, n / 100] {
        let extra = packets(missed);
        for chunk in extra.chunks(1000) {
            a.node
                .admit(chunk.to_vec(), bump::unix_now())
                .await
                .unwrap();
        }
        let t = Instant::now();
        let b = node(d1.path(), vec![p2p_addr(&a)]).await;
        let want = a.node.store().len();
        wait_count(&b, want, 600).await;
        // Let the session finish (steps answer within milliseconds).
        let mut last = (0, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let s = b.overlay.sync_status();
            let now = (s.recon_bytes_out, s.recon_bytes_in);
            if now == last && now.0 > 0 {
                break;
            }
            last = now;
        }
        let took = t.elapsed();
        let inv_bytes = want as usize * 36;
        println!(
            "reconnect, {want} packets each side, {missed} missed: reconciliation {} bytes out + {} in, settled in {:.2} s   baseline (version-2 inventory exchange, each way): {} bytes",
            last.0,
            last.1,
            took.as_secs_f64(),
            inv_bytes
        );
        b.finish().await.unwrap();
    }
    a.finish().await.unwrap();
}

/// Relay with the proof-of-work check on and off, alternated, same sizes.
async fn relay_pow_on_off(n: usize) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..2 {
        on.push(relay_line(n, true).await);
        off.push(relay_line(n, false).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "relay with the work check: {:.0} packets/s (runs {:?})   without: {:.0} packets/s (runs {:?})   ratio {:.3}",
        mean(&on),
        on.iter().map(|x| x.round()).collect::<Vec<_>>(),
        mean(&off),
        off.iter().map(|x| x.round()).collect::<Vec<_>>(),
        mean(&on) / mean(&off)
    );
}

type Policy = fn(&namecoin::wire::Command) -> Option<usize>;

/// An attacker peer: BuMP handshake, then announces `packets` at `rate` per second in inv
/// batches and serves whatever is asked for. Returns (packets served, floors told).
async fn attacker(to: String, packets: Vec<Packet>, rate: f64) -> (usize, Vec<u64>) {
    use bump::p2p::message::{Message, BUMP_PROTOCOL_VERSION, FEATURE_ID};
    use futures::{SinkExt, StreamExt};
    use namecoin::wire::{Frame, MessageCodec};
    use tokio_util::codec::{FramedRead, FramedWrite};
    let stream = tokio::net::TcpStream::connect(&to).await.unwrap();
    let (rd, wr) = stream.into_split();
    let magic = Network::Regtest.magic();
    let mut rd = FramedRead::new(
        rd,
        MessageCodec::new(magic, bump::p2p::message::max_payload as Policy),
    );
    let wr = Arc::new(tokio::sync::Mutex::new(FramedWrite::new(
        wr,
        MessageCodec::new(magic, bump::p2p::message::max_payload as Policy),
    )));
    let v = bump::p2p::handshake::VersionTemplate::new(None).message(to.parse().unwrap(), 7);
    for m in [
        Message::Version(v),
        Message::Feature {
            id: FEATURE_ID.into(),
            data: vec![BUMP_PROTOCOL_VERSION],
        },
        Message::Verack,
    ] {
        wr.lock().await.send(m.encode()).await.unwrap();
    }
    let have: HashMap<PacketId, Packet> = packets.iter().map(|p| (p.id(), p.clone())).collect();
    let ids: Vec<PacketId> = packets.iter().map(|p| p.id()).collect();
    let announcer = {
        let wr = wr.clone();
        tokio::spawn(async move {
            let batch = 500usize;
            let every = Duration::from_secs_f64(batch as f64 / rate);
            let mut tick = tokio::time::interval(every);
            for chunk in ids.chunks(batch) {
                tick.tick().await;
                let m = Message::Inv {
                    ids: chunk.to_vec(),
                    other: 0,
                };
                if wr.lock().await.send(m.encode()).await.is_err() {
                    return;
                }
            }
        })
    };
    let (mut served, mut floors) = (0usize, Vec::new());
    let quiet = Duration::from_secs(3);
    loop {
        let f = match tokio::time::timeout(quiet, rd.next()).await {
            Ok(Some(Ok(f))) => f,
            _ if !announcer.is_finished() => continue,
            _ => break,
        };
        let Frame::Message {
            command, payload, ..
        } = f
        else {
            continue;
        };
        match Message::decode(command, &payload) {
            Ok(Message::GetData { ids, .. }) => {
                let mut w = wr.lock().await;
                for id in ids {
                    if let Some(p) = have.get(&id) {
                        served += 1;
                        let _ = w.feed(Message::Bump(Box::new(p.clone())).encode()).await;
                    }
                }
                let _ = w.flush().await;
            }
            Ok(Message::Floor(f)) => floors.push(f),
            Ok(Message::Ping(n)) => {
                let _ = wr.lock().await.send(Message::Pong(n).encode()).await;
            }
            _ => {}
        }
    }
    (served, floors)
}

/// Packets at the regtest base under the attacker's tag, 6 h TTL.
fn flood_packets(n: usize) -> Vec<Packet> {
    solved_packets(n, 6 * 3600, |_| Tag([0xf1; 20]))
}

/// Honest one-packet messages, alternating between the two nodes every `gap`; each one's
/// latency until the other node stored it (None: not within 30 s).
async fn honest_traffic(b: &Bench, count: usize, gap: Duration) -> Vec<Option<Duration>> {
    let mut rxs: Vec<_> = b.nodes.iter().map(|r| r.node.subscribe()).collect();
    let arrivals: Arc<Mutex<HashMap<bump::tag::Tag, Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for (i, mut rx) in rxs.drain(..).enumerate() {
        let arr = arrivals.clone();
        watchers.push(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        // Tags of honest messages start with 0xa0 + the node that must see it.
                        for ev in batch
                            .iter()
                            .filter(|ev| ev.packet.tag.0[0] == 0xa0 + i as u8)
                        {
                            arr.lock().unwrap().insert(ev.packet.tag, Instant::now());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        }));
    }
    let mut sent = Vec::new();
    for k in 0..count {
        let from = k % 2;
        let to = 1 - from;
        let mut tag = [0u8; 20];
        tag[0] = 0xa0 + to as u8;
        tag[1..9].copy_from_slice(&(k as u64).to_be_bytes());
        rand::thread_rng().fill_bytes(&mut tag[9..]);
        let t0 = Instant::now();
        b.nodes[from]
            .node
            .send_message(Tag(tag), b"honest", Some(3600), bump::unix_now())
            .await
            .expect("an honest send is never refused");
        sent.push((Tag(tag), t0));
        tokio::time::sleep(gap).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let a = arrivals.lock().unwrap();
            sent.iter().all(|(t, _)| a.contains_key(t))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in watchers {
        w.abort();
    }
    let a = arrivals.lock().unwrap();
    sent.iter()
        .map(|(t, t0)| a.get(t).map(|at| at.duration_since(*t0)))
        .collect()
}

fn summary(lat: &[Option<Duration>]) -> String {
    let mut got: Vec<Duration> = lat.iter().flatten().copied().collect();
    got.sort();
    if got.is_empty() {
        return format!("delivered 0/{}", lat.len());
    }
    let pct = |q: f64| {
        got[((got.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(got.len() - 1)]
    };
    format!(
        "delivered {}/{} ({:.0} %), latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        got.len(),
        lat.len(),
        100.0 * got.len() as f64 / lat.len() as f64,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        got.last().unwrap().as_secs_f64() * 1e3
    )
}

/// Issue #12's flood experiment: two nodes with a quota of `quota`; honest messages both ways
/// without a flood (baseline), then while an attacker peer floods node 0 with 10 × quota
/// minimum-work packets at `rate` per second.
async fn flood_experiment(quota: u64, rate: f64, honest: usize) {
    let b = graph_with(2, &[vec![], vec![0]], Limits::default(), quota).await;
    let gap = Duration::from_millis(50);
    let quiet = honest_traffic(&b, honest, gap).await;
    let flood = flood_packets(quota as usize * 10);
    let offered = flood.len();
    let t = Instant::now();
    let atk = tokio::spawn(attacker(p2p_addr(&b.nodes[0]), flood, rate));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attacked = honest_traffic(&b, honest, gap).await;
    let (served, floors) = atk.await.unwrap();
    let took = t.elapsed();
    let now = bump::unix_now();
    let lens: Vec<u64> = b.nodes.iter().map(|r| r.node.store().len()).collect();
    let floor = b.nodes[0].node.store().floor(now);
    println!(
        "flood, quota {quota}, attacker offered {offered} minimum-work packets at {rate:.0}/s for {:.1} s, fetched {served}; stores {lens:?} (never above {quota}); floor told rose {} -> {} (now {floor})\n  honest 1-packet messages without the flood: {}\n  honest 1-packet messages during the flood:  {}",
        took.as_secs_f64(),
        floors.first().copied().unwrap_or(0),
        floors.iter().max().copied().unwrap_or(0),
        summary(&quiet),
        summary(&attacked),
    );
    assert!(lens.iter().all(|l| *l <= quota));
    for r in b.nodes {
        r.finish().await.unwrap();
    }
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if std::env::var_os("BUMP_BENCH_ONLY_CATCHUP").is_some() {
            return catch_up(if full { 100_000 } else { 2_000 }).await;
        }
        if std::env::var_os("BUMP_BENCH_ONLY_RELAY").is_some() {
            return relay_throughput(if full { 100_000 } else { 2_000 }).await;
        }
        if std::env::var_os("BUMP_BENCH_ONLY_ADMISSION").is_some() {
            relay_pow_on_off(if full { 50_000 } else { 2_000 }).await;
            return flood_experiment(if full { 5_000 } else { 500 }, 10_000.0, 60).await;
        }
        relay_throughput(if full { 100_000 } else { 2_000 }).await;
        flood_latency(20, if full { 200 } else { 20 }).await;
        if full {
            flood_latency(50, 200).await;
        }
        catch_up(if full { 100_000 } else { 2_000 }).await;
        relay_pow_on_off(if full { 50_000 } else { 2_000 }).await;
        flood_experiment(if full { 5_000 } else { 500 }, 10_000.0, 60).await;
    });
}
