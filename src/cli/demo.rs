//! `bump demo`: a self-contained walk through BuMP on this machine, printing each step.
//!
//! It starts three regtest nodes in-process, each in its own temporary datadir, on free
//! loopback ports, linked in a line A — B — C over the P2P overlay. It sends a message under a
//! human tag at A through the JSON-RPC API exactly as `bump send` does, waits until it has
//! flooded to C, reads it there as `bump get` does and checks the bytes, restarts C to show the
//! message survived on disk, and removes its temporary data. Exit status 0 means every step
//! worked.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bump::daemon::{start, DaemonSettings, Running};
use bump::node::Limits;
use bump::p2p::P2pConfig;
use bump::rpc::api::{BumpApiClient, SendParams};
use bump::rpc::client::{classify, Target};
use bump::store::StoreConfig;
use bump::tag::Tag;
use namecoin::Network;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn start_node(datadir: &Path, connect: Vec<String>) -> Result<(Running, Target)> {
    let netdir = datadir.join("regtest");
    let mut p2p = P2pConfig::new(Network::Regtest);
    p2p.listen = Some("127.0.0.1:0".parse()?);
    p2p.connect = connect;
    p2p.peers_file = Some(netdir.join("peers.json"));
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
        p2p,
        cover: None,
    };
    let running = start(settings, CancellationToken::new()).await?;
    let target = Target::locate(&netdir, Network::Regtest, Some(running.rpc_addr), None)?;
    Ok((running, target))
}

/// The newest complete message under `tag` at a node, if any.
async fn read_message(target: &Target, tag: &Tag) -> Result<Option<Vec<u8>>> {
    let got = target
        .http(1 << 30)?
        .get_messages(tag.to_hex(), None)
        .await
        .map_err(classify)?;
    match got.messages.last() {
        Some(m) => Ok(Some(
            B64.decode(&m.data).context("node sent malformed base64")?,
        )),
        None => Ok(None),
    }
}

pub async fn run() -> Result<()> {
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("bump-demo-")
        .tempdir()
        .context("cannot create a temp dir")?;
    println!("[demo] datadir {}", root.path().display());
    let dirs = [
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    ];

    println!("[demo] 1. starting three regtest nodes on loopback, linked A - B - C");
    let (a, a_rpc) = start_node(&dirs[0], vec![]).await?;
    let a_p2p = a
        .overlay
        .listen_addr()
        .context("A is not listening")?
        .to_string();
    let (b, _b_rpc) = start_node(&dirs[1], vec![a_p2p]).await?;
    let b_p2p = b
        .overlay
        .listen_addr()
        .context("B is not listening")?
        .to_string();
    let (c, c_rpc) = start_node(&dirs[2], vec![b_p2p.clone()]).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.overlay.sync_status().bump_peers < 2 {
        if Instant::now() > deadline {
            bail!("the nodes did not connect within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "[demo]    A {}  B {}  C {}: connected (BuMP handshake over the Namecoin wire protocol)",
        a.overlay
            .listen_addr()
            .map(|x| x.to_string())
            .unwrap_or_default(),
        b_p2p,
        c.overlay
            .listen_addr()
            .map(|x| x.to_string())
            .unwrap_or_default()
    );

    let human = "#bump-demo";
    let tag = Tag::from_arg(human)?;
    println!("[demo] 2. human tag {human:?} is tag {tag} (HASH160 of its bytes)");

    let message = format!(
        "Hello from the BuMP demo. Every node stores every packet, so reading a tag tells nobody who you are.\n{}",
        "padding line to make this span more than one 1 KiB packet.\n".repeat(30)
    );
    let t0 = Instant::now();
    let sent = a_rpc
        .http(1 << 30)?
        .send(SendParams {
            tag: tag.to_hex(),
            data: B64.encode(message.as_bytes()),
            ttl: Some(3600),
            via: None,
            crowd: None,
            delay: None,
        })
        .await
        .map_err(classify)?;
    println!(
        "[demo] 3. sent {} bytes at A as message {} in {} packets of 1024 bytes",
        sent.bytes, sent.msgid, sent.packets
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let data = loop {
        if let Some(d) = read_message(&c_rpc, &tag).await? {
            break d;
        }
        if Instant::now() > deadline {
            bail!("the message did not reach C within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if data != message.as_bytes() {
        bail!("the message reached C different");
    }
    println!(
        "[demo] 4. flooded A -> B -> C in {} ms; read at C: {} bytes, byte-exact",
        t0.elapsed().as_millis(),
        data.len()
    );

    println!("[demo] 5. restarting C: acknowledged packets are on disk");
    c.finish().await?;
    let (c, c_rpc) = start_node(&dirs[2], vec![b_p2p]).await?;
    match read_message(&c_rpc, &tag).await? {
        Some(d) if d == message.as_bytes() => {
            println!("[demo]    still there after restart: {} bytes", d.len())
        }
        Some(_) => bail!("the message changed across the restart"),
        None => bail!("the message was lost across the restart"),
    }
    let status = c_rpc.http(1 << 20)?.status().await.map_err(classify)?;
    println!(
        "[demo]    C holds {} packets, {} bytes on disk",
        status.packets, status.store_bytes_on_disk
    );
    for n in [a, b, c] {
        n.finish().await?;
    }
    drop(root);
    println!(
        "[demo] done in {:.1} s; temporary data removed",
        started.elapsed().as_secs_f64()
    );
    println!("[demo] try it yourself: `bump --regtest node` in one shell, then");
    println!("[demo]   echo hi | bump --regtest send '#mytag' -  &&  bump --regtest get '#mytag'");
    Ok(())
}
