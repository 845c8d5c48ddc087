//! Packet encode+decode throughput (goal ≥ 1M/s on one core), beside a plain 1024-byte copy
//! measured in the same run as the floor.

use bump::packet::{Packet, BODY_LEN, PACKET_LEN};
use bump::tag::Tag;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let p = Packet {
        tag: Tag([7; 20]),
        expires: 123_456,
        nonce: 0,
        body: Box::new([0x5a; BODY_LEN]),
    };
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode+decode", |b| {
        b.iter(|| {
            let bytes = black_box(&p).encode();
            black_box(Packet::decode(black_box(&bytes)).unwrap())
        })
    });
    g.bench_function("baseline: copy 1024 bytes twice", |b| {
        let src = [0x5au8; PACKET_LEN];
        b.iter(|| {
            let a: [u8; PACKET_LEN] = *black_box(&src);
            let v: Box<[u8; PACKET_LEN]> = Box::new(*black_box(&a));
            black_box(v)
        })
    });
    g.bench_function("id (sha256d)", |b| b.iter(|| black_box(&p).id()));
    g.bench_function("json round trip", |b| {
        b.iter(|| {
            let s = serde_json::to_string(&black_box(&p).to_json()).unwrap();
            black_box(Packet::from_json_str(&s).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
