//! Set reconciliation cost (protocol.md §5.5) without sockets: bytes and messages of a whole
//! session between two snapshots of N items, for differences clustered in the newest expiry
//! hour (a node that was offline) and scattered over the whole store, beside the size of the
//! inventory exchange it replaces (36 bytes per id each way) in the same run.

use bump::p2p::recon::{decode, encode, initiate, respond, Item, Snapshot};
use bump::packet::PacketId;
use std::time::Instant;

fn item(i: u64, expires: u32) -> Item {
    use bitcoin::hashes::{sha256, Hash};
    Item {
        expires,
        id: PacketId(sha256::Hash::hash(&i.to_le_bytes()).to_byte_array()),
        record: 0,
    }
}

/// (bytes, messages, ids learned by each side)
fn session(a: &Snapshot, b: &Snapshot) -> (usize, usize, usize) {
    let mut msg = initiate(a);
    let (mut bytes, mut msgs, mut learned) = (encode(&msg).len(), 1, 0);
    let mut at_b = true;
    loop {
        let me = if at_b { b } else { a };
        let o = respond(me, &decode(&encode(&msg)).unwrap()).unwrap();
        learned += o.need.len() + o.have.len();
        if o.reply.is_empty() {
            break;
        }
        bytes += encode(&o.reply).len();
        msgs += 1;
        msg = o.reply;
        at_b = !at_b;
    }
    (bytes, msgs, learned)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 1_000_000 } else { 20_000 };
    let base: Vec<Item> = (0..n).map(|i| item(i, 1000 + (i % 48) as u32)).collect();
    let t = Instant::now();
    let a = Snapshot::new(base.clone());
    let built = t.elapsed();
    let t = Instant::now();
    let mut plain = base.clone();
    plain.sort_unstable();
    let sorted = t.elapsed();
    println!(
        "snapshot of {n} items built in {:.1} ms   baseline (plain sort of the items): {:.1} ms",
        built.as_secs_f64() * 1e3,
        sorted.as_secs_f64() * 1e3
    );
    for pct in [0.1f64, 1.0, 10.0] {
        let d = ((n as f64) * pct / 100.0) as u64;
        for (kind, newest) in [("newest hour", true), ("scattered", false)] {
            let extra: Vec<Item> = (0..d)
                .map(|i| item(n + i, if newest { 1048 } else { 1000 + (i % 48) as u32 }))
                .collect();
            let b = Snapshot::new(base.iter().chain(&extra).copied().collect());
            let t = Instant::now();
            let (bytes, msgs, learned) = session(&a, &b);
            assert_eq!(learned as u64, d);
            println!(
                "{n} items, {d} missed ({pct}%, {kind}): {bytes} bytes in {msgs} messages, {:.0} ms of CPU for both sides   inventory exchange: {} bytes   missing ids alone: {} bytes",
                t.elapsed().as_secs_f64() * 1e3,
                (2 * n + d) * 36,
                d * 32
            );
        }
    }
}
