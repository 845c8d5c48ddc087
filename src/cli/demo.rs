//! `bump demo`: a self-contained walk through BuMP on this machine, printing each step.
//!
//! It starts a regtest node in-process in a temporary datadir on a free loopback port, sends a
//! message under a human tag through the node's JSON-RPC API exactly as `bump send` does,
//! reads it back as `bump get` does, checks the bytes, restarts the node to show the message
//! survived, and removes its temporary data. Exit status 0 means every step worked.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::config::{network_dir, RPC_ADDR_FILE};
use bump::daemon::{run_until, DaemonSettings};
use bump::node::Limits;
use bump::rpc::api::{BumpApiClient, GetOptions, SendParams};
use bump::rpc::client::{classify, Target};
use bump::store::StoreConfig;
use bump::tag::Tag;
use namecoin::Network;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct RunningNode {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), bump::daemon::DaemonError>>,
    target: Target,
}

async fn start_node(datadir: &Path) -> Result<RunningNode> {
    let netdir = network_dir(datadir, Network::Regtest);
    let _ = std::fs::remove_file(netdir.join(RPC_ADDR_FILE));
    let settings = DaemonSettings {
        network: Network::Regtest,
        netdir: netdir.clone(),
        rpc_bind: "127.0.0.1:0".parse()?,
        rpc_user_password: None,
        limits: Limits::default(),
        store: StoreConfig {
            cache_bytes: 8 << 20,
            ..StoreConfig::default()
        },
        sweep_interval: Duration::from_secs(60),
        p2p: bump::p2p::P2pConfig::new(Network::Regtest),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_until(settings, stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if task.is_finished() {
            task.await??;
            bail!("the node stopped during start-up");
        }
        if netdir.join(RPC_ADDR_FILE).exists() {
            if let Ok(target) = Target::locate(&netdir, Network::Regtest, None, None) {
                return Ok(RunningNode { stop, task, target });
            }
        }
        if Instant::now() > deadline {
            bail!("the node did not start within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl RunningNode {
    async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        self.task.await.context("node task failed")??;
        Ok(())
    }
}

pub async fn run() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("bump-demo-")
        .tempdir()
        .context("cannot create a temp dir")?;
    println!("[demo] datadir {}", dir.path().display());

    println!("[demo] 1. starting a regtest node on a free loopback port");
    let node = start_node(dir.path()).await?;
    println!("[demo]    node RPC at {} (cookie auth)", node.target.addr);

    let human = "#bump-demo";
    let tag = Tag::from_arg(human)?;
    println!("[demo] 2. human tag {human:?} is tag {tag} (HASH160 of its bytes)");

    let message = format!(
        "Hello from the BuMP demo. Every node stores every packet, so reading a tag tells nobody who you are.\n{}",
        "padding line to make this span more than one 1 KiB packet.\n".repeat(30)
    );
    let client = node.target.http(1 << 30)?;
    let sent = client
        .send(SendParams {
            tag: tag.to_hex(),
            data: B64.encode(message.as_bytes()),
            ttl: Some(3600),
        })
        .await
        .map_err(classify)?;
    println!(
        "[demo] 3. sent {} bytes as message {} in {} packets of 1024 bytes (expires at unix {})",
        sent.bytes, sent.msgid, sent.packets, sent.expires
    );

    let got = client
        .get_messages(tag.to_hex(), Some(GetOptions::default()))
        .await
        .map_err(classify)?;
    let data = match got.messages.first() {
        Some(m) => B64.decode(&m.data)?,
        None => bail!("the message did not come back"),
    };
    if data != message.as_bytes() {
        bail!("the message came back different");
    }
    println!("[demo] 4. read it back: {} bytes, byte-exact", data.len());

    println!("[demo] 5. restarting the node: acknowledged packets are on disk");
    node.shutdown().await?;
    let node = start_node(dir.path()).await?;
    let client = node.target.http(1 << 30)?;
    let got = client
        .get_messages(tag.to_hex(), None)
        .await
        .map_err(classify)?;
    let again = match got.messages.first() {
        Some(m) => B64.decode(&m.data)?,
        None => bail!("the message was lost across the restart"),
    };
    if again != message.as_bytes() {
        bail!("the message changed across the restart");
    }
    println!("[demo]    still there after restart: {} bytes", again.len());
    let status = client.status().await.map_err(classify)?;
    println!(
        "[demo]    node holds {} packets, {} bytes on disk",
        status.packets, status.store_bytes_on_disk
    );
    node.shutdown().await?;

    println!(
        "[demo] done in {:.1} s; temporary data removed",
        started.elapsed().as_secs_f64()
    );
    println!("[demo] try it yourself: `bump --regtest node` in one shell, then");
    println!("[demo]   echo hi | bump --regtest send '#mytag' -  &&  bump --regtest get '#mytag'");
    Ok(())
}
