//! Moving raw packets between nodes by file: `bump export TAG` writes a tag's packets as JSON
//! lines, `bump import FILE` stores packets from JSON lines, an array or one object.

use super::ctx::{read_input, Ctx};
use super::get::write_packet_lines;
use anyhow::{anyhow, bail, Context, Result};
use bump::packet::{interchange_stream, parse_interchange};
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

/// Whether a file holds a JSON array (which cannot be read as a stream).
fn is_array(path: &std::path::Path) -> Result<bool> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        if let Some(b) = buf[..n].iter().find(|b| !b.is_ascii_whitespace()) {
            return Ok(*b == b'[');
        }
    }
}

pub async fn import(ctx: &Ctx, a: ImportArgs) -> Result<()> {
    let name = a.file.display().to_string();
    let bad = |(i, e): (usize, bump::packet::PacketError)| anyhow!("{name}: entry {i}: {e}");
    let client = ctx.client()?;
    let (mut accepted, mut duplicates, mut sent) = (0, 0, 0usize);
    let send = |batch: Vec<bump::packet::Packet>| {
        let client = client.clone();
        async move {
            let json = batch.iter().map(|p| p.to_json()).collect();
            client.import_packets(json).await.map_err(classify)
        }
    };
    let stdin = a.file == std::path::Path::new("-");
    if stdin || is_array(&a.file)? {
        // stdin cannot be read twice, an array is not a stream: read it whole, check it all,
        // then send it in batches.
        let bytes = read_input(&a.file, usize::MAX)?;
        let text = String::from_utf8(bytes).map_err(|_| anyhow!("{name} is not UTF-8 JSON"))?;
        let packets = parse_interchange(&text).map_err(bad)?;
        drop(text);
        if packets.is_empty() {
            bail!("{name} holds no packets");
        }
        for batch in packets.chunks(IMPORT_BATCH) {
            let r = send(batch.to_vec())
                .await
                .map_err(|e| anyhow!("{e} (after {sent} packet(s) were stored)"))?;
            (accepted, duplicates, sent) = (
                accepted + r.accepted,
                duplicates + r.duplicates,
                sent + batch.len(),
            );
        }
    } else {
        // A file of JSON lines: check every entry in a first pass, then stream it in batches,
        // so memory stays bounded whatever its size.
        let open = || std::fs::File::open(&a.file).with_context(|| format!("cannot read {name}"));
        let mut count = 0usize;
        for p in interchange_stream(open()?) {
            p.map_err(bad)?;
            count += 1;
        }
        if count == 0 {
            bail!("{name} holds no packets");
        }
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        for p in interchange_stream(open()?) {
            batch.push(p.map_err(bad)?);
            if batch.len() == IMPORT_BATCH {
                let n = batch.len();
                let r = send(std::mem::take(&mut batch))
                    .await
                    .map_err(|e| anyhow!("{e} (after {sent} packet(s) were stored)"))?;
                (accepted, duplicates, sent) =
                    (accepted + r.accepted, duplicates + r.duplicates, sent + n);
            }
        }
        if !batch.is_empty() {
            let r = send(batch)
                .await
                .map_err(|e| anyhow!("{e} (after {sent} packet(s) were stored)"))?;
            (accepted, duplicates) = (accepted + r.accepted, duplicates + r.duplicates);
        }
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
