//! Hostile peers and big inputs (issue #11): each test is an attack or a heavy use that broke
//! the node once, run against the real binary on loopback. Every wait is bounded.

mod common;

use bump::p2p::message::{Message, MAX_INV};
use bump::packet::{Packet, PacketId, BODY_LEN};
use bump::tag::Tag;
use common::raw::*;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn listen() -> Vec<&'static str> {
    vec!["--listen", "127.0.0.1:0"]
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn pid(n: &TestNode) -> u32 {
    n.child.as_ref().unwrap().id()
}

fn fake_ids(batch: u32) -> Vec<PacketId> {
    (0..MAX_INV as u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&batch.to_be_bytes());
            b[4..8].copy_from_slice(&i.to_be_bytes());
            b[31] = 0xee;
            PacketId(b)
        })
        .collect()
}

#[test]
fn an_inv_flood_from_a_peer_that_never_reads_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    let mut p = RawPeer::connect(&node.p2p(), [127, 0, 0, 21]).unwrap();
    p.handshake().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid(&node));
    // 120 invs of 50,000 ids it never serves, never reading a byte the node sends.
    for batch in 0..120 {
        let m = Message::Inv {
            ids: fake_ids(batch),
            other: 0,
        };
        if p.send(&m).is_err() {
            break;
        }
    }
    // Let the node digest it all: it asks for some ids, or (on a slow machine, where the
    // flood itself takes longer than the stall timeout) has already dropped the peer.
    assert!(wait_for(30, || {
        let s = node.status();
        s["p2p"]["requested"].as_u64().unwrap_or(0) > 0 || node.peers().is_empty()
    }));
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid(&node));
    let grew_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS before {before} KiB, after {after} KiB (+{grew_mib} MiB)");
    assert!(
        grew_mib < 64,
        "node grew by {grew_mib} MiB on 6M fake announcements"
    );
    let s = node.status();
    let outstanding = s["p2p"]["requested"].as_u64().unwrap();
    assert!(
        outstanding
            <= (bump::p2p::fetch::MAX_BACKLOG_PER_PEER + bump::p2p::fetch::MAX_INFLIGHT_PER_PEER)
                as u64,
        "outstanding {outstanding}"
    );
    // A peer that announces and never serves is dropped (stalling: 60 s without an answer).
    let t = Instant::now();
    assert!(
        wait_for(90, || node.peers().is_empty()),
        "the announcer that never serves is still connected: {:?}",
        node.peers()
    );
    eprintln!(
        "non-serving announcer dropped after {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn a_slow_peer_is_dropped_and_its_socket_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    // 3000 packets for the slow peer to ask for.
    let data = random_bytes(3000 * bump::message::PART_DATA_LEN);
    node.ok(&["send", "#bulk", "-"], Some(&data[..1_000_000]));
    node.ok(&["send", "#bulk2", "-"], Some(&data[1_000_000..2_000_000]));
    node.ok(&["send", "#bulk3", "-"], Some(&data[2_000_000..]));
    let ids: Vec<PacketId> = ["#bulk", "#bulk2", "#bulk3"]
        .iter()
        .flat_map(|t| {
            let out = node.ok(&["get", "--json", t], None);
            String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|l| {
                    let j: bump::packet::PacketJson = serde_json::from_str(l).unwrap();
                    Packet::from_json(&j).unwrap().id()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(ids.len() >= 3000);
    let mut p = RawPeer::connect_slow(&node.p2p(), [127, 0, 0, 22]).unwrap();
    p.handshake().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Ask for everything, then read nothing: the node's writes back up.
    p.send(&Message::GetData { ids, other: 0 }).unwrap();
    let t = Instant::now();
    assert!(
        wait_for(60, || node.peers().is_empty()),
        "a peer that does not read is still listed: {:?}",
        node.peers()
    );
    eprintln!("slow peer dropped after {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        p.closed_within(10),
        "the node dropped the peer but kept its socket open"
    );
}

#[test]
fn one_ip_cannot_take_the_inbound_slots() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--max-inbound", "12"],
    );
    let target = node.p2p();
    // 40 sockets from one address that never say a word.
    let squatters: Vec<RawPeer> = (0..40)
        .filter_map(|_| RawPeer::connect(&target, [127, 0, 0, 30]).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let open = squatters
        .into_iter()
        .filter_map(|mut s| (!s.closed_within(1)).then_some(s))
        .collect::<Vec<_>>();
    assert!(
        open.len() <= 8,
        "{} sockets from one IP kept a slot (cap 8)",
        open.len()
    );
    // Fill the rest of the slots with coin-only peers from other addresses of one /24 ...
    let mut coin: Vec<RawPeer> = Vec::new();
    for i in 0..4u8 {
        let mut c = RawPeer::connect(&target, [127, 0, 0, 40 + i]).unwrap();
        c.coin_handshake().unwrap();
        coin.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    // ... and a real BuMP node still gets in: a squatter or a coin-only peer is evicted.
    let dir2 = tempfile::tempdir().unwrap();
    let real = TestNode::start(dir2.path(), &["--connect", &target]);
    assert!(
        wait_for(15, || real.status()["p2p"]["bump_peers"] == 1),
        "a real peer was locked out of full inbound slots"
    );
    drop(open);
}

#[test]
fn a_ping_flood_is_penalised_until_banned() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    let target = node.p2p();
    let mut p = RawPeer::connect(&target, [127, 0, 0, 50]).unwrap();
    p.handshake().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..500u64 {
        if p.send(&Message::Ping(i)).is_err() {
            break;
        }
    }
    assert!(p.closed_within(10), "a ping flood must end the connection");
    let mut again = RawPeer::connect(&target, [127, 0, 0, 50]).unwrap();
    assert!(
        again.closed_within(5),
        "the ping flooder must be banned, not merely dropped as slow"
    );
}

#[test]
fn addr_over_the_cap_costs_the_full_score() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    let target = node.p2p();
    let mut p = RawPeer::connect(&target, [127, 0, 0, 51]).unwrap();
    p.handshake().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let a = bitcoin::p2p::Address::new(
        &"127.0.0.9:1".parse().unwrap(),
        bitcoin::p2p::ServiceFlags::NONE,
    );
    p.send(&Message::Addr(vec![(0, a); 1001])).unwrap();
    assert!(
        p.closed_within(10),
        "docs §5.6: addr over 1000 entries = 100 points"
    );
    assert!(RawPeer::connect(&target, [127, 0, 0, 51])
        .unwrap()
        .closed_within(5));
}

fn packet(fill: u8, expires: u32) -> Packet {
    solved(Packet {
        tag: Tag([fill; 20]),
        expires,
        nonce: 0,
        body: Box::new([fill; BODY_LEN]),
    })
}

#[test]
fn after_notfound_the_other_announcer_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    let target = node.p2p();
    let pkt = packet(7, bump::unix_now() + 3600);
    let id = pkt.id();
    let mut a = RawPeer::connect(&target, [127, 0, 0, 60]).unwrap();
    let mut b = RawPeer::connect(&target, [127, 0, 0, 61]).unwrap();
    a.handshake().unwrap();
    b.handshake().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let inv = Message::Inv {
        ids: vec![id],
        other: 0,
    };
    a.send(&inv).unwrap();
    let asked = |m: &Message| matches!(m, Message::GetData { ids, .. } if ids.contains(&id));
    assert!(a.wait_for_msg(10, asked).is_some(), "A was not asked");
    b.send(&inv).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    a.send(&Message::NotFound {
        ids: vec![id],
        other: 0,
    })
    .unwrap();
    assert!(
        b.wait_for_msg(10, asked).is_some(),
        "after A's notfound, B (who announced it too) was never asked"
    );
    b.send(&Message::Bump(Box::new(pkt))).unwrap();
    assert!(wait_for(10, || node.packet_count() == 1));
}

