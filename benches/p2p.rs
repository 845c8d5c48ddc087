//! P2P figures, each beside a baseline measured in the same run:
//!
//! 1. relay throughput on a 3-node line (packets/s stored at the far end) vs. a raw TCP
//!    relay of the same bytes through the same number of hops;
//! 2. flood latency p50/p99 (send → stored at the last node) in random graphs of average
//!    degree 8, N = 20 and 50;
//! 3. catch-up time of a node that missed N packets vs. a raw TCP transfer of those bytes.
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
        limits: Limits::default(),
        store: StoreConfig {
            max_packets: u64::MAX,
            cache_bytes: cache_mb() << 20,
        },
        sweep_interval: Duration::from_secs(3600),
        p2p,
        cover: None,
        own_via: Vec::new(),
        loops: bump::mix::loops::LoopConfig::off(),
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
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Running> = Vec::new();
    for i in 0..n {
        let connect = edges[i].iter().map(|&j| p2p_addr(&nodes[j])).collect();
        nodes.push(node(dirs[i].path(), connect).await);
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
    let mut rng = rand::thread_rng();
    let exp = bump::unix_now() + 3600;
    let mut v: Vec<Packet> = (0..n)
        .map(|i| {
            let mut body = Box::new([0u8; BODY_LEN]);
            rng.fill_bytes(&mut body[..]);
            Packet {
                tag: Tag([(i % 97) as u8; 20]),
                expires: exp,
                nonce: 0,
                body,
            }
        })
        .collect();
    let work = bump::pow::required_work(
        bump::pow::REGTEST_BASE_WORK,
        3600 + bump::packet::CLOCK_SKEW,
    );
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
    let b = graph(3, &[vec![], vec![0], vec![1]]).await;
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
        "relay, 3-node line, {n} packets: {:>8.0} packets/s stored at the far end ({:.2} s; origin stored them in {:.2} s)   raw TCP relay of the same bytes: {:>9.0} packets/s ({:.3} s)",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        admitted.as_secs_f64(),
        n as f64 / raw.as_secs_f64(),
        raw.as_secs_f64()
    );
    for r in b.nodes {
        r.finish().await.unwrap();
    }
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
            while let Ok(ev) = rx.recv().await {
                let now = Instant::now();
                let mut a = arr.lock().unwrap();
                let e = a.entry(ev.id).or_insert((0, now));
                e.0 += 1;
                e.1 = now;
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

async fn catch_up(n: usize) {
    let d0 = tempfile::tempdir().unwrap();
    let d1 = tempfile::tempdir().unwrap();
    let a = node(d0.path(), vec![]).await;
    let all = packets(n);
    let now = bump::unix_now();
    for chunk in all.chunks(1000) {
        a.node.admit(chunk.to_vec(), now).await.unwrap();
    }
    let t = Instant::now();
    let b = node(d1.path(), vec![p2p_addr(&a)]).await;
    wait_count(&b, n as u64, 900).await;
    let took = t.elapsed();
    let raw = raw_relay(n * 1024, 1).await;
    println!(
        "catch-up of {n} missed packets: {:.2} s ({:.0} packets/s)   raw TCP transfer of the same bytes: {:.3} s   ratio {:.1}x",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        raw.as_secs_f64(),
        took.as_secs_f64() / raw.as_secs_f64()
    );
    a.finish().await.unwrap();
    b.finish().await.unwrap();
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
        relay_throughput(if full { 100_000 } else { 2_000 }).await;
        flood_latency(20, if full { 200 } else { 20 }).await;
        if full {
            flood_latency(50, 200).await;
        }
        catch_up(if full { 100_000 } else { 2_000 }).await;
    });
}
