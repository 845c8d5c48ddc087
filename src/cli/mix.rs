//! Mix keys and the mix directory: `bump keygen` and `bump tag` (offline, no node needed) and
//! `bump mixes` (the Namecoin directory as the node sees it).

use super::ctx::Ctx;
use anyhow::Result;
use bump::mix::mixer::{load_or_create_key, KEY_FILE};
use bump::rpc::api::BumpApiClient;
use bump::rpc::client::classify;
use bump::settings::Base;
use bump::tag::Tag;
use clap::Args;

#[derive(Args)]
pub struct MixesArgs {
    /// Ask namecoind now instead of using the cached listing
    #[arg(long)]
    refresh: bool,
    /// Print the raw JSON
    #[arg(long)]
    json: bool,
}

/// `bump tag TEXT`.
pub fn tag(arg: &str) -> Result<()> {
    println!("{}", Tag::from_arg(arg)?);
    Ok(())
}

/// `bump keygen`: create the mix key if there is none; print it either way.
pub fn keygen(base: &Base) -> Result<()> {
    let path = base.netdir.join(KEY_FILE);
    let existed = path.exists();
    let key = load_or_create_key(&base.netdir)?;
    let public = secp256k1::PublicKey::from_secret_key(secp256k1::SECP256K1, &key);
    println!("public key   {}", hex::encode(public.serialize()));
    println!("mix tag      {}", bump::onion::layer::mix_tag(&public));
    eprintln!(
        "{} {}",
        if existed {
            "existing key in"
        } else {
            "new key written to"
        },
        path.display()
    );
    Ok(())
}

pub async fn mixes(ctx: &Ctx, a: MixesArgs) -> Result<()> {
    let l = ctx
        .client()?
        .mixes(Some(a.refresh))
        .await
        .map_err(classify)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    println!(
        "directory at height {}{}: {} mixes, {} rejected",
        l.height,
        if l.stale {
            " (stale: namecoind unreachable)"
        } else {
            ""
        },
        l.mixes.len(),
        l.rejected.len()
    );
    for m in &l.mixes {
        println!(
            "{:<24} fee {:>8} sat  key {}  expires in {} blocks{}",
            m.name,
            m.record.fee,
            m.record.key,
            m.expires_in.unwrap_or(0),
            m.record
                .p2p
                .as_deref()
                .map(|c| format!("  p2p {c}"))
                .unwrap_or_default()
        );
    }
    for r in &l.rejected {
        println!("{:<24} REJECTED: {}", r.name, r.reason);
    }
    Ok(())
}
