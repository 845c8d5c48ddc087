//! Onion costs: peeling one BuMP layer beside its floor measured in the same run (one
//! secp256k1 ECDH plus one public-key tweak-multiply, the two curve operations a peel cannot
//! avoid), Nym's `sphinx-packet` crate processing one of its packets (3-hop route, its default
//! 1024-byte payload), and creating 3- and 5-hop onions.

use bump::onion::layer::{mix_tag, peel, wrap, HopInstructions};
use bump::tag::Tag;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use secp256k1::{ecdh::SharedSecret, PublicKey, Scalar, Secp256k1, SecretKey};
use std::hint::black_box;

fn route(n: u8) -> (Vec<SecretKey>, Vec<PublicKey>, Vec<HopInstructions>) {
    let secp = Secp256k1::new();
    let sk: Vec<SecretKey> = (1..=n)
        .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
        .collect();
    let pk: Vec<PublicKey> = sk
        .iter()
        .map(|k| PublicKey::from_secret_key(&secp, k))
        .collect();
    let instr = (0..n as usize)
        .map(|i| HopInstructions {
            next_tag: if i + 1 < n as usize {
                mix_tag(&pk[i + 1])
            } else {
                Tag([9; 20])
            },
            next_expires: 2_000_000_000,
            crowd: 3,
            delay_secs: 30,
            postage: None,
            drop: false,
            final_data: (i + 1 == n as usize).then(|| vec![7u8; 500]),
        })
        .collect();
    (sk, pk, instr)
}

fn bench(c: &mut Criterion) {
    let mut rng = rand::thread_rng();
    let (sk, pk, instr) = route(3);
    let packet = wrap(&pk, &instr, 2_000_000_000, &mut rng).unwrap();
    let mut g = c.benchmark_group("onion");
    g.throughput(Throughput::Elements(1));
    g.bench_function("peel one BuMP layer", |b| {
        b.iter(|| black_box(peel(&sk[0], black_box(&packet), &mut rng).unwrap()))
    });
    let secp = Secp256k1::new();
    let point = pk[1];
    let tweak = Scalar::from_be_bytes([3; 32]).unwrap();
    g.bench_function("floor: ECDH + pubkey tweak-mul", |b| {
        b.iter(|| {
            let ss = SharedSecret::new(black_box(&point), black_box(&sk[0]));
            black_box(point.mul_tweak(&secp, &tweak).unwrap());
            black_box(ss)
        })
    });
    // Nym's Sphinx (x25519, Lioness payload): parse + process, as its own benchmark does.
    {
        use sphinx_packet::constants::{
            DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
        };
        use sphinx_packet::header::delays;
        use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
        use sphinx_packet::SphinxPacket;
        use x25519_dalek::{PublicKey as XPub, StaticSecret};
        let keys: Vec<StaticSecret> = (0..3).map(|_| StaticSecret::random()).collect();
        let route: Vec<Node> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Node::new(
                    NodeAddressBytes::from_bytes([i as u8 + 1; NODE_ADDRESS_LENGTH]),
                    XPub::from(k),
                )
            })
            .collect();
        let delays = delays::generate_from_average_duration(
            route.len(),
            std::time::Duration::from_millis(10),
        );
        let dest = Destination::new(
            DestinationAddressBytes::from_bytes([3u8; DESTINATION_ADDRESS_LENGTH]),
            [4u8; IDENTIFIER_LENGTH],
        );
        let nym = SphinxPacket::new(vec![7u8; 500], &route, &dest, &delays).unwrap();
        let bytes = nym.to_bytes();
        g.bench_function("Nym sphinx-packet: parse + process one hop", |b| {
            b.iter(|| {
                black_box(
                    SphinxPacket::from_bytes(black_box(&bytes))
                        .unwrap()
                        .process(&keys[0])
                        .unwrap(),
                )
            })
        });
        g.bench_function("BuMP: parse + peel one layer", |b| {
            let wire = packet.encode();
            b.iter(|| {
                let p = bump::packet::Packet::decode(black_box(&wire)).unwrap();
                black_box(peel(&sk[0], &p, &mut rng).unwrap())
            })
        });
    }
    for n in [3u8, 5] {
        let (_, pk, instr) = route(n);
        g.bench_function(format!("create {n}-hop onion"), |b| {
            b.iter(|| black_box(wrap(&pk, &instr, 2_000_000_000, &mut rng).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
