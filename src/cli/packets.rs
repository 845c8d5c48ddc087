//! Moving raw packets between nodes by file: `bump export TAG` writes a tag's packets as JSON
//! lines, `bump import FILE` stores packets from JSON lines, an array or one object.

use super::ctx::{read_input, Ctx};
use super::get::write_packet_lines;
use anyhow::{anyhow, bail, Context, Result};
use bump::packet::parse_interchange;
use bump::rpc::api::BumpApiClient;
use bump::rpc::client::classify;
use bump::tag::Tag;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ImportArgs {
    file: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    tag: String,
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Packets per `bump_importpackets` call (about 1.5 MB of JSON).
const IMPORT_BATCH: usize = 1000;

pub async fn import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    let bytes = read_input(&a.file, usize::MAX)?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 JSON", a.file.display()))?;
    let packets = parse_interchange(&text)
        .map_err(|(i, e)| anyhow!("{}: entry {i}: {e}", a.file.display()))?;
    if packets.is_empty() {
        bail!("{} holds no packets", a.file.display());
    }
    drop(text);
    // Every packet is checked here before any is sent; the node stores batch by batch.
    let client = ctx.client()?;
    let (mut accepted, mut duplicates) = (0, 0);
    for (b, batch) in packets.chunks(IMPORT_BATCH).enumerate() {
        let json = batch.iter().map(|p| p.to_json()).collect();
        let r = client.import_packets(json).await.map_err(|e| {
            anyhow!(
                "{} (after {} packet(s) were stored)",
                classify(e),
                b * IMPORT_BATCH
            )
        })?;
        accepted += r.accepted;
        duplicates += r.duplicates;
    }
    println!("imported {accepted} packet(s), {duplicates} already held");
    Ok(())
}

pub async fn export(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    let tag = Tag::from_arg(&a.tag)?;
    match a.output {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let n = write_packet_lines(ctx, tag, &mut w)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("exported {n} packet(s) to {}", path.display());
            Ok(())
        }
        None => {
            write_packet_lines(ctx, tag, &mut std::io::stdout().lock()).await?;
            Ok(())
        }
    }
}
