//! Mixing end to end with real `bump node` processes on loopback: a message routed through three
//! mixes arrives byte-exact, never before the sum of the delays; a tampered or replayed relay
//! packet is dropped at the mix.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn mix_key(n: &TestNode) -> String {
    let v: serde_json::Value = serde_json::from_slice(&n.ok(&["mix", "--json"], None)).unwrap();
    v["public_key"].as_str().unwrap().to_string()
}

fn mix_stats(n: &TestNode) -> serde_json::Value {
    serde_json::from_slice(&n.ok(&["mix", "--json"], None)).unwrap()
}

fn line(dirs: &[tempfile::TempDir]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for d in dirs {
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        match nodes.last() {
            Some(prev) => {
                args.push("--connect".into());
                args.push(prev.p2p());
            }
            None => args.extend(["--max-outbound".into(), "0".into()]),
        }
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        nodes.push(TestNode::start(d.path(), &a));
    }
    assert!(wait_for(20, || nodes.iter().enumerate().all(|(i, n)| {
        let want = if i == 0 || i == nodes.len() - 1 { 1 } else { 2 };
        n.status()["p2p"]["bump_peers"].as_u64().unwrap_or(0) >= want
    })));
    nodes
}

#[test]
fn message_through_three_mixes_arrives_after_its_delays() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = line(&dirs);
    let via = [mix_key(&nodes[1]), mix_key(&nodes[2]), mix_key(&nodes[3])].join(",");
    let data = random_bytes(1500); // three parts of ≤ 685 bytes
    let start = Instant::now();
    nodes[0].ok(
        &[
            "send", "--tau", "none", "--via", &via, "--delay", "2s", "#mixed", "-",
        ],
        Some(&data),
    );
    // Three hops of 2 s each: nothing may arrive in the first 6 s.
    while start.elapsed() < Duration::from_millis(5500) {
        for n in &nodes {
            let o = n.cli(&["get", "#mixed"], None);
            assert!(
                !o.status.success(),
                "message arrived after {:?}, before its delays",
                start.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The sender's own layer (2–10 s) may wait up to three times that for a packet to reach
    // its mix before it leaves without one (protocol.md §6.6), then three hops of 2 s.
    assert!(
        wait_for(60, || nodes
            .iter()
            .all(|n| n.cli(&["get", "#mixed"], None).stdout == data)),
        "message did not arrive everywhere"
    );
    assert!(start.elapsed() >= Duration::from_secs(6));
    for n in &nodes[1..] {
        let s = mix_stats(n);
        assert_eq!(s["released"], 3, "each mix released the three parts: {s}");
        assert_eq!(s["held"], 0);
    }
}

#[test]
fn tampered_and_replayed_relay_packets_die_at_the_mix() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = line(&dirs);
    let key = mix_key(&nodes[1]);
    let mix_tag = mix_stats(&nodes[1])["mix_tag"]
        .as_str()
        .unwrap()
        .to_string();
    nodes[0].ok(
        &["send", "--tau", "none", "--via", &key, "#once", "-"],
        Some(b"exactly once"),
    );
    assert!(wait_for(20, || nodes[0]
        .cli(&["get", "#once"], None)
        .stdout
        == b"exactly once".to_vec()));
    // The relay packet as everybody saw it.
    let relay = String::from_utf8(nodes[0].ok(&["get", "--json", &mix_tag], None)).unwrap();
    let relay = relay.lines().next().unwrap().to_string();

    // Tampering (each re-solved, as an attacker would, so admission lets it through to the
    // mix): 1. a changed outer expiry (the HMAC covers tag and expires).
    let original = bump::packet::Packet::from_json_str(&relay).unwrap();
    let resend = |p: bump::packet::Packet| {
        let line = serde_json::to_string(&common::raw::solved(p).to_json()).unwrap();
        nodes[0].ok(&["import", "-"], Some(line.as_bytes()));
    };
    let mut t1 = original.clone();
    t1.expires -= 3600;
    resend(t1);
    // 2. One flipped body bit.
    let mut t2 = original.clone();
    t2.body[600] ^= 1;
    resend(t2);
    assert!(
        wait_for(20, || mix_stats(&nodes[1])["dropped"]["hmac"] == 2),
        "{}",
        mix_stats(&nodes[1])
    );

    // The identical packet again: stores dedupe it by id, so the mix never sees it twice
    // (the replay cache behind that is tested in mix::role's unit tests).
    nodes[1].ok(&["import", "-"], Some(relay.as_bytes()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mix_stats(&nodes[1])["released"],
        1,
        "delivered exactly once"
    );
    let got = nodes[0].ok(&["get", "--list", "#once"], None);
    assert_eq!(String::from_utf8(got).unwrap().lines().count(), 1);
}

#[test]
fn a_mix_killed_while_holding_delivers_exactly_once_after_restart() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = line(&dirs);
    let key = mix_key(&nodes[1]);
    let sender_p2p = nodes[0].p2p();
    let start = Instant::now();
    nodes[0].ok(
        &[
            "send", "--tau", "none", "--via", &key, "--delay", "4s", "#held", "-",
        ],
        Some(b"survives a crash"),
    );
    assert!(
        // The sender's own layer waits 4 s plus a random part (at most 20 s) first, and up to
        // three times that for a packet to reach its mix (protocol.md §6.6).
        wait_for(75, || mix_stats(&nodes[1])["held"] == 1),
        "mix never held the packet"
    );
    nodes[1].kill9();
    std::thread::sleep(Duration::from_millis(300));
    nodes[1] = TestNode::start(
        dirs[1].path(),
        &["--listen", "127.0.0.1:0", "--connect", &sender_p2p],
    );
    assert_eq!(
        mix_stats(&nodes[1])["held"],
        1,
        "the held packet is still in the pool after kill -9"
    );
    assert!(wait_for(20, || nodes[0]
        .cli(&["get", "#held"], None)
        .stdout
        == b"survives a crash".to_vec()));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "released before its delay"
    );
    std::thread::sleep(Duration::from_millis(1000));
    let list = String::from_utf8(nodes[0].ok(&["get", "--list", "#held"], None)).unwrap();
    assert_eq!(list.lines().count(), 1, "delivered exactly once: {list}");
    assert_eq!(mix_stats(&nodes[1])["held"], 0);
}

