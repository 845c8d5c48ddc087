//! Flooding between real `bump node` processes on loopback: topologies, restarts, partitions,
//! and hostile raw-TCP peers. Every wait is bounded.

mod common;

use bump::p2p::message::Message;
use common::raw::*;
use common::*;
use namecoin::wire::{encode_message, Command};
use namecoin::Network;
use rand::seq::SliceRandom;
use rand::Rng;
use std::io::Read;
use std::net::TcpStream;

use std::time::Duration;

fn listen_args<'a>(extra: &'a [&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--listen", "127.0.0.1:0"];
    v.extend_from_slice(extra);
    v
}

/// Start nodes with `--connect` lists given by `edges[i]` (indices of earlier nodes).
fn start_graph(dirs: &[tempfile::TempDir], edges: &[Vec<usize>]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let targets: Vec<String> = edges[i].iter().map(|&j| nodes[j].p2p()).collect();
        let mut args: Vec<&str> = vec!["--listen", "127.0.0.1:0"];
        for t in &targets {
            args.push("--connect");
            args.push(t);
        }
        if targets.is_empty() {
            // A node with no --connect would dial gossip; keep the topology as given.
            args.extend(["--max-outbound", "0"]);
        }
        nodes.push(TestNode::start(dir.path(), &args));
    }
    nodes
}

#[test]
fn a_packet_sent_at_one_node_reaches_all_ten() {
    let mut rng = rand::thread_rng();
    let n = 10;
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    // A random tree (connected), plus a few random extra edges.
    let mut edges: Vec<Vec<usize>> = vec![vec![]];
    for i in 1..n {
        let mut e = vec![rng.gen_range(0..i)];
        if i > 2 && rng.gen_bool(0.5) {
            let extra = rng.gen_range(0..i);
            if !e.contains(&extra) {
                e.push(extra);
            }
        }
        edges.push(e);
    }
    let nodes = start_graph(&dirs, &edges);
    assert!(
        wait_for(20, || nodes.iter().all(|nd| nd.status()["p2p"]
            ["bump_peers"]
            .as_u64()
            .unwrap_or(0)
            >= 1)),
        "not every node got a BuMP peer"
    );
    let origin = nodes.choose(&mut rng).unwrap();
    let data = random_bytes(30_000);
    origin.ok(&["send", "#flood", "-"], Some(&data));
    for (i, nd) in nodes.iter().enumerate() {
        assert!(
            wait_for(20, || nd.packet_count() == 31),
            "node {i} did not get all 31 packets; edges {edges:?}"
        );
        assert!(
            nd.ok(&["get", "#flood"], None) == data,
            "node {i}: bytes differ"
        );
    }
}

#[test]
fn a_restarted_middle_node_catches_up() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let edges = vec![vec![], vec![0], vec![1], vec![2], vec![3]];
    let mut nodes = start_graph(&dirs, &edges);
    nodes[0].ok(&["send", "#line", "-"], Some(b"before"));
    assert!(
        wait_for(20, || nodes[4].packet_count() == 1),
        "line did not relay"
    );
    // Kill the middle node; its neighbours keep listening on the same ports.
    let middle_p2p_peers = (nodes[1].p2p(), nodes[3].p2p());
    nodes[2].kill9();
    nodes[0].ok(&["send", "#line", "-"], Some(&random_bytes(10_000)));
    nodes[4].ok(&["send", "#line", "-"], Some(&random_bytes(5_000)));
    assert!(wait_for(20, || nodes[1].packet_count() == 12
        && nodes[3].packet_count() == 7));
    // Restart the middle node with the same datadir and neighbours.
    let mid = TestNode::start(
        dirs[2].path(),
        &listen_args(&[
            "--connect",
            &middle_p2p_peers.0,
            "--connect",
            &middle_p2p_peers.1,
        ]),
    );
    nodes[2] = mid;
    assert!(
        wait_for(30, || nodes.iter().all(|n| n.packet_count() == 18)),
        "not all caught up: {:?}",
        nodes.iter().map(|n| n.packet_count()).collect::<Vec<_>>()
    );
    let s = nodes[2].status();
    assert!(
        s["p2p"]["received"].as_u64().unwrap() >= 17,
        "middle node fetched from peers: {s}"
    );
}