#[test]
fn expired_packets_are_never_shown_served_or_announced() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &listen());
    let pkt = packet(8, bump::unix_now() + 2);
    let line = serde_json::to_string(&pkt.to_json()).unwrap();
    node.ok(&["import", "-"], Some(line.as_bytes()));
    assert_eq!(
        node.ok(&["get", "--json", &Tag([8; 20]).to_hex()], None)
            .len(),
        line.len() + 1
    );
    std::thread::sleep(Duration::from_secs(3));
    // Still in the store (the sweeper runs every minute) but expired.
    assert_eq!(node.packet_count(), 1);
    assert!(node
        .ok(&["get", "--json", &Tag([8; 20]).to_hex()], None)
        .is_empty());
    assert!(node
        .ok(&["export", &Tag([8; 20]).to_hex()], None)
        .is_empty());
    let mut p = RawPeer::connect(&node.p2p(), [127, 0, 0, 62]).unwrap();
    p.handshake().unwrap();
    // A new peer's catch-up does not announce it; asked for it, the node says notfound.
    let announced = p.wait_for_msg(
        2,
        |m| matches!(m, Message::Inv { ids, .. } if ids.contains(&pkt.id())),
    );
    assert!(announced.is_none(), "an expired packet was announced");
    p.send(&Message::GetData {
        ids: vec![pkt.id()],
        other: 0,
    })
    .unwrap();
    let reply = p.wait_for_msg(10, |m| {
        matches!(m, Message::Bump(_) | Message::NotFound { .. })
    });
    assert!(
        matches!(reply, Some(Message::NotFound { .. })),
        "an expired packet was served: {reply:?}"
    );
}