#[test]
fn cover_traffic_is_dropped_at_the_mix_and_never_reaches_users() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mix = TestNode::start(
        dirs[0].path(),
        &["--listen", "127.0.0.1:0", "--max-outbound", "0"],
    );
    let key = mix_key(&mix);
    let mix_tag = mix_stats(&mix)["mix_tag"].as_str().unwrap().to_string();
    let sender = TestNode::start(
        dirs[1].path(),
        &[
            "--connect",
            &mix.p2p(),
            "--cover-rate",
            "600",
            "--cover-via",
            &key,
            "--cover-tau",
            "none",
            "--cover-delay",
            "1s",
        ],
    );
    assert!(
        wait_for(20, || mix_stats(&mix)["dummies_dropped"]
            .as_u64()
            .unwrap_or(0)
            >= 5),
        "{}",
        mix_stats(&mix)
    );
    let s = mix_stats(&mix);
    assert_eq!(s["released"], 0, "no dummy was published onwards: {s}");
    // Every packet either node holds is a relay packet addressed to the mix.
    for n in [&mix, &sender] {
        // Total first: cover keeps arriving, and relay packets only grow.
        let total = n.packet_count();
        let relay = String::from_utf8(n.ok(&["get", "--json", &mix_tag], None))
            .unwrap()
            .lines()
            .count() as u64;
        assert!(
            total >= 5 && relay >= total,
            "{total} packets, {relay} of them relay packets"
        );
    }
    // A bad --cover-via is refused at start with one clear line.
    let o = cli(
        dirs[1].path(),
        &["node", "--cover-rate", "1", "--cover-via", "zz"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a mix public key"));
}

#[test]
fn keygen_makes_one_key_that_the_node_then_uses() {
    let dir = tempfile::tempdir().unwrap();
    let first = cli(dir.path(), &["keygen"], None);
    assert!(first.status.success());
    let second = cli(dir.path(), &["keygen"], None);
    assert_eq!(first.stdout, second.stdout, "keygen keeps an existing key");
    let key_file = netdir(dir.path()).join("mixkey");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let printed = String::from_utf8(first.stdout).unwrap();
    let node = TestNode::start(dir.path(), &[]);
    assert!(
        printed.contains(&mix_key(&node)),
        "node uses the keygen key"
    );
}

/// Loop packets: a mix's loops come back while its neighbours mix; when they stop coming back
/// (both other mixes killed, as an (n-1) attacker blocking honest traffic would look) the mix
/// raises its alarm, strangers' packets stop counting toward crowds yet messages still leave
/// (its own packets fill the crowd), and the alarm clears once loops return.
#[test]
fn loops_raise_the_n_minus_1_alarm_when_they_stop_coming_back() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let key_of = |d: &std::path::Path| {
        let out = String::from_utf8(cli(d, &["keygen"], None).stdout).unwrap();
        out.split_whitespace().nth(2).unwrap().to_string()
    };
    let (ka, kb) = (key_of(dirs[1].path()), key_of(dirs[2].path()));
    let via = format!("{ka},{kb}");
    let m = TestNode::start(
        dirs[0].path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-outbound",
            "0",
            "--cover-via",
            &via,
            "--cover-tau",
            "none",
            "--loops",
            "120",
            "--defend-rate",
            "120",
            "--loop-timeout",
            "3s",
        ],
    );
    let spoke = |d: &std::path::Path| TestNode::start(d, &["--connect", &m.p2p()]);
    let mut a = spoke(dirs[1].path());
    let mut b = spoke(dirs[2].path());
    // The stranger's sends start in its own pool (protocol.md §6.6) and wait there for their
    // crowd of 2: its cover through M provides it (with the same crowd, so that they gather
    // in batches; crowd-0 cover would leave alone at once and never keep them company).
    let mkey = mix_key(&m);
    let s = TestNode::start(
        dirs[3].path(),
        &[
            "--connect",
            &m.p2p(),
            "--cover-via",
            &mkey,
            "--cover-rate",
            "120",
            "--cover-crowd",
            "2",
            "--cover-delay",
            "0s",
            "--loops",
            "0",
        ],
    );
    let loops = |n: &TestNode| mix_stats(n)["loops"].clone();
    assert!(
        wait_for(40, || loops(&m)["returned"].as_u64().unwrap_or(0) >= 6),
        "loops come back through A and B: {}",
        loops(&m)
    );
    assert_eq!(loops(&m)["alarm"], false, "{}", loops(&m));

    // A and B vanish: loops stop coming back and the alarm rises.
    a.kill9();
    b.kill9();
    assert!(wait_for(40, || loops(&m)["alarm"] == true), "{}", loops(&m));
    // A stranger's messages through M while the alarm is up: they enter uncounted, and still
    // leave (M's own loop packets fill their crowd of 2).
    let before = mix_stats(&m)["uncounted"].as_u64().unwrap();
    for i in 0..3 {
        s.ok(
            &[
                "send",
                "--tau",
                "low",
                "--delay",
                "0",
                "--via",
                &mkey,
                &format!("#alarm{i}"),
                "-",
            ],
            Some(b"under attack"),
        );
    }
    assert!(
        wait_for(30, || mix_stats(&m)["uncounted"].as_u64().unwrap()
            >= before + 3),
        "{}",
        mix_stats(&m)
    );
    assert!(
        wait_for(30, || (0..3).all(|i| s
            .cli(&["get", &format!("#alarm{i}")], None)
            .status
            .success())),
        "messages still leave while the alarm is up: {}",
        mix_stats(&m)
    );

    // A and B come back: loops return and the alarm clears.
    let _a = spoke(dirs[1].path());
    let _b = spoke(dirs[2].path());
    assert!(
        wait_for(60, || loops(&m)["alarm"] == false),
        "{}",
        loops(&m)
    );
    assert!(loops(&m)["alarms"].as_u64().unwrap() >= 1);
}

