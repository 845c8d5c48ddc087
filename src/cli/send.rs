//! `bump send TAG FILE`: checks the arguments here (tag, durations, Tau level) so mistakes
//! are caught before the node is asked, then hands the bytes to the node's `bump_send`.

use super::ctx::{read_input, Ctx, TooLarge, B64, CLIENT_MAX_BODY};
use anyhow::Result;
use base64::Engine as _;
use bump::mix::tau::{Tau, TauLevel};
use bump::rpc::api::{BumpApiClient, SealedSendParams, SendParams};
use bump::rpc::client::classify;
use bump::settings::parse_duration;
use bump::tag::Tag;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct SendArgs {
    /// Time to live, e.g. 3600, 90m, 12h, 2d [default: the node's maximum, 48h]
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Route through these mixes, first hop first: Namecoin names (bump/alice, see `bump
    /// mixes`) or public keys (from `bump mix`). Each part of the message gets its own onion.
    #[arg(
        long,
        value_name = "MIX,MIX,...",
        value_delimiter = ',',
        conflicts_with = "hops"
    )]
    via: Vec<String>,
    /// Route through N random distinct mixes from the Namecoin directory; 0 = the node
    /// publishes the message itself [default: 3 with --namecoind on the node, else 0]
    #[arg(long, value_name = "N")]
    hops: Option<usize>,
    /// Tau level at each mix: none (crowd 0, no delay), low (crowd 2, 10 s), standard
    /// (crowd 5, 30 s), high (crowd 20, 5 min). A mix holds your packet until that many
    /// others entered its pool after it AND the delay passed. Use a level: exact values
    /// that others do not use set your packets apart [default: standard]
    #[arg(long, value_name = "LEVEL")]
    tau: Option<String>,
    /// Expert: Tau minimum crowd at each mix, overriding the level's
    #[arg(long, value_name = "K")]
    crowd: Option<u64>,
    /// Expert: Tau minimum delay at each mix, e.g. 30s, 5m, overriding the level's
    #[arg(long, value_name = "DURATION")]
    delay: Option<String>,
    /// Postage for each hop as TXID:VOUT (`-` to skip a hop), first hop first. Hops whose
    /// record asks a fee and have none here are paid from the node's namecoind wallet
    #[arg(long, value_name = "TXID:VOUT,...", value_delimiter = ',')]
    postage: Vec<String>,
    /// Seal the message for this group of the keyring (`bump group`): encrypted, under the
    /// group's tag of the day; no TAG argument then
    #[arg(long, value_name = "NAME", conflicts_with = "to")]
    group: Option<String>,
    /// Seal the message to this identity (`bumpid1…`, from `bump id show`); repeatable. It
    /// goes to the recipient's inbox bucket tag; no TAG argument then
    #[arg(long, value_name = "ID")]
    to: Vec<String>,
    /// Sign the sealed message with this identity of the keyring (the signature is inside the
    /// ciphertext: only readers see it) [default: unsigned]
    #[arg(long, value_name = "NAME")]
    from: Option<String>,
    /// TAG FILE, or FILE alone with --group/--to (`-` for stdin)
    #[arg(value_name = "TAG FILE", required = true, num_args = 1..=2)]
    args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: SendArgs) -> Result<()> {
    let sealed = a.group.is_some() || !a.to.is_empty();
    let (tag, file) = match (sealed, a.args.as_slice()) {
        (false, [tag, file]) => (Some(Tag::from_arg(tag)?), PathBuf::from(file)),
        (true, [file]) => (None, PathBuf::from(file)),
        (false, _) => anyhow::bail!("give TAG and FILE (or --group NAME / --to ID and FILE)"),
        (true, _) => anyhow::bail!(
            "with --group or --to give only FILE: the tag comes from the group or the recipient"
        ),
    };
    if a.from.is_some() && !sealed {
        anyhow::bail!("--from signs sealed messages: use it with --group or --to");
    }
    let ttl = a.ttl.as_deref().map(parse_duration).transpose()?;
    let delay = a
        .delay
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .map(u64::from);
    let tau = Tau::resolve(a.tau.as_deref(), a.crowd, delay)
        .map_err(|e| anyhow::anyhow!("--tau: {e}"))?;
    if (a.crowd.is_some() || delay.is_some()) && tau.standard().is_none() {
        eprintln!(
            "warning: crowd {}, delay {}s is not a standard Tau level ({}); mixes and observers can tell these packets from others",
            tau.crowd,
            tau.delay_secs,
            TauLevel::names()
        );
    }

    let client = ctx.client()?;
    let status = client.status().await.map_err(classify)?;
    let limit = status.max_message_size;
    let data = read_input(&file, limit).map_err(|e| match e.downcast_ref::<TooLarge>() {
        Some(t) => anyhow::anyhow!(
            "{} is over the node's message limit of {} bytes (see `bump node --max-message-size`)",
            t.name,
            limit
        ),
        None => e,
    })?;
    let route = send_params(
        &a,
        (ttl, delay),
        tag.map(|t| t.to_hex()).unwrap_or_default(),
        &data,
    );
    if tag.is_some() {
        println!("{}", send_one(ctx, &client, route, data.len()).await?);
        return Ok(());
    }
    // Sealed by the node with the keyring of this datadir, then sent as above (one envelope
    // per recipients' inbox bucket).
    let params = SealedSendParams::sealing(
        route,
        a.group.clone(),
        (!a.to.is_empty()).then(|| a.to.clone()),
        a.from.clone(),
    );
    let send_client = waiting_client(ctx, data.len(), a.to.len().max(1))?;
    for r in send_client.sealed_send(params).await.map_err(classify)? {
        if let Some(n) = &r.note {
            eprintln!("bump: {n}");
        }
        println!("{}", r.msgid);
    }
    Ok(())
}

