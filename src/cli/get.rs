//! Reading a tag: `bump get` (messages byte-exact to stdout, or their list, or the raw
//! packets) and `bump watch` (each new complete message as a JSON line, over WebSocket).

use super::ctx::{write_stdout, Ctx, B64, CLIENT_MAX_BODY};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::rpc::api::{BumpApiClient, GetOptions};
use bump::rpc::client::classify;
use bump::tag::Tag;
use clap::Args;
use jsonrpsee::core::client::SubscriptionClientT;
use std::io::Write;

#[derive(Args)]
pub struct GetArgs {
    /// Print the tag's raw packets as JSON lines (interchange form) instead
    #[arg(long, conflicts_with_all = ["partial", "list"])]
    json: bool,
    /// List incomplete messages (id, parts held/needed) instead of printing data
    #[arg(long, conflicts_with = "list")]
    partial: bool,
    /// List complete messages (id, size, parts) instead of printing data
    #[arg(long)]
    list: bool,
    /// Only the most recently completed message
    #[arg(long)]
    last: bool,
    /// Only the message with this id (as printed by `bump send`)
    #[arg(long, value_name = "MSGID")]
    id: Option<String>,
    /// Read the sealed messages of this group of the keyring instead of a TAG (with --json:
    /// one JSON line per message with sender, signature status, time and data)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["partial", "list", "last", "id"])]
    group: Option<String>,
    #[arg(required_unless_present = "group")]
    tag: Option<String>,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Watch the sealed messages of this group of the keyring instead of a TAG: each one is
    /// opened here and printed as a JSON line (sender, signature, time, data)
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    tag: Option<String>,
    /// Exit after this many messages
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

/// Write a tag's packets as JSON lines (interchange form) to `out`, a page at a time, so a tag
/// of any size is read with bounded memory. Returns how many packets were written.
pub async fn write_packet_lines(ctx: &Ctx, tag: Tag, out: &mut dyn Write) -> Result<usize> {
    let client = ctx.client()?;
    let mut after = None;
    let mut n = 0;
    let mut warned = false;
    loop {
        let page = client
            .packet_page(tag.to_hex(), after, None)
            .await
            .map_err(classify)?;
        if !page.damaged.is_empty() && !warned {
            warn_damaged(&page.damaged);
            warned = true;
        }
        let mut buf = String::new();
        for p in &page.packets {
            buf.push_str(&serde_json::to_string(p)?);
            buf.push('\n');
        }
        out.write_all(buf.as_bytes())?;
        n += page.packets.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(n)
}

/// Tell the user that some of a tag's packets are damaged on disk, and where.
fn warn_damaged(damaged: &[String]) {
    let mut files: Vec<&str> = damaged.iter().map(|s| s.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    eprintln!(
        "bump: warning: {} packet(s) under this tag are damaged on disk (segment {}); the messages they belong to cannot be complete",
        damaged.len(),
        files.join(", ")
    );
}

pub async fn run(ctx: &Ctx, a: GetArgs) -> Result<()> {
    if let Some(g) = &a.group {
        return super::sealed::get_group(ctx, g, a.json).await;
    }
    let Some(tag) = &a.tag else {
        bail!("give a TAG or --group NAME");
    };
    let tag = Tag::from_arg(tag)?;
    if a.json {
        write_packet_lines(ctx, tag, &mut std::io::stdout().lock()).await?;
        return Ok(());
    }
    let client = ctx.client()?;
    let mut after = None;
    let mut printed = 0usize;
    loop {
        let opts = GetOptions {
            msgid: a.id.clone(),
            last: a.last,
            no_data: a.partial || a.list,
            after,
            max_bytes: None,
        };
        let r = client
            .get_messages(tag.to_hex(), Some(opts))
            .await
            .map_err(classify)?;
        let first = after.is_none();
        if first && !r.damaged.is_empty() {
            warn_damaged(&r.damaged);
        }
        if a.partial {
            let mut out = String::new();
            for p in &r.partial {
                out.push_str(&format!("{} {}/{} parts\n", p.msgid, p.have, p.count));
            }
            return write_stdout(out.as_bytes());
        }
        if first && !a.list && !r.partial.is_empty() {
            eprintln!(
                "bump: note: {} incomplete message(s) under this tag are not printed; `bump get --partial` lists them",
                r.partial.len()
            );
        }
        if first && r.messages.is_empty() {
            match &a.id {
                Some(id) => bail!("no complete message {id} under tag {tag}"),
                None => bail!("no complete message under tag {tag}"),
            }
        }
        // A page at a time: memory stays bounded by the node's page size.
        let mut out = Vec::new();
        for m in &r.messages {
            if a.list {
                out.extend(format!("{} {} bytes {} parts\n", m.msgid, m.size, m.parts).bytes());
            } else {
                out.extend(B64.decode(&m.data).context("node sent malformed base64")?);
            }
        }
        write_stdout(&out)?;
        printed += r.messages.len();
        match (r.more, r.messages.last()) {
            (true, Some(m)) => after = Some(m.seq),
            _ => break,
        }
    }
    tracing::debug!(printed, "messages written");
    Ok(())
}

pub async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<()> {
    if let Some(g) = &a.group {
        return super::sealed::watch_group(ctx, g, a.count).await;
    }
    let Some(tag) = &a.tag else {
        bail!("give a TAG or --group NAME");
    };
    let tag = Tag::from_arg(tag)?;
    let ws = ctx.target()?.ws(CLIENT_MAX_BODY).await?;
    let mut sub: jsonrpsee::core::client::Subscription<serde_json::Value> = ws
        .subscribe(
            "bump_subscribe",
            jsonrpsee::rpc_params![tag.to_hex()],
            "bump_unsubscribe",
        )
        .await
        .map_err(classify)?;
    let mut seen = 0;
    while a.count.map(|c| seen < c).unwrap_or(true) {
        match sub.next().await {
            Some(Ok(v)) => {
                println!("{v}");
                std::io::stdout().flush()?;
                seen += 1;
            }
            Some(Err(e)) => bail!("subscription error: {e}"),
            None => bail!("the node closed the subscription"),
        }
    }
    Ok(())
}