#[test]
fn a_tag_of_eleven_mebibytes_reads_exports_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let mut all = Vec::new();
    for _ in 0..11 {
        let m = random_bytes(1 << 20);
        node.ok(&["send", "#big", "-"], Some(&m));
        all.extend(m);
    }
    let got = node.ok(&["get", "#big"], None);
    assert_eq!(got.len(), all.len());
    assert!(got == all, "11 MiB read back differ");
    let export = dir.path().join("big.jsonl");
    node.ok(&["export", "#big", "-o", export.to_str().unwrap()], None);
    let lines = std::fs::read_to_string(&export).unwrap().lines().count();
    let per = (1usize << 20).div_ceil(bump::message::PART_DATA_LEN);
    assert_eq!(lines, 11 * per, "every packet exported");
    let dir2 = tempfile::tempdir().unwrap();
    let other = TestNode::start(dir2.path(), &[]);
    let out = String::from_utf8(other.ok(&["import", export.to_str().unwrap()], None)).unwrap();
    assert!(out.contains(&format!("imported {}", 11 * per)), "{out}");
    assert!(other.ok(&["get", "#big"], None) == all);
    // The one-shot method refuses clearly instead of failing in the transport.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"bump_getpackets","params":["{}"]}}"#,
        Tag::from_human("#big").to_hex()
    );
    let (_, resp) = http_post(
        node.addr,
        Some(&cookie_auth(&node.datadir)),
        body.as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["error"]["code"], bump::rpc::api::codes::TOO_BIG, "{v}");
}

/// Run a command with its address space capped at `limit` bytes.
fn cli_capped(datadir: &std::path::Path, args: &[&str], limit: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&*BIN);
    cmd.args(["--datadir", datadir.to_str().unwrap(), "--regtest"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn send_of_an_endless_input_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(dir.path(), &[]);
    let t = Instant::now();
    let out = cli_capped(dir.path(), &["send", "#zero", "/dev/zero"], 1 << 30);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("over the node's message limit"),
        "not a clear refusal: {err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_closed_pipe_ends_client_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(dir.path(), &[]);
    for cmd in ["status", "tag", "mix", "peers"] {
        let mut args = vec!["--datadir", dir.path().to_str().unwrap(), "--regtest", cmd];
        if cmd == "tag" {
            args.push("#x");
        }
        // The read end is closed before the child starts (closing it after spawn raced with
        // a fast `bump tag` that had already written and exited 0).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = Command::new(&*BIN)
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "bump {cmd}: {err}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(141),
            "bump {cmd} ended with {:?}",
            out.status
        );
    }
}

#[test]
fn a_silent_listener_in_rpc_addr_times_out_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let net = netdir(dir.path());
    std::fs::create_dir_all(&net).unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        net.join("rpc.addr"),
        silent.local_addr().unwrap().to_string(),
    )
    .unwrap();
    std::fs::write(net.join(".cookie"), "__cookie__:x").unwrap();
    let t = Instant::now();
    let out = cli(dir.path(), &["--rpc-timeout", "2", "status"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no answer from the node"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn rpc_refuses_unknown_fields_and_unknown_tau_levels() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let auth = cookie_auth(&node.datadir);
    let call = |params: &str| {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"bump_send","params":[{params}]}}"#);
        let (_, resp) = http_post(node.addr, Some(&auth), body.as_bytes());
        serde_json::from_slice::<serde_json::Value>(&resp).unwrap()
    };
    let v = call(r##"{"tag":"#t","data":"aGk=","bogus":1}"##);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let v = call(r##"{"tag":"#t","data":"aGk=","tau":"medium"}"##);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("standard"),
        "{v}"
    );
    let v = call(r##"{"tag":"#t","data":"aGk="}"##);
    assert!(v["result"]["msgid"].is_string(), "{v}");
    assert_eq!(node.packet_count(), 1, "only the good send stored");
    // The empty tag stays refused (docs say so).
    let out = cli(dir.path(), &["tag", ""], None);
    assert!(!out.status.success());
}

#[test]
fn a_damaged_segment_is_reported_by_get() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    node.ok(&["send", "#dmg", "-"], Some(&random_bytes(5000)));
    let segs: Vec<_> = std::fs::read_dir(netdir(dir.path()).join("store").join("segments"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    let seg = segs
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in bytes.iter_mut().skip(100).take(50) {
        *b ^= 0xff;
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all(&bytes).unwrap();
    f.sync_all().unwrap();
    let out = node.cli(&["get", "#dmg"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("damaged on disk") && err.contains(".seg"),
        "the reader was not told: {err}"
    );
    let _ = TcpStream::connect(node.addr);
}

#[test]
fn a_packet_without_its_proof_of_work_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), &[]);
    let mut p = Packet {
        tag: Tag([5; 20]),
        expires: bump::unix_now() + 3600,
        nonce: 0,
        body: Box::new([5; BODY_LEN]),
    };
    let need = bump::pow::required_work(bump::pow::REGTEST_BASE_WORK, 3600);
    while bump::pow::meets(&p.id(), need) {
        p.nonce += 1;
    }
    let line = serde_json::to_string(&p.to_json()).unwrap();
    let out = node.cli(&["import", "-"], Some(line.as_bytes()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("requires") && err.contains("work"), "{err}");
    assert_eq!(node.packet_count(), 0);
    // The same packet solved goes in.
    let line = serde_json::to_string(&solved(p).to_json()).unwrap();
    node.ok(&["import", "-"], Some(line.as_bytes()));
    assert_eq!(node.packet_count(), 1);
}
