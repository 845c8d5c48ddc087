//! Durable store inserts per second (goal ≥ 50k/s), batched: each batch is inserted and then
//! flushed before the next starts, i.e. every packet counted was on disk. Printed beside a
//! baseline measured in the same run: appending the same bytes to a plain file with one fsync
//! per batch (what any durable store must at least pay).

use bump::packet::{Packet, BODY_LEN, PACKET_LEN};
use bump::store::{Store, StoreConfig};
use bump::tag::Tag;
use rand::RngCore;
use std::io::Write;
use std::time::Instant;

fn packets(n: usize) -> Vec<Packet> {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let mut body = Box::new([0u8; BODY_LEN]);
            rng.fill_bytes(&mut body[..]);
            Packet {
                tag: Tag([(i % 50) as u8; 20]),
                expires: u32::MAX - 10,
                nonce: 0,
                body,
            }
        })
        .collect()
}

fn store_run(all: &[Packet], batch: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreConfig {
            max_packets: u64::MAX,
            cache_bytes: 256 << 20,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    for chunk in all.chunks(batch) {
        store.insert_many(chunk, 0).unwrap();
        rt.block_on(store.durable()).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(store.len() as usize, all.len());
    eprintln!(
        "    ({} bytes on disk for {} packets)",
        store.size_on_disk(),
        all.len()
    );
    all.len() as f64 / secs
}

fn file_run(all: &[Packet], batch: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("raw")).unwrap();
    let t = Instant::now();
    for chunk in all.chunks(batch) {
        let mut buf = Vec::with_capacity(chunk.len() * PACKET_LEN);
        for p in chunk {
            buf.extend_from_slice(&p.encode());
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
    }
    all.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing: keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 5_000 } else { 200_000 };
    let all = packets(n);
    for batch in [1usize, 100, 1000] {
        let n_here = if batch == 1 { n.min(2_000) } else { n };
        let s = store_run(&all[..n_here], batch);
        let f = file_run(&all[..n_here], batch);
        println!(
            "store durable inserts, batch {batch:>4}: {s:>10.0} packets/s   baseline file append+fsync: {f:>10.0} packets/s   ({n_here} packets)"
        );
    }
}
