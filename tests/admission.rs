//! Flood admission (issue #12): a node whose store is flooded with minimum-work packets still
//! takes honest messages, which solve above the cheapest packets held and evict them; the store
//! never grows past its quota and the node keeps answering.

mod common;

use bump::packet::{Packet, BODY_LEN};
use bump::tag::Tag;
use common::raw::solved;
use common::*;

fn flood(n: usize) -> String {
    let now = bump::unix_now();
    (0..n)
        .map(|i| {
            let mut body = Box::new([0u8; BODY_LEN]);
            body[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let p = solved(Packet {
                tag: Tag([0xf1; 20]),
                expires: now + 6 * 3600,
                nonce: 0,
                body,
            });
            serde_json::to_string(&p.to_json()).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    // The attacker's 80 minimum-work packets: the store fills; what does not beat the
    // cheapest held is refused (the import reports it).
    let out = a.cli(&["import", "-"], Some(flood(80).as_bytes()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("does not beat the cheapest"),
        "{err}"
    );
    assert!(wait_for(20, || b.packet_count() == 40), "b did not fill");
    assert_eq!(a.packet_count(), 40);
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
        assert_eq!(n.packet_count(), 40, "the store grew past its quota");
    }
}