/// The `bump_send` request for `data` under `tag` (hex) with this command's routing options
/// (`ttl` and Tau `delay` already parsed).
fn send_params(
    a: &SendArgs,
    (ttl, delay): (Option<u32>, Option<u64>),
    tag: String,
    data: &[u8],
) -> SendParams {
    SendParams {
        tag,
        data: B64.encode(data),
        ttl,
        via: (!a.via.is_empty()).then(|| a.via.clone()),
        hops: a.hops,
        tau: a.tau.clone(),
        crowd: a.crowd,
        delay,
        postage: (!a.postage.is_empty()).then(|| a.postage.clone()),
    }
}

/// A client that waits for a send of `bytes` (`copies` times over) as long as solving its
/// proof of work may take (protocol.md §1.2).
fn waiting_client(
    ctx: &Ctx,
    bytes: usize,
    copies: usize,
) -> Result<jsonrpsee::http_client::HttpClient> {
    let parts = bytes.div_ceil(bump::message::PART_DATA_LEN).max(1);
    let wait = ctx.timeout + SOLVE_ALLOWANCE * (parts * copies) as u32;
    Ok(ctx.target()?.with_timeout(wait).http(CLIENT_MAX_BODY)?)
}

/// Hand one message to the node's `bump_send`, with a progress line on a terminal while its
/// proof of work is solved; returns its id.
async fn send_one(
    ctx: &Ctx,
    client: &jsonrpsee::http_client::HttpClient,
    params: SendParams,
    bytes: usize,
) -> Result<String> {
    let parts = bytes.div_ceil(bump::message::PART_DATA_LEN).max(1);
    let send_client = waiting_client(ctx, bytes, 1)?;
    let progress = (parts >= PROGRESS_FROM && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(show_progress(client.clone())));
    let r = send_client.send(params).await.map_err(classify);
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let r = r?;
    if let Some(n) = &r.note {
        eprintln!("bump: {n}");
    }
    Ok(r.msgid)
}

/// Parts from which `bump send` shows a progress line.
const PROGRESS_FROM: usize = 32;
/// Extra time allowed per part for its proof of work (at 4× the base on main, one core:
/// about 0.2 s; this leaves room for a slower machine or a risen floor).
const SOLVE_ALLOWANCE: Duration = Duration::from_millis(500);

/// Poll the node's solving counters and redraw one line on stderr until aborted.
async fn show_progress(client: jsonrpsee::http_client::HttpClient) {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(s) = client.status().await else {
            continue;
        };
        let Some(a) = s.admission else { return };
        if a.solving_total == 0 {
            continue;
        }
        eprint!(
            "\r\x1b[Ksolving proof of work: {}/{} packets ({} s, floor {})",
            a.solving_done,
            a.solving_total,
            started.elapsed().as_secs(),
            a.floor
        );
    }
}
