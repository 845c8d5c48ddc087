//! Sealed messages (issue #17): seal + open of one message (1 part, and 1 MiB), trial
//! decryption of one inbox envelope that is not ours beside the bare ECDH (the floor, same run),
//! and the argon2id derivation of a passphrase group.

use bump::sealed::envelope::{open, seal, Opener, Plain, Seal};
use bump::sealed::keys::{GroupKey, Identity};
use criterion::{black_box, criterion_group, Criterion};
use secp256k1::ecdh::SharedSecret;

fn plain(n: usize) -> Plain {
    Plain {
        timestamp: 1_800_000_000,
        content_type: 0,
        body: vec![7; n],
    }
}

fn bench(c: &mut Criterion) {
    let g = GroupKey::generate();
    let alice = Identity::generate();
    for (name, n) in [("1 part (900 B)", 900usize), ("1 MiB", 1 << 20)] {
        let p = plain(n);
        c.bench_function(&format!("group seal + open, signed, {name}"), |b| {
            b.iter(|| {
                let e = seal(&Seal::Group(&g), black_box(&p), Some(&alice)).unwrap();
                open(&e, &Opener::Group(&g)).unwrap()
            })
        });
    }
    let me = Identity::generate();
    let others: Vec<_> = (0..8).map(|_| Identity::generate().public()).collect();
    let not_ours = seal(&Seal::Direct(&others), &plain(900), None).unwrap();
    c.bench_function(
        "inbox trial decryption of an envelope not for us (8 slots)",
        |b| b.iter(|| open(black_box(&not_ours), &Opener::Identity(&me)).is_err()),
    );
    let pk = secp256k1::PublicKey::from_x_only_public_key(others[0].0, secp256k1::Parity::Even);
    let sk = me.keypair().secret_key();
    c.bench_function("bare ECDH (floor of trial decryption)", |b| {
        b.iter(|| SharedSecret::new(black_box(&pk), black_box(&sk)))
    });
    // The floor for a key read off the wire: a 32-byte x-only key must be lifted to a point
    // (a square root) before the multiplication; no trial decryption can skip that.
    let mut wire = [0x02u8; 33];
    wire[1..].copy_from_slice(&others[0].to_bytes());
    c.bench_function("ECDH of a key read from the wire (lift + multiply)", |b| {
        b.iter(|| {
            let pk = secp256k1::PublicKey::from_slice(black_box(&wire)).unwrap();
            SharedSecret::new(&pk, black_box(&sk))
        })
    });
    let mut slow = c.benchmark_group("argon2id");
    slow.sample_size(10);
    slow.bench_function("passphrase group key (19 MiB, t=2)", |b| {
        b.iter(|| GroupKey::from_passphrase(black_box("tide pool 42")).unwrap())
    });
    slow.finish();
}

/// Trial decryption against its floors measured in alternating rounds, so that the ratio is
/// not skewed by the machine's speed drifting between criterion's runs (it does, on shared
/// machines, by 20 % and more).
fn interleaved() {
    use std::time::Instant;
    let me = Identity::generate();
    let others: Vec<_> = (0..8).map(|_| Identity::generate().public()).collect();
    let env = seal(&Seal::Direct(&others), &plain(900), None).unwrap();
    let sk = me.keypair().secret_key();
    let mut wire = [0x02u8; 33];
    wire[1..].copy_from_slice(&env[2 + 24..2 + 24 + 32]);
    let pk = secp256k1::PublicKey::from_slice(&wire).unwrap();
    let (n, rounds) = (2000, 8);
    let mut t = [0f64; 3];
    for _ in 0..rounds {
        let s = Instant::now();
        for _ in 0..n {
            black_box(open(black_box(&env), &Opener::Identity(&me)).is_err());
        }
        t[0] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for _ in 0..n {
            let pk = secp256k1::PublicKey::from_slice(black_box(&wire)).unwrap();
            black_box(SharedSecret::new(&pk, black_box(&sk)));
        }
        t[1] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for _ in 0..n {
            black_box(SharedSecret::new(black_box(&pk), black_box(&sk)));
        }
        t[2] += s.elapsed().as_secs_f64();
    }
    let us = |x: f64| x / (rounds * n) as f64 * 1e6;
    println!(
        "interleaved, {rounds}x{n}: trial decryption {:.1} µs, wire-key ECDH {:.1} µs, bare ECDH {:.1} µs: \
         trial = {:.3}x bare ECDH (goal <= 1.2), {:.3}x wire-key ECDH",
        us(t[0]),
        us(t[1]),
        us(t[2]),
        t[0] / t[2],
        t[0] / t[1]
    );
}

criterion_group!(benches, bench);

fn main() {
    interleaved();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