#[test]
fn partitioned_halves_merge_after_reconnecting() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    // Two triangles, 0-1-2 and 3-4-5, no edge between them.
    let edges = vec![vec![], vec![0], vec![0, 1], vec![], vec![3], vec![3, 4]];
    let mut nodes = start_graph(&dirs, &edges);
    for i in 0..6 {
        nodes[i].ok(
            &["send", &format!("#side{}", i / 3), "-"],
            Some(&random_bytes(2000 + i * 977)),
        );
    }
    let left: u64 = (0..3)
        .map(|i| bump::message::parts_needed(2000 + i * 977) as u64)
        .sum();
    let right: u64 = (3..6)
        .map(|i| bump::message::parts_needed(2000 + i * 977) as u64)
        .sum();
    assert!(wait_for(20, || (0..3).all(|i| nodes[i].packet_count() == left)));
    assert!(wait_for(20, || (3..6).all(|i| nodes[i].packet_count() == right)));
    // Heal: restart node 0 with a link into the other half.
    let (p1, p4) = (nodes[1].p2p(), nodes[4].p2p());
    nodes[0].terminate();
    nodes[0] = TestNode::start(
        dirs[0].path(),
        &listen_args(&["--connect", &p1, "--connect", &p4]),
    );
    assert!(
        wait_for(30, || nodes
            .iter()
            .all(|n| n.packet_count() == left + right)),
        "counts {:?}",
        nodes.iter().map(|n| n.packet_count()).collect::<Vec<_>>()
    );
    let want = nodes[0].ok(&["export", "#side0"], None);
    let want1 = nodes[0].ok(&["export", "#side1"], None);
    for n in &nodes {
        let mut a = String::from_utf8(n.ok(&["export", "#side0"], None))
            .unwrap()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>();
        let mut b = String::from_utf8(want.clone())
            .unwrap()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>();
        a.sort();
        b.sort();
        assert_eq!(a, b, "stores differ");
        assert_eq!(n.ok(&["export", "#side1"], None).len(), want1.len());
    }
}

// ---- hostile peers -------------------------------------------------------------------

#[test]
fn hostile_peers_are_penalised_and_the_node_keeps_serving() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = TestNode::start(a_dir.path(), &listen_args(&[]));
    let b = TestNode::start(b_dir.path(), &["--connect", &a.p2p()]);
    assert!(wait_for(20, || a.status()["p2p"]["bump_peers"] == 1));
    let target = a.p2p();

    // Wrong magic: disconnected and banned at once.
    let mut p = RawPeer::connect(&target, [127, 0, 0, 101]).unwrap();
    let mut bad = bytes::BytesMut::new();
    encode_message(
        Network::Mainnet.magic(),
        Command::new("version"),
        &[0; 10],
        &mut bad,
    );
    p.raw(&bad).unwrap();
    assert!(p.closed_within(10), "wrong magic must disconnect");
    let mut again = RawPeer::connect(&target, [127, 0, 0, 101]).unwrap();
    assert!(again.closed_within(10), "banned IP must be refused");

    // Oversize length in a header: disconnected before any payload arrives.
    let mut p = RawPeer::connect(&target, [127, 0, 0, 102]).unwrap();
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&MAGIC);
    hdr.extend_from_slice(Command::new("bump").as_bytes());
    hdr.extend_from_slice(&(40u32 << 20).to_le_bytes());
    hdr.extend_from_slice(&[0; 4]);
    p.raw(&hdr).unwrap();
    assert!(p.closed_within(10), "oversize length must disconnect");

    // Wrong checksums, repeated: the score reaches the ban threshold.
    let mut p = RawPeer::connect(&target, [127, 0, 0, 103]).unwrap();
    p.handshake().unwrap();
    let mut b2 = bytes::BytesMut::new();
    encode_message(MAGIC, Command::new("ping"), &[1; 8], &mut b2);
    let n = b2.len();
    b2[n - 9] ^= 0xff;
    for _ in 0..5 {
        p.raw(&b2).unwrap();
    }
    assert!(
        p.closed_within(10),
        "five bad checksums (5 x 20 points) must disconnect"
    );

    // Unrequested bump packets: 10 points each, banned at 100; none is stored.
    let mut p = RawPeer::connect(&target, [127, 0, 0, 104]).unwrap();
    p.handshake().unwrap();
    for i in 0..12u8 {
        if p.send(&Message::Bump(Box::new(good_packet(i)))).is_err() {
            break;
        }
    }
    assert!(
        p.closed_within(10),
        "unrequested packets must lead to a ban"
    );

    // Garbage after a good handshake: random bytes break framing → disconnect.
    let mut p = RawPeer::connect(&target, [127, 0, 0, 105]).unwrap();
    p.handshake().unwrap();
    p.raw(&random_bytes(4096)).unwrap();
    assert!(p.closed_within(10));

    // The node still relays to its good peer and answers RPC.
    assert_eq!(a.packet_count(), 0, "nothing from hostile peers was stored");
    a.ok(&["send", "#still", "-"], Some(b"alive"));
    assert!(wait_for(20, || b.ok(&["get", "#still"], None) == b"alive".to_vec()));
    assert_eq!(a.status()["p2p"]["bump_peers"], 1);
}

