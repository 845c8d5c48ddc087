//! Tau pool cost per message with 1,000 vs 100,000 messages held (the issue asks for O(log n)
//! at 100k): insert, and a release of one batch, each timed over many operations.

use bump::mix::pool::{PoolLimits, TauPool};
use bump::packet::{Packet, BODY_LEN};
use bump::store::{Store, StoreConfig};
use bump::tag::Tag;
use std::time::Instant;

fn pkt(i: u32) -> Packet {
    let mut body = Box::new([0u8; BODY_LEN]);
    body[..4].copy_from_slice(&i.to_le_bytes());
    Packet {
        tag: Tag([1; 20]),
        expires: 2_000_000_000,
        nonce: 0,
        body,
    }
}

fn run(held: u32, ops: u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreConfig {
            max_packets: 1 << 22,
            cache_bytes: 256 << 20,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let limits = PoolLimits {
        max_held: 1 << 22,
        max_crowd: 1 << 20,
        max_delay_secs: 1 << 30,
    };
    let mut pool = TauPool::open(&store, limits).unwrap();
    // Background: `held` messages waiting a long time.
    for i in 0..held {
        pool.insert(&pkt(i), 0, 1 << 29, 0).unwrap();
    }
    let t = Instant::now();
    for i in 0..ops {
        pool.insert(&pkt(held + i), 0, 0, 0).unwrap();
    }
    let insert_us = t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    let mut rng = rand::thread_rng();
    let t = Instant::now();
    let out = pool.due(1, &mut rng).unwrap();
    assert_eq!(out.len(), ops as usize);
    for p in &out {
        pool.remove(&p.id()).unwrap();
    }
    let release_us = t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    println!("pool with {held:>6} held: insert {insert_us:>6.1} µs/message, release {release_us:>6.1} µs/message ({ops} messages)");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let ops = if full { 10_000 } else { 500 };
    run(1_000, ops);
    run(if full { 100_000 } else { 5_000 }, ops);
}
