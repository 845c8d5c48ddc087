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
//! Then the (n-1) attacker ([`n_minus_1`]): he floods the mix so that the target's crowd is
//! made of his own packets, which he recognises at the output; whatever else leaves in the
//! target's batch might be the target. Driven with the real [`TauPool`] and the real
//! [`LoopMonitor`] (loop ledger and alarm rule), on a simulated clock.

use bump::mix::loop_monitor::{loop_key, LoopMonitor};
use bump::mix::pool::{PoolLimits, TauPool};
use bump::packet::{Packet, BODY_LEN};
use bump::store::{Store, StoreConfig};
use bump::tag::Tag;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A store and a Tau pool with no policy caps, in a temporary directory.
fn sim_pool() -> (tempfile::TempDir, Store, TauPool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreConfig {
            max_packets: 1 << 20,
            cache_bytes: 8 << 20,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let pool = TauPool::open(
        &store,
        PoolLimits {
            max_held: 1 << 20,
            max_crowd: 1 << 20,
            max_delay_secs: 1 << 20,
        },
    )
    .unwrap();
    (dir, store, pool)
}

struct Outcome {
    fifo: f64,
    exact: f64,
    mean_batch: f64,
}

fn simulate(k: u64, delay_s: u64, rate_per_s: f64, n: usize, seed: u64) -> Outcome {
    let (_dir, _store, mut pool) = sim_pool();
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
            pool.remove(&p.id()).unwrap();
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
            nonce: 0,
            body,
        };
        pool.insert(&p, k, delay_s, t_ms).unwrap();
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Target,
    Honest,
    Attacker,
    Own,
}

/// Setting of one (n-1) run.
#[derive(Clone, Copy)]
struct Attack {
    k: u64,
    d: u64,
    /// Honest messages per second reaching the mix (when not blocked).
    honest_per_s: f64,
    /// The attacker also blocks every honest input (he controls the mix's links).
    block: bool,
    /// Loop packets per minute (0 = off; 12/min under alarm; window 6).
    loops_per_min: f64,
    /// Loop timeout, seconds.
    timeout_s: u64,
}

#[derive(Default)]
struct AttackOutcome {
    targets: usize,
    /// Mean attacker success (1 / number of non-attacker packets in the target's batch).
    success: f64,
    /// Targets the attacker linked for sure (alone with his packets).
    exposed: usize,
    /// Seconds from the start of blocking to the alarm.
    detect_s: Option<f64>,
    /// Mean success for targets that entered while the alarm was up.
    success_alarmed: Option<f64>,
    /// Attacker packets sent per target (= fees per target when the mix demands postage).
    packets_per_target: f64,
}

