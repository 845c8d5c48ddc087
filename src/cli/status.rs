//! What the node says about itself: `bump status`, `bump mix`, `bump peers`, and `bump stop`.
//! Each prints a table for people, or the RPC's JSON with `--json`.

use super::ctx::Ctx;
use anyhow::Result;
use bump::rpc::api::BumpApiClient;
use bump::rpc::client::classify;
use clap::Args;

#[derive(Args)]
pub struct JsonFlag {
    /// Print the raw JSON
    #[arg(long)]
    json: bool,
}

pub async fn status(ctx: &Ctx, a: JsonFlag) -> Result<()> {
    let s = ctx.client()?.status().await.map_err(classify)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("BuMP node {} on {}", s.version, s.network);
    println!("datadir      {}", s.datadir);
    println!("packets      {} of {} max", s.packets, s.max_packets);
    println!("store size   {} bytes on disk", s.store_bytes_on_disk);
    if !s.sealed_skipped.is_empty() {
        let why: Vec<String> = s
            .sealed_skipped
            .iter()
            .map(|(e, n)| format!("{n} {e}"))
            .collect();
        println!("sealed       skipped envelopes: {}", why.join("; "));
    }
    if let Some(r) = &s.index_rebuilt {
        println!("index        rebuilt at start: {r}");
    }
    for d in &s.store_damaged {
        println!(
            "damaged      {} damaged packet(s) in segment {}",
            d.packets, d.segment
        );
    }
    if let Some(a) = &s.admission {
        let peers = if a.peer_floor > 0 {
            format!(", highest peer floor {}", a.peer_floor)
        } else {
            String::new()
        };
        println!(
            "floor        {} work per TTL (base {}{peers})",
            a.floor, a.base_work
        );
    }
    println!("max ttl      {} s", s.max_ttl);
    println!("max message  {} bytes", s.max_message_size);
    println!("uptime       {} s", s.uptime_secs);
    if let Some(p) = s.p2p {
        println!("peers        {} ({} BuMP)", p.peers, p.bump_peers);
        println!("listening    {}", p.listening.as_deref().unwrap_or("no"));
        println!(
            "sync         {} packets received from peers, {} still to fetch, {} to serve",
            p.received, p.requested, p.serving
        );
    }
    Ok(())
}

pub async fn mix(ctx: &Ctx, a: JsonFlag) -> Result<()> {
    let s = ctx.client()?.mix_status().await.map_err(classify)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("public key   {}", s.public_key);
    println!("mix tag      {}", s.mix_tag);
    println!("held         {} (entries so far {})", s.held, s.entries);
    println!("released     {}", s.released);
    println!("dummies      {} dropped at their hop", s.dummies_dropped);
    println!("other mixes  {} known from records on the bus", s.bus_mixes);
    if s.uncounted > 0 {
        println!("uncounted    {} (entered during a loop alarm)", s.uncounted);
    }
    match &s.loops {
        Some(l) => {
            println!(
                "loops        {} sent, {} back in time, {} pending, {} missing{}",
                l.sent,
                l.returned,
                l.pending,
                l.missing,
                l.median_rtt_ms
                    .map(|ms| format!(", median round trip {:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_default()
            );
            if l.alarm {
                println!("ALARM        loops are not coming back (since unix {}): possible (n-1) attack or isolation; only own packets fill crowds", l.alarm_since.unwrap_or(0));
            }
        }
        None => println!("loops        off"),
    }
    for (why, n) in &s.dropped {
        println!("dropped      {n} ({why})");
    }
    Ok(())
}

pub async fn peers(ctx: &Ctx, a: JsonFlag) -> Result<()> {
    let rows = ctx.client()?.peers().await.map_err(classify)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no peers");
        return Ok(());
    }
    println!(
        "{:<22} {:<3} {:<5} {:>10} {:>10} {:>5} {:>6}  agent",
        "address", "dir", "bump", "bytes in", "bytes out", "score", "secs"
    );
    for r in rows {
        println!(
            "{:<22} {:<3} {:<5} {:>10} {:>10} {:>5} {:>6}  {}",
            r.addr,
            if r.inbound { "in" } else { "out" },
            if r.bump { "yes" } else { "coin" },
            r.bytes_in,
            r.bytes_out,
            r.score,
            r.connected_secs,
            r.user_agent
        );
    }
    Ok(())
}

pub async fn stop(ctx: &Ctx) -> Result<()> {
    let msg = ctx.client()?.stop().await.map_err(classify)?;
    println!("{msg}");
    Ok(())
}