/// Every node a mix (#15): three nodes with their mix records on the bus learn each other's
/// keys; a send that names no mixes then goes through the sender's own pool and the two
/// others and arrives everywhere. The sender never publishes its own first layer: its mix tag
/// holds no packet (the other nodes send no cover through it here).
#[test]
fn nodes_learn_mixes_from_the_bus_and_sends_start_in_their_own_pool() {
    use base64::Engine as _;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let on = ["--announce-mix", "true", "--loops", "0"];
    let a = TestNode::start(
        dirs[0].path(),
        &[
            &on[..],
            &[
                "--listen",
                "127.0.0.1:0",
                "--cover-rate",
                "60",
                "--cover-crowd",
                "1",
                "--cover-delay",
                "1s",
            ],
        ]
        .concat(),
    );
    let b = TestNode::start(
        dirs[1].path(),
        &[&on[..], &["--listen", "127.0.0.1:0", "--connect", &a.p2p()]].concat(),
    );
    let c = TestNode::start(
        dirs[2].path(),
        &[&on[..], &["--connect", &b.p2p()]].concat(),
    );
    let nodes = [&a, &b, &c];
    assert!(
        wait_for(60, || nodes
            .iter()
            .all(|n| n.rpc("bump_mixstatus", serde_json::json!([]))
                ["result"]["bus_mixes"]
                == 2)),
        "every node knows the two others: {:?}",
        nodes
            .iter()
            .map(|n| n.rpc("bump_mixstatus", serde_json::json!([]))["result"]["bus_mixes"].clone())
            .collect::<Vec<_>>()
    );
    let data = random_bytes(1500);
    let v = a.rpc(
        "bump_send",
        serde_json::json!([{"tag": "#every-node-a-mix",
            "data": base64::engine::general_purpose::STANDARD.encode(&data),
            "crowd": 1, "delay": 1}]),
    );
    assert_eq!(v["result"]["hops"], 3, "own layer and both others: {v}");
    assert_eq!(
        v["result"]["expires"].as_u64().unwrap() % (6 * 3600),
        0,
        "on the 6 h grid"
    );
    for n in nodes {
        assert!(
            wait_for(90, || n.cli(&["get", "#every-node-a-mix"], None).stdout
                == data),
            "delivered at {}",
            n.datadir.display()
        );
    }
    let tag = a.rpc("bump_mixstatus", serde_json::json!([]))["result"]["mix_tag"]
        .as_str()
        .unwrap()
        .to_string();
    let held = a.rpc("bump_getpackets", serde_json::json!([tag]));
    assert_eq!(
        held["result"],
        serde_json::json!([]),
        "A published its own layer: {held}"
    );
    assert!(
        a.rpc("bump_mixstatus", serde_json::json!([]))["result"]["released"]
            .as_u64()
            .unwrap()
            >= 2,
        "both parts left A's pool"
    );
}
