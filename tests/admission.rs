//! Flood admission (issue #12, docs/admission.md): a node flooded with minimum-work packets
//! — imported, or by an attacker peer over P2P — still takes honest messages, which solve for
//! the floor and evict the cheapest packets held; the store never grows past its quota, the
//! floor rises, is told to peers and survives a restart, and the node keeps answering.

mod common;

use bump::p2p::message::Message;
use bump::packet::{Packet, PacketId, BODY_LEN};
use bump::tag::Tag;
use common::raw::{solved, RawPeer};
use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `n` packets at the regtest base work under the attacker's tag, 6 h TTL; `salt` keeps
/// batches apart.
fn flood_packets(n: usize, salt: u8) -> Vec<Packet> {
    let now = bump::unix_now();
    (0..n)
        .map(|i| {
            let mut body = Box::new([salt; BODY_LEN]);
            body[..8].copy_from_slice(&(i as u64).to_be_bytes());
            solved(Packet {
                tag: Tag([0xf1; 20]),
                expires: now + 6 * 3600,
                nonce: 0,
                body,
            })
        })
        .collect()
}

fn as_jsonl(ps: &[Packet]) -> String {
    ps.iter()
        .map(|p| serde_json::to_string(&p.to_json()).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn floor(n: &TestNode) -> u64 {
    n.status()["admission"]["floor"].as_u64().unwrap()
}

#[test]
fn honest_messages_get_through_a_store_flooded_at_twice_its_size() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start(
        da.path(),
        &["--listen", "127.0.0.1:0", "--max-packets", "40"],
    );
    let b = TestNode::start(db.path(), &["--max-packets", "40", "--connect", &a.p2p()]);
    assert!(wait_for(20, || b.status()["p2p"]["bump_peers"] == 1));
    // The attacker's 80 minimum-work packets: past half full the floor rises, so some are
    // refused (the import says why).
    let out = a.cli(
        &["import", "-"],
        Some(as_jsonl(&flood_packets(80, 0)).as_bytes()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("below the admission floor"),
        "{err}"
    );
    let held = a.packet_count();
    assert!((20..=40).contains(&held), "{held}");
    assert!(floor(&a) > bump::pow::REGTEST_BASE_WORK);
    assert!(
        wait_for(20, || b.packet_count() == held),
        "b did not catch up"
    );
    // Honest messages from both sides, one and two parts.
    let m1 = random_bytes(500);
    let m2 = random_bytes(1500);
    a.ok(&["send", "#honest-a", "-"], Some(&m1));
    b.ok(&["send", "#honest-b", "-"], Some(&m2));
    for n in [&a, &b] {
        assert!(
            wait_for(20, || n.cli(&["get", "#honest-a"], None).stdout == m1),
            "#honest-a missing on a node"
        );
        assert!(
            wait_for(20, || n.cli(&["get", "#honest-b"], None).stdout == m2),
            "#honest-b missing on a node"
        );
        assert!(n.packet_count() <= 40, "the store grew past its quota");
    }
}

/// Serve the attacker's packets to whatever the node asks for, until `quiet` passes with no
/// request (or `limit`); returns the ids asked for and the floors the node told.
fn serve(
    atk: &mut RawPeer,
    have: &HashMap<PacketId, Packet>,
    quiet: Duration,
    limit: Duration,
) -> (Vec<PacketId>, Vec<u64>) {
    atk.s
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (start, mut last) = (Instant::now(), Instant::now());
    let (mut asked, mut floors) = (Vec::new(), Vec::new());
    while last.elapsed() < quiet && start.elapsed() < limit {
        match atk.read_msg() {
            Some(Message::GetData { ids, .. }) => {
                last = Instant::now();
                for id in ids {
                    if let Some(p) = have.get(&id) {
                        atk.send(&Message::Bump(Box::new(p.clone()))).unwrap();
                    }
                    asked.push(id);
                }
            }
            Some(Message::Floor(f)) => floors.push(f),
            Some(Message::Ping(n)) => atk.send(&Message::Pong(n)).unwrap(),
            _ => {}
        }
    }
    (asked, floors)
}

#[test]
fn an_attacker_peer_flooding_twice_the_store_keeps_no_honest_message_out() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = TestNode::start(
        da.path(),
        &["--listen", "127.0.0.1:0", "--max-packets", "40"],
    );
    let b = TestNode::start(db.path(), &["--max-packets", "40", "--connect", &a.p2p()]);
    assert!(wait_for(20, || b.status()["p2p"]["bump_peers"] == 1));

    let mut atk = RawPeer::connect(&a.p2p(), [127, 0, 0, 77]).unwrap();
    atk.handshake().unwrap();
    // The node tells a new BuMP peer its floor at once: on an empty store, the base.
    let first = atk.wait_for_msg(10, |m| matches!(m, Message::Floor(_)));
    assert_eq!(first, Some(Message::Floor(bump::pow::REGTEST_BASE_WORK)));

    // Twice the store in minimum-work packets, announced at once; honest messages are sent
    // from both nodes while the node fetches the flood.
    let flood = flood_packets(80, 1);
    let have: HashMap<PacketId, Packet> = flood.iter().map(|p| (p.id(), p.clone())).collect();
    atk.send(&Message::Inv {
        ids: flood.iter().map(|p| p.id()).collect(),
        other: 0,
    })
    .unwrap();
    let msgs: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("#honest-{i}"), random_bytes(300 + 700 * i)))
        .collect();
    let sender = {
        let (pa, pb) = (da.path().to_path_buf(), db.path().to_path_buf());
        let msgs = msgs.clone();
        std::thread::spawn(move || {
            for (i, (tag, data)) in msgs.iter().enumerate() {
                let dir = if i % 2 == 0 { &pa } else { &pb };
                let out = cli(dir, &["send", tag, "-"], Some(data));
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        })
    };
    let (asked, floors) = serve(
        &mut atk,
        &have,
        Duration::from_secs(4),
        Duration::from_secs(40),
    );
    sender.join().unwrap();
    assert!(!asked.is_empty(), "the node fetched nothing");
    assert!(
        floors.iter().any(|f| *f > bump::pow::REGTEST_BASE_WORK),
        "the node never told a risen floor: {floors:?}"
    );

    // Every honest message on every node; the stores within quota; the node answers.
    for n in [&a, &b] {
        for (tag, data) in &msgs {
            assert!(
                wait_for(20, || n.cli(&["get", tag], None).stdout == *data),
                "{tag} missing on a node"
            );
        }
        assert!(n.packet_count() <= 40, "the store grew past its quota");
    }
    let risen = floor(&a);
    assert!(risen > bump::pow::REGTEST_BASE_WORK);

    // Announcements whose work is under the floor are not even fetched; within the grace
    // after the floor rose, the attacker is not punished for them.
    let cheap: Vec<Packet> = flood_packets(200, 2)
        .into_iter()
        .filter(|p| bump::pow::work_of(&p.id()) < risen)
        .take(20)
        .collect();
    assert!(!cheap.is_empty());
    atk.send(&Message::Inv {
        ids: cheap.iter().map(|p| p.id()).collect(),
        other: 0,
    })
    .unwrap();
    let (asked, _) = serve(
        &mut atk,
        &have,
        Duration::from_secs(3),
        Duration::from_secs(5),
    );
    assert!(
        asked.iter().all(|id| !cheap.iter().any(|p| p.id() == *id)),
        "the node fetched packets under its floor"
    );
    let row = a
        .peers()
        .into_iter()
        .find(|p| p["addr"].as_str().unwrap().starts_with("127.0.0.77:"))
        .expect("the attacker is still connected");
    assert_eq!(row["score"], 0, "{row}");

    // Over RPC, a packet under the floor is refused with the reason.
    let now = bump::unix_now();
    let below = flood_packets(200, 3)
        .into_iter()
        .find(|p| bump::pow::score(&p.id(), p.expires - now) < risen / 2)
        .unwrap();
    let out = a.cli(&["import", "-"], Some(as_jsonl(&[below]).as_bytes()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("below the admission floor"),
        "{err}"
    );

    // A restart keeps the floor.
    drop(atk);
    assert!(a.terminate());
    let a = TestNode::start(
        da.path(),
        &["--listen", "127.0.0.1:0", "--max-packets", "40"],
    );
    let kept = floor(&a);
    assert!(
        kept * 10 >= risen * 9,
        "floor {risen} before the restart, {kept} after"
    );
    let text = String::from_utf8(a.ok(&["status"], None)).unwrap();
    assert!(text.contains("floor"), "{text}");
}

#[test]
fn a_node_announces_a_peer_nothing_below_the_floor_it_told() {
    let d = tempfile::tempdir().unwrap();
    let a = TestNode::start(d.path(), &["--listen", "127.0.0.1:0"]);
    let mut raw = RawPeer::connect(&a.p2p(), [127, 0, 0, 78]).unwrap();
    raw.handshake().unwrap();
    assert!(raw
        .wait_for_msg(10, |m| matches!(m, Message::Floor(_)))
        .is_some());
    // A floor no packet meets: nothing is announced.
    raw.send(&Message::Floor(u64::MAX)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    a.ok(&["send", "#floored", "-"], Some(b"not for you"));
    assert!(raw
        .wait_for_msg(3, |m| matches!(m, Message::Inv { .. }))
        .is_none());
    // Back to no floor: the next message is announced.
    raw.send(&Message::Floor(1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    a.ok(&["send", "#open", "-"], Some(b"for you"));
    assert!(raw
        .wait_for_msg(
            10,
            |m| matches!(m, Message::Inv { ids, .. } if !ids.is_empty())
        )
        .is_some());
}
