//! Proof of work: solving one packet at the main-network base on 1 and 2 threads, and
//! verifying one (admission's cost), each beside the bare SHA256d of 1024 bytes measured in the
//! same run (the floor: a solve is `work` of those on average, a check is one plus a compare).

use bump::packet::{Packet, BODY_LEN};
use bump::pow::{required_work, solve, solve_all, BASE_WORK};
use bump::tag::Tag;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Instant;

fn pkt(i: u32) -> Packet {
    let mut body = Box::new([0u8; BODY_LEN]);
    body[..4].copy_from_slice(&i.to_be_bytes());
    Packet {
        tag: Tag([9; 20]),
        expires: 2_000_000_000,
        nonce: 0,
        body,
    }
}

fn bench(c: &mut Criterion) {
    let bytes = pkt(0).encode();
    c.bench_function("sha256d of 1024 bytes (floor)", |b| {
        b.iter(|| bump::packet::PacketId::of_bytes(black_box(&bytes)))
    });
    let mut solved = pkt(1);
    solve(&mut solved, BASE_WORK);
    c.bench_function("check_work of one packet (admission)", |b| {
        b.iter(|| bump::pow::check(black_box(&solved), 1_999_990_000, BASE_WORK))
    });
    let mut g = c.benchmark_group("solve at the base");
    g.sample_size(20);
    let mut i = 100;
    g.bench_function("one packet, 1 thread", |b| {
        b.iter(|| {
            i += 1;
            let mut p = pkt(i);
            solve(&mut p, BASE_WORK)
        })
    });
    g.finish();
    // Whole batches on 1 and 2 threads, and the TTL factor, as plain timings.
    for (label, ttl) in [("1 h", 3600u32), ("48 h", 48 * 3600)] {
        let work = required_work(BASE_WORK, ttl);
        let mut batch: Vec<Packet> = (0..64).map(|k| pkt(10_000 + k)).collect();
        let t = Instant::now();
        let tries: u64 = batch.iter_mut().map(|p| solve(p, work)).sum();
        let one = t.elapsed().as_secs_f64() / 64.0;
        let mut batch2: Vec<Packet> = (0..64).map(|k| pkt(20_000 + k)).collect();
        let t = Instant::now();
        solve_all(&mut batch2, work);
        let two = t.elapsed().as_secs_f64() / 64.0;
        println!(
            "ttl {label}: work {work}: {:.1} ms per packet on 1 thread ({} tries avg), {:.1} ms per packet with all cores",
            one * 1000.0,
            tries / 64,
            two * 1000.0
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
