//! Anonymity of a Tau mix under a global passive adversary: `cargo run --release --example
//! anonymity`. Drives the real [`TauPool`] with a simulated clock: Poisson arrivals, release
//! checks on every arrival and every 200 ms (as the mix role does). The adversary sees every
//! input and output time and links them with:
//!
//! - **FIFO**: the i-th output is the i-th input;
//! - **exact**: it knows the Tau values (standard levels are public), so it knows which release
//!   instant each input falls in; it guesses uniformly inside that batch — success per batch of
//!   size b is 1/b per message, i.e. (number of batches) / (number of messages) overall.
//!
//! Also the (n-1) attacker: he floods the mix so that the target's crowd is made of his own
//! packets, which he recognises at the output; whatever is left is the target.

use bump::mix::pool::{PoolLimits, TauPool};
use bump::packet::{Packet, BODY_LEN};
use bump::store::{Store, StoreConfig};
use bump::tag::Tag;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

struct Outcome {
    fifo: f64,
    exact: f64,
    mean_batch: f64,
}

fn simulate(k: u64, delay_s: u64, rate_per_s: f64, n: usize, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreConfig {
            max_packets: 1 << 20,
            cache_bytes: 8 << 20,
        },
    )
    .unwrap();
    let mut pool = TauPool::open(
        &store,
        PoolLimits {
            max_held: 1 << 20,
            max_crowd: 1 << 20,
            max_delay_secs: 1 << 20,
        },
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t_ms: u64 = 1_000_000;
    let mut next_tick = t_ms + 200;
    let mut outputs: Vec<(u64, usize)> = Vec::new(); // (release time, input index)
    let release = |pool: &mut TauPool,
                   now: u64,
                   outputs: &mut Vec<(u64, usize)>,
                   rng: &mut rand::rngs::StdRng| {
        for p in pool.due(now, rng).unwrap() {
            outputs.push((now, p.expires as usize));
            pool.remove(&store, &p.id()).unwrap();
        }
    };
    for i in 0..n {
        let gap = (-rng.gen_range(f64::EPSILON..1.0f64).ln() / rate_per_s * 1000.0) as u64;
        let arrive = t_ms + gap.max(1);
        while next_tick <= arrive {
            release(&mut pool, next_tick, &mut outputs, &mut rng);
            next_tick += 200;
        }
        t_ms = arrive;
        let mut body = Box::new([0u8; BODY_LEN]);
        rng.fill(&mut body[..16]);
        let p = Packet {
            tag: Tag([1; 20]),
            expires: i as u32,
            body,
        };
        pool.insert(&store, &p, k, delay_s, t_ms).unwrap();
        release(&mut pool, t_ms, &mut outputs, &mut rng);
    }
    // Drain: later traffic keeps arriving in reality; count only messages that left.
    let out_n = outputs.len().max(1);
    let fifo = outputs
        .iter()
        .enumerate()
        .filter(|(j, (_, i))| j == i)
        .count() as f64
        / out_n as f64;
    let mut batches: HashMap<u64, usize> = HashMap::new();
    for (t, _) in &outputs {
        *batches.entry(*t).or_default() += 1;
    }
    Outcome {
        fifo,
        exact: batches.len() as f64 / out_n as f64,
        mean_batch: out_n as f64 / batches.len().max(1) as f64,
    }
}

fn main() {
    let n = 3000;
    let rate = 5.0;
    println!("Tau pool, Poisson arrivals at {rate}/s, {n} messages, release checks on arrival and every 200 ms");
    println!("adversary success = fraction of outputs linked to their input (1.0 = no anonymity)");
    println!();
    println!("| crowd k | delay d | FIFO rule | exact rule | mean batch | 1/k |");
    println!("|---|---|---|---|---|---|");
    for &k in &[0u64, 1, 5, 10, 20] {
        for &d in &[0u64, 2, 10] {
            let o = simulate(k, d, rate, n, 42 + k * 100 + d);
            let inv = if k == 0 {
                "-".to_string()
            } else {
                format!("{:.3}", 1.0 / k as f64)
            };
            println!(
                "| {k} | {d} s | {:.3} | {:.3} | {:.2} | {inv} |",
                o.fifo, o.exact, o.mean_batch
            );
        }
    }
    println!();
    println!(
        "(n-1) attack: the attacker sends k packets right after the target and recognises his own"
    );
    println!("outputs; whatever else leaves in the target's batch is the target. Without postage and loop");
    println!("detection his success is 1 for every k; see docs/anonymity.md for what limits it.");
}
