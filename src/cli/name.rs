//! `bump name publish|status`: this node's mix record as a Namecoin name.

use super::ctx::Ctx;
use anyhow::{bail, Result};
use bump::names::publish::Stage;
use bump::rpc::api::BumpApiClient;
use bump::rpc::client::classify;
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum NameCmd {
    /// Register bump/LABEL with this node's mix key (name_new, 12 blocks, name_firstupdate) and
    /// keep it renewed; resumes after a restart. Changing --fee or --p2p later updates it.
    Publish {
        label: String,
        /// Satoshis each packet must pay this mix (postage) [default: 0 = free]
        #[arg(long, value_name = "SAT")]
        fee: Option<u64>,
        /// Contact to publish, host:port (or an .onion address)
        #[arg(long, value_name = "HOST:PORT")]
        p2p: Option<String>,
        /// Wait until the record is on chain, printing each stage
        #[arg(long)]
        wait: bool,
    },
    /// Show the names this node publishes
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: NameCmd) -> Result<()> {
    match cmd {
        NameCmd::Publish {
            label,
            fee,
            p2p,
            wait,
        } => publish(ctx, label, fee, p2p, wait).await,
        NameCmd::Status { json } => status(ctx, json).await,
    }
}

async fn publish(
    ctx: &Ctx,
    label: String,
    fee: Option<u64>,
    p2p: Option<String>,
    wait: bool,
) -> Result<()> {
    let client = ctx.client()?;
    let s = client
        .name_publish(label.clone(), fee, p2p)
        .await
        .map_err(classify)?;
    println!("{}: {:?}", s.name, s.stage);
    if !wait {
        return Ok(());
    }
    let mut last = (s.stage, s.last_error.clone());
    // Registration takes 13+ blocks: wait as long as that may take on regtest and report
    // every change; stop with Ctrl-C on a slow chain.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let states = client.name_status().await.map_err(classify)?;
        let Some(s) = states.into_iter().find(|x| x.name == s.name) else {
            bail!("publish state vanished")
        };
        if (s.stage, s.last_error.clone()) != last {
            match &s.last_error {
                Some(e) => println!("{}: {:?} (waiting: {e})", s.name, s.stage),
                None => println!("{}: {:?}", s.name, s.stage),
            }
            last = (s.stage, s.last_error.clone());
        }
        if s.stage == Stage::Active {
            return Ok(());
        }
    }
}

async fn status(ctx: &Ctx, json: bool) -> Result<()> {
    let states = ctx.client()?.name_status().await.map_err(classify)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
    } else if states.is_empty() {
        println!("no names published (bump name publish LABEL)");
    } else {
        for s in states {
            println!(
                "{:<24} {:<16} fee {:>8}  height {:<8} expires in {}{}",
                s.name,
                format!("{:?}", s.stage),
                s.fee,
                s.height.map(|h| h.to_string()).unwrap_or("-".into()),
                s.expires_in.map(|h| h.to_string()).unwrap_or("-".into()),
                s.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