/// The (n-1) attack on one mix. 30 simulated minutes of normal traffic (loops come back), then
/// one hour of attack: the attacker picks the next honest message as target (letting only it
/// in when he blocks) and at once sends `k` packets of his own (crowd 0, delay `d`: eligible
/// exactly when the target is). He recognises his packets at the output; the target is one of
/// the rest of its batch, and he guesses uniformly among them.
fn n_minus_1(a: Attack, seed: u64) -> AttackOutcome {
    let (_dir, store, mut pool) = sim_pool();
    let monitor = LoopMonitor::open(&store, 6).unwrap();
    let timeout = std::time::Duration::from_secs(a.timeout_s);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kinds: HashMap<bump::packet::PacketId, Kind> = HashMap::new();
    let mut serial: u32 = 0;
    let mut mk = |kind: Kind, rng: &mut rand::rngs::StdRng, kinds: &mut HashMap<_, _>| {
        serial += 1;
        let mut body = Box::new([0u8; BODY_LEN]);
        rng.fill(&mut body[..16]);
        let p = Packet {
            tag: Tag([1; 20]),
            expires: serial,
            nonce: 0,
            body,
        };
        kinds.insert(p.id(), kind);
        p
    };
    let step = 100u64; // ms
    let warm = 1_800_000u64;
    let end = warm + 3_600_000;
    let mut returns: Vec<(u64, [u8; 32])> = Vec::new(); // (due ms, shared secret)
    let mut target_in = false;
    let mut target_alarmed = false;
    let mut out = AttackOutcome::default();
    let (mut sum, mut sum_alarm, mut n_alarm) = (0.0, 0.0, 0usize);
    let mut attacker_packets = 0u64;
    let mut t = 0u64;
    while t < end {
        t += step;
        let attacking = t > warm;
        let blocked = attacking && a.block;
        let alarm = monitor.alarmed();
        let insert = |pool: &mut TauPool, p: &Packet, crowd: u64, kind: Kind| {
            let counts = kind == Kind::Own || !alarm;
            pool.insert_with(p, crowd, a.d, t, counts).unwrap();
        };
        // Honest arrivals.
        if rng.gen_bool((a.honest_per_s * step as f64 / 1000.0).min(1.0)) {
            // The attacker takes the next honest message as his target; while blocking, he
            // lets in only that one.
            let kind = if attacking && !target_in {
                Kind::Target
            } else {
                Kind::Honest
            };
            if kind == Kind::Target || !blocked {
                let p = mk(kind, &mut rng, &mut kinds);
                insert(&mut pool, &p, a.k, kind);
                if kind == Kind::Target {
                    target_in = true;
                    target_alarmed = alarm;
                    for _ in 0..a.k {
                        let q = mk(Kind::Attacker, &mut rng, &mut kinds);
                        insert(&mut pool, &q, 0, Kind::Attacker);
                        attacker_packets += 1;
                    }
                }
            }
        }
        // Our loops: sent into our own pool; back after a round trip unless blocked.
        if a.loops_per_min > 0.0 {
            let per_min = if alarm {
                12.0f64.max(a.loops_per_min)
            } else {
                a.loops_per_min
            };
            if rng.gen_bool(per_min / 60.0 * step as f64 / 1000.0) {
                let p = mk(Kind::Own, &mut rng, &mut kinds);
                insert(&mut pool, &p, a.k, Kind::Own);
                let mut ss = [0u8; 32];
                rng.fill(&mut ss[..]);
                monitor.sent(loop_key(&ss), t, timeout).unwrap();
                let rtt =
                    3 * a.d * 1000 + (-rng.gen_range(f64::EPSILON..1.0f64).ln() * 20_000.0) as u64;
                returns.push((t + rtt, ss));
            }
            let (due, later): (Vec<_>, Vec<_>) = returns.iter().partition(|(at, _)| *at <= t);
            returns = later;
            for (_, ss) in due {
                if !blocked {
                    monitor.returned(&ss, t);
                    let p = mk(Kind::Own, &mut rng, &mut kinds);
                    insert(&mut pool, &p, a.k, Kind::Own);
                }
            }
            if t.is_multiple_of(1000) {
                if let Some(true) = monitor.evaluate(t) {
                    if attacking && out.detect_s.is_none() && a.block {
                        out.detect_s = Some((t - warm) as f64 / 1000.0);
                    }
                }
            }
        }
        // Release checks every 200 ms (and the batch the target is in).
        if t.is_multiple_of(200) {
            let batch = pool.due(t, &mut rng).unwrap();
            for p in &batch {
                pool.remove(&p.id()).unwrap();
            }
            let ks: Vec<Kind> = batch.iter().filter_map(|p| kinds.remove(&p.id())).collect();
            if ks.contains(&Kind::Target) {
                let others = ks.iter().filter(|k| **k != Kind::Attacker).count();
                let s = 1.0 / others as f64;
                sum += s;
                out.targets += 1;
                if others == 1 {
                    out.exposed += 1;
                }
                if target_alarmed {
                    sum_alarm += s;
                    n_alarm += 1;
                }
                target_in = false;
            }
        }
    }
    out.success = sum / out.targets.max(1) as f64;
    out.success_alarmed = (n_alarm > 0).then(|| sum_alarm / n_alarm as f64);
    out.packets_per_target = attacker_packets as f64 / out.targets.max(1) as f64;
    out
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
    println!("(n-1) attack on one mix, Tau level standard (crowd 5, delay 30 s); 30 min of normal traffic,");
    println!("then 1 h of attack. success = mean 1/(non-attacker packets in the target's batch);");
    println!(
        "exposed = targets alone with the attacker's packets; cost = attacker packets per target"
    );
    println!("(= postage fees per target at a mix that requires postage; 0 where it does not).");
    println!();
    println!("| attacker | honest msgs/s | loops/min, timeout | targets | success | exposed | alarm after | success once alarmed | cost (fees/target) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &(block, honest, loops_per_min, timeout_s) in &[
        (false, 0.02, 0.0, 600),
        (false, 0.02, 1.0, 600),
        (false, 0.2, 0.0, 600),
        (false, 0.2, 1.0, 600),
        (true, 0.02, 0.0, 600),
        (true, 0.02, 1.0, 600),
        (true, 0.02, 4.0, 180),
        (true, 0.2, 0.0, 600),
        (true, 0.2, 1.0, 600),
        (true, 0.2, 4.0, 180),
    ] {
        let loops = loops_per_min > 0.0;
        let o = n_minus_1(
            Attack {
                k: 5,
                d: 30,
                honest_per_s: honest,
                block,
                loops_per_min,
                timeout_s,
            },
            7 + honest.to_bits() % 1000 + block as u64 * 10 + loops_per_min as u64,
        );
        println!(
            "| {} | {honest} | {} | {} | {:.3} | {} ({:.0} %) | {} | {} | {:.1} |",
            if block { "block + flood" } else { "flood only" },
            if loops {
                format!("{loops_per_min}, {timeout_s} s")
            } else {
                "off".into()
            },
            o.targets,
            o.success,
            o.exposed,
            100.0 * o.exposed as f64 / o.targets.max(1) as f64,
            o.detect_s
                .map(|s| format!("{s:.0} s"))
                .unwrap_or("-".into()),
            o.success_alarmed
                .map(|s| format!("{s:.3}"))
                .unwrap_or("-".into()),
            o.packets_per_target,
        );
    }
}
