//! Moving raw packets between nodes by file: `bump export TAG` writes a tag's packets as JSON
//! lines, `bump import FILE` stores packets from JSON lines, an array or one object.

use super::ctx::{read_input, write_stdout, Ctx};
use super::get::packet_lines;
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

pub async fn import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    let bytes = read_input(&a.file)?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 JSON", a.file.display()))?;
    let packets = parse_interchange(&text)
        .map_err(|(i, e)| anyhow!("{}: entry {i}: {e}", a.file.display()))?;
    if packets.is_empty() {
        bail!("{} holds no packets", a.file.display());
    }
    let json = packets.iter().map(|p| p.to_json()).collect();
    let r = ctx.client()?.import_packets(json).await.map_err(classify)?;
    println!(
        "imported {} packet(s), {} already held",
        r.accepted, r.duplicates
    );
    Ok(())
}

pub async fn export(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    let tag = Tag::from_arg(&a.tag)?;
    let (out, n) = packet_lines(ctx, tag).await?;
    match a.output {
        Some(path) => {
            std::fs::write(&path, out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("exported {n} packet(s) to {}", path.display());
            Ok(())
        }
        None => write_stdout(out.as_bytes()),
    }
}