#[test]
fn requested_packets_from_a_raw_peer_are_accepted() {
    // The positive case for the raw peer: announce, get asked, deliver, see it stored.
    let a_dir = tempfile::tempdir().unwrap();
    let a = TestNode::start(a_dir.path(), &listen_args(&[]));
    let mut p = RawPeer::connect(&a.p2p(), [127, 0, 0, 110]).unwrap();
    p.handshake().unwrap();
    let pkt = good_packet(9);
    std::thread::sleep(Duration::from_millis(300));
    p.send(&Message::Inv {
        ids: vec![pkt.id()],
        other: 0,
    })
    .unwrap();
    // Read frames until a getdata for our id arrives.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let asked = wait_for(10, || {
        if let Ok(n) = p.s.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.windows(7).any(|w| w == b"getdata")
    });
    assert!(asked, "node did not ask for the announced packet");
    p.send(&Message::Bump(Box::new(pkt))).unwrap();
    assert!(wait_for(10, || a.packet_count() == 1));
    let peers = a.peers();
    assert_eq!(peers[0]["score"], 0, "{peers:?}");
}

#[test]
fn our_version_matches_the_recorded_namecoind_session() {
    // The fixture's outgoing version and feature are the shapes namecoind accepted.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/namecoind/p2p.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let msgs = v["messages"].as_array().unwrap();
    let get = |dir: &str, cmd: &str| {
        let h = msgs
            .iter()
            .find(|m| m["dir"] == dir && m["command"] == cmd)
            .unwrap()["hex"]
            .as_str()
            .unwrap();
        hex::decode(h).unwrap()[24..].to_vec()
    };
    match Message::decode(Command::new("version"), &get("in", "version")).unwrap() {
        Message::Version(v) => {
            assert_eq!(v.version, namecoin::PROTOCOL_VERSION);
            assert!(v.user_agent.starts_with("/Satoshi:"));
        }
        m => panic!("{m:?}"),
    }
    match Message::decode(Command::new("feature"), &get("out", "feature")).unwrap() {
        Message::Feature { id, data } => assert_eq!((id.as_str(), data), ("bump/1", vec![1])),
        m => panic!("{m:?}"),
    }
    // The fixture's inv of type 0x42554d50 is exactly our encoding of a BuMP inv.
    let inv = get("out", "inv");
    let Message::Inv { ids, .. } = Message::decode(Command::new("inv"), &inv).unwrap() else {
        panic!()
    };
    assert_eq!(
        Message::Inv { ids, other: 0 }.encode().payload.to_vec(),
        inv
    );
}

