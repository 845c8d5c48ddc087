//! The overlay at internet scale (issue #13), simulated: `cargo run --release --example
//! simulate [-- NODES [PACKETS [SEED [MODES]]]]` (default 10,000 nodes, degree 8, 1,000 new
//! packets, 10 % churn). MODES is a comma-separated list of `once` (relay at once, sessions
//! staggered as the node does: the default), `trickle` (a 500 ms trickle) and `burst` (all
//! reconciliation sessions at once, the node before the stagger); default `once,trickle`.
//! Prints a row of docs/scale.md's table for each.

use bump::sim::{run, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let base = SimConfig {
        nodes: arg(0, 10_000) as usize,
        packets: arg(1, 1_000) as usize,
        seed: arg(2, 1),
        ..SimConfig::default()
    };
    println!(
        "{} nodes, degree {}, {} new packets at {}/s, {} base items each, {:.0} % down for {} s from t = {} s, latency {}-{} ms",
        base.nodes,
        base.degree,
        base.packets,
        base.rate,
        base.base_items,
        base.churn * 100.0,
        base.down_for,
        base.down_at,
        base.latency_ms.0,
        base.latency_ms.1
    );
    println!("| relay | bytes/node/s mean, p99 | inv entries per packet stored | duplicate deliveries | latency p50 / p99 / max | delivered | rejoined: missed each | recon bytes each mean, p99 | recon msgs each | catch-up p50 / p99 | catch-up bytes ÷ missed bytes | events | wall |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let modes = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "once,trickle".into());
    for mode in modes.split(',') {
        let (trickle, stagger) = match mode {
            "once" => (None, base.recon_stagger_ms),
            "trickle" => (Some(500.0), base.recon_stagger_ms),
            "burst" => (None, 0.0),
            m => {
                eprintln!("unknown mode {m:?} (once, trickle, burst)");
                std::process::exit(2);
            }
        };
        let cfg = SimConfig {
            trickle_ms: trickle,
            recon_stagger_ms: stagger,
            ..base.clone()
        };
        let t = std::time::Instant::now();
        let r = run(&cfg);
        let label = format!(
            "{}, sessions {}",
            trickle.map_or("at once".to_string(), |m| format!("trickle {m} ms")),
            if stagger > 0.0 {
                format!("{stagger:.0} ms apart")
            } else {
                "all at once".into()
            }
        );
        println!(
            "| {} | {:.0}, {:.0} | {:.2} | {} | {:.0} / {:.0} / {:.0} ms | {:.4} | {}: {:.0} | {:.0}, {:.0} | {:.1} | {:.0} / {:.0} ms | {:.2} | {} | {:.1} s |",
            label,
            r.node_bytes_per_s.0,
            r.node_bytes_per_s.1,
            r.announcements_per_packet,
            r.duplicate_deliveries,
            r.latency_ms.0,
            r.latency_ms.1,
            r.latency_ms.2,
            r.delivered,
            r.rejoined,
            r.missed_mean,
            r.recon_bytes.0,
            r.recon_bytes.1,
            r.recon_messages,
            r.catch_up_ms.0,
            r.catch_up_ms.1,
            r.catch_up_overhead,
            r.events,
            t.elapsed().as_secs_f64()
        );
    }
}
