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
    tag: String,
}

#[derive(Args)]
pub struct WatchArgs {
    tag: String,
    /// Exit after this many messages
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

/// The packets of a tag as JSON lines (interchange form).
pub async fn packet_lines(ctx: &Ctx, tag: Tag) -> Result<(String, usize)> {
    let packets = ctx
        .client()?
        .get_packets(tag.to_hex())
        .await
        .map_err(classify)?;
    let mut out = String::new();
    for p in &packets {
        out.push_str(&serde_json::to_string(p)?);
        out.push('\n');
    }
    Ok((out, packets.len()))
}

pub async fn run(ctx: &Ctx, a: GetArgs) -> Result<()> {
    let tag = Tag::from_arg(&a.tag)?;
    if a.json {
        let (out, _) = packet_lines(ctx, tag).await?;
        return write_stdout(out.as_bytes());
    }
    let opts = GetOptions {
        msgid: a.id.clone(),
        last: a.last,
        no_data: a.partial || a.list,
    };
    let r = ctx
        .client()?
        .get_messages(tag.to_hex(), Some(opts))
        .await
        .map_err(classify)?;
    if a.partial {
        let mut out = String::new();
        for p in &r.partial {
            out.push_str(&format!("{} {}/{} parts\n", p.msgid, p.have, p.count));
        }
        return write_stdout(out.as_bytes());
    }
    if a.list {
        let mut out = String::new();
        for m in &r.messages {
            out.push_str(&format!("{} {} bytes {} parts\n", m.msgid, m.size, m.parts));
        }
        return write_stdout(out.as_bytes());
    }
    if !r.partial.is_empty() {
        eprintln!(
            "bump: note: {} incomplete message(s) under this tag are not printed; `bump get --partial` lists them",
            r.partial.len()
        );
    }
    if r.messages.is_empty() {
        match a.id {
            Some(id) => bail!("no complete message {id} under tag {tag}"),
            None => bail!("no complete message under tag {tag}"),
        }
    }
    let mut out = Vec::new();
    for m in &r.messages {
        out.extend(B64.decode(&m.data).context("node sent malformed base64")?);
    }
    write_stdout(&out)
}

pub async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<()> {
    let tag = Tag::from_arg(&a.tag)?;
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