#[test]
fn real_namecoind_interop() {
    let Ok(bin) = std::env::var("NAMECOIND") else {
        println!("skipped: set NAMECOIND to a namecoind binary to run the real-node interop test");
        return;
    };
    let nc_dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let rpcport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut nc = std::process::Command::new(&bin)
        .args([
            "-regtest",
            &format!("-datadir={}", nc_dir.path().display()),
            &format!("-port={port}"),
            &format!("-rpcport={rpcport}"),
            "-bind=127.0.0.1",
            "-listen=1",
            "-dnsseed=0",
            "-fixedseeds=0",
            "-discover=0",
            "-natpmp=0",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start namecoind");
    let nc_addr = format!("127.0.0.1:{port}");
    assert!(
        wait_for(30, || TcpStream::connect(&nc_addr).is_ok()),
        "namecoind did not listen"
    );
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = TestNode::start(a_dir.path(), &listen_args(&["--addnode", &nc_addr]));
    let b = TestNode::start(
        b_dir.path(),
        &["--addnode", &nc_addr, "--connect", &a.p2p()],
    );
    assert!(wait_for(30, || a
        .peers()
        .iter()
        .any(|p| p["bump"] == false && p["handshake_done"] == true)));
    std::thread::sleep(Duration::from_secs(10));
    let coin = a
        .peers()
        .into_iter()
        .find(|p| p["bump"] == false)
        .expect("still connected to namecoind after 10 s");
    assert!(coin["user_agent"].as_str().unwrap().contains("Satoshi"));
    a.ok(&["send", "#nc", "-"], Some(b"through the coin network"));
    assert!(wait_for(20, || b.ok(&["get", "#nc"], None)
        == b"through the coin network".to_vec()));
    let _ = nc.kill();
    let _ = nc.wait();
}

#[test]
fn reconnecting_identical_stores_exchange_a_few_bytes_and_a_version_2_peer_gets_the_inventory() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start(da.path(), &listen_args(&[]));
    for i in 0..5 {
        a.ok(
            &["send", &format!("#recon-{i}"), "-"],
            Some(&random_bytes(4000)),
        );
    }
    let held = a.packet_count();
    let mut b = TestNode::start(db.path(), &["--connect", &a.p2p()]);
    assert!(
        wait_for(20, || b.packet_count() == held),
        "b did not catch up"
    );
    let first = b.status()["p2p"].clone();
    assert!(first["recon_bytes_out"].as_u64().unwrap() > 0, "{first}");
    assert!(b.terminate());
    // Same stores on both sides: the session is one fingerprint and an all-skip answer.
    let b = TestNode::start(db.path(), &["--connect", &a.p2p()]);
    assert!(wait_for(20, || b.status()["p2p"]["bump_peers"] == 1));
    assert!(wait_for(10, || b.status()["p2p"]["recon_bytes_out"]
        .as_u64()
        .unwrap()
        > 0));
    std::thread::sleep(Duration::from_millis(500));
    let p = b.status()["p2p"].clone();
    let bytes = p["recon_bytes_out"].as_u64().unwrap() + p["recon_bytes_in"].as_u64().unwrap();
    assert!(bytes < 200, "{p}");
    assert_eq!(b.packet_count(), held);
    assert_eq!(p["received"], 0, "nothing fetched again: {p}");

    // A peer of BuMP version 2 (no reconciliation) is sent the inventory as before.
    let mut raw = RawPeer::connect(&a.p2p(), [127, 0, 0, 91]).unwrap();
    raw.handshake_version(2).unwrap();
    let mut announced = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while announced < held as usize && std::time::Instant::now() < deadline {
        if let Some(Message::Inv { ids, .. }) = raw.read_msg() {
            announced += ids.len();
        }
    }
    assert_eq!(announced, held as usize);
}
