//! Scale figures of issue #13 (a load binary; `cargo bench --bench scale`, 1M packets; without
//! `--bench`, 20,000): one node with N stored packets —
//!
//! 1. RSS of the process with the store open and the node running (baseline: RSS of the same
//!    process before the node started; the store is filled by a child process, so what
//!    filling allocates is not counted), index bytes on disk per packet (everything in the
//!    store folder but the segment files: snapshot, journal, sled);
//! 2. time to open the store and start the node at N;
//! 3. RSS added by 32 silent BuMP peers of version 3 (reconciliation: the node waits for them
//!    to start) beside 32 of version 2 (each is sent the whole inventory), same node, same run.

use bump::daemon::{start, DaemonSettings};
use bump::node::Limits;
use bump::p2p::message::Message;
use bump::p2p::P2pConfig;
use bump::packet::{Packet, BODY_LEN};
use bump::store::{Store, StoreConfig};
use bump::tag::Tag;
use futures::SinkExt;
use namecoin::wire::MessageCodec;
use namecoin::Network;
use rand::RngCore;
use std::time::{Duration, Instant};
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn dir_bytes(p: &std::path::Path, skip: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.file_name().is_some_and(|n| n == skip) {
            continue;
        }
        if path.is_dir() {
            total += dir_bytes(&path, skip);
        } else {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

fn store_cfg() -> StoreConfig {
    StoreConfig {
        max_packets: u64::MAX,
        base_work: bump::pow::REGTEST_BASE_WORK,
        ..StoreConfig::default()
    }
}

/// Fill a store with `n` solved packets (48 tags, expiries spread over 40 hours).
fn fill(path: &std::path::Path, n: usize) -> Duration {
    let store = Store::open(path, &store_cfg()).unwrap();
    let now = bump::unix_now();
    let mut rng = rand::thread_rng();
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(10_000);
        let mut batch: Vec<Packet> = (0..k)
            .map(|i| {
                let mut body = Box::new([0u8; BODY_LEN]);
                rng.fill_bytes(&mut body[..]);
                Packet {
                    tag: Tag([((done + i) % 48) as u8; 20]),
                    expires: now + 3600 * (2 + ((done + i) % 40) as u32),
                    nonce: 0,
                    body,
                }
            })
            .collect();
        let work = bump::pow::required_work(bump::pow::REGTEST_BASE_WORK, 42 * 3600 + 600);
        bump::pow::solve_all(&mut batch, work);
        store.insert_many(&batch, now).unwrap();
        done += k;
    }
    store.flush_blocking().unwrap();
    t.elapsed()
}

async fn silent_peers(
    to: std::net::SocketAddr,
    n: usize,
    version: u8,
) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for i in 0..n {
        let s = tokio::net::TcpStream::connect(to).await.unwrap();
        let mut w = FramedWrite::new(
            s,
            MessageCodec::new(
                Network::Regtest.magic(),
                bump::p2p::message::max_payload as fn(&namecoin::wire::Command) -> Option<usize>,
            ),
        );
        let v = bump::p2p::handshake::VersionTemplate::new(None).message(to, 1000 + i as u64);
        for m in [
            Message::Version(v),
            Message::Feature {
                id: bump::p2p::message::FEATURE_ID.into(),
                data: vec![version],
            },
            Message::Verack,
        ] {
            w.send(m.encode()).await.unwrap();
        }
        // Silent from now on: never read (what the node sends piles up in buffers).
        out.push(w.into_inner());
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The child: fill the store, report the time, exit (its memory goes with it).
    if let Some(i) = args.iter().position(|a| a == "--fill-child") {
        let path = std::path::PathBuf::from(&args[i + 1]);
        let n: usize = args[i + 2].parse().unwrap();
        let took = fill(&path, n);
        println!("{}", took.as_secs_f64());
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let n = if full { 1_000_000 } else { 20_000 };
    let dir = tempfile::tempdir().unwrap();
    let netdir = dir.path().join("regtest");
    let store_path = netdir.join(bump::config::STORE_DIR);
    std::fs::create_dir_all(&store_path).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--fill-child")
        .arg(&store_path)
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let index = dir_bytes(&store_path, "segments");
    println!(
        "filled {n} packets in {took:.1} s (child process); index on disk {:.1} MB = {:.0} bytes per packet (goal <= 256); segments {:.0} MB",
        index as f64 / 1e6,
        index as f64 / n as f64,
        dir_bytes(&store_path.join("segments"), "") as f64 / 1e6
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rss_before_start = rss_mb();
        let t = Instant::now();
        let mut p2p = P2pConfig::new(Network::Regtest);
        p2p.listen = Some("127.0.0.1:0".parse().unwrap());
        p2p.max_outbound = 0;
        p2p.max_inbound = 80;
        p2p.max_inbound_per_ip = 80;
        p2p.max_inbound_per_netgroup = 80;
        let settings = DaemonSettings {
            chain: None,
            network: Network::Regtest,
            netdir: netdir.clone(),
            rpc_bind: "127.0.0.1:0".parse().unwrap(),
            rpc_user_password: None,
            limits: Limits::default(),
            store: store_cfg(),
            sweep_interval: Duration::from_secs(3600),
            p2p,
            cover: None,
            own_via: Vec::new(),
            loops: bump::mix::loops::LoopConfig::off(),
        announce_mix: false,
        default_hops: 0,
        };
        let node = start(settings, CancellationToken::new()).await.unwrap();
        let started = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_node = rss_mb();
        println!(
            "node start with {} packets: {:.2} s (goal <= 2 s)   RSS {:.0} MB (goal <= 150; baseline {:.0} MB: the same process before the start)",
            node.node.store().len(),
            started.as_secs_f64(),
            rss_node,
            rss_before_start
        );
        let addr = node.overlay.listen_addr().unwrap();
        for version in [3u8, 2] {
            let before = rss_mb();
            let peers = silent_peers(addr, 32, version).await;
            tokio::time::sleep(Duration::from_secs(if full { 20 } else { 3 })).await;
            let after = rss_mb();
            println!(
                "32 silent BuMP peers of version {version}: RSS +{:.0} MB ({before:.0} -> {after:.0} MB){}",
                after - before,
                if version == 3 { "   (goal < 64 MB together)" } else { "   (baseline: each is sent the inventory)" }
            );
            drop(peers);
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        node.finish().await.unwrap();
    });
}
