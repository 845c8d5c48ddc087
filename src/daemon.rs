//! `bump node`: start-up, the background tasks, and clean shutdown of a node process.
//!
//! Start-up order: create the network folder, open the store (its sled database locks it: a second node on
//! the same datadir fails here with a clear error), write a fresh `.cookie`, start the RPC
//! server, then publish its address in `rpc.addr`. Shutdown (SIGINT, SIGTERM or `bump stop`)
//! runs the other way round and flushes the store last.

use crate::config::{COOKIE_FILE, COOKIE_USER, P2P_ADDR_FILE, RPC_ADDR_FILE, STORE_DIR};
use crate::mix::loop_monitor::LoopMonitor;
use crate::mix::mixer::{load_or_create_key, MixError};
use crate::mix::pool::PoolLimits;
use crate::mix::postage::Postage;
use crate::mix::send::SendService;
use crate::mix::{Mixer, MixerParts};
use crate::node::{Limits, Node, NodeInfo};
use crate::p2p::{Overlay, P2pConfig};
use crate::rpc::auth::{write_cookie, Credentials};
use crate::store::{Store, StoreConfig, StoreError};
use namecoin::Network;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything `bump node` needs, after flags and `bump.conf` were merged.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub network: Network,
    pub netdir: PathBuf,
    pub rpc_bind: SocketAddr,
    pub rpc_user_password: Option<(String, String)>,
    pub limits: Limits,
    pub store: StoreConfig,
    pub sweep_interval: Duration,
    pub p2p: P2pConfig,
    /// Cover traffic (dummies); `None` = off.
    pub cover: Option<crate::mix::cover::CoverConfig>,
    /// Mixes for cover traffic and loop packets (`--cover-via`); empty = the directory's
    /// fee-free mixes when the node has namecoind.
    pub own_via: Vec<secp256k1::PublicKey>,
    /// Loop packets and the (n-1) alarm; `per_minute` 0 = off.
    pub loops: crate::mix::loops::LoopConfig,
    /// namecoind link (names, directory, postage); `None` = none.
    pub chain: Option<ChainSettings>,
    /// Publish our mix record on the bus and route through the mixes others publish.
    pub announce_mix: bool,
    /// Remote mixes per send that names neither `via` nor `hops` (without namecoind: capped
    /// at the mixes known from the bus).
    pub default_hops: usize,
}

/// Everything about namecoind and what the node does with it.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub namecoind: crate::names::NamecoindSettings,
    /// Satoshis per packet asked in our mix record (0 = free).
    pub mix_fee: u64,
    /// Drop packets without valid postage.
    pub require_postage: bool,
    /// Confirmations postage needs (0 = mempool is enough).
    pub postage_confirmations: u64,
    /// How often the publisher looks at the chain.
    pub poll: Duration,
    /// Mixes per message when a send names neither `via` nor `hops`.
    pub default_hops: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {path}: {err}")]
    CreateDir { path: PathBuf, err: std::io::Error },
    #[error("cannot open the store in {path}: {err} (is another `bump node` using this datadir?)")]
    Store { path: PathBuf, err: StoreError },
    #[error("cannot write {path}: {err}")]
    WriteFile { path: PathBuf, err: std::io::Error },
    #[error("loop ledger: {0}")]
    Loops(String),
    #[error("cannot listen for P2P on {addr}: {err}")]
    P2pBind { addr: String, err: std::io::Error },
    #[error("cannot listen for RPC on {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("mix: {0}")]
    Mix(#[from] MixError),
    #[error("flushing the store at shutdown failed: {0}")]
    Flush(StoreError),
}

/// Run a node until SIGINT, SIGTERM or `bump stop`.
pub async fn run(settings: DaemonSettings) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    let mut sigterm = signal_term().map_err(DaemonError::Signal)?;
    let watcher = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            _ = sigterm.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = watcher.cancelled() => {},
        }
        watcher.cancel();
    });
    run_until(settings, shutdown).await
}

/// Run a node until `shutdown` is cancelled (by the caller or by `bump stop`).
pub async fn run_until(
    settings: DaemonSettings,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let running = start(settings, shutdown.clone()).await?;
    shutdown.cancelled().await;
    running.finish().await
}

/// A started node: its parts, for callers (tests, benchmarks, the demo) that drive it in-process.
pub struct Running {
    pub node: Arc<Node>,
    pub overlay: Arc<Overlay>,
    pub mix: Arc<Mixer>,
    pub rpc_addr: std::net::SocketAddr,
    handle: jsonrpsee::server::ServerHandle,
    sweeper: tokio::task::JoinHandle<()>,
    netdir: PathBuf,
    shutdown: CancellationToken,
}

impl Running {
    /// Stop everything started by [`start`] and flush the store.
    pub async fn finish(self) -> Result<(), DaemonError> {
        let Running {
            node,
            overlay,
            mix,
            handle,
            sweeper,
            netdir,
            shutdown,
            ..
        } = self;
        shutdown.cancel();
        let _ = handle.stop();
        handle.stopped().await;
        let _ = sweeper.await;
        overlay.save_peers();
        let _ = std::fs::remove_file(netdir.join(P2P_ADDR_FILE));
        let _ = std::fs::remove_file(netdir.join(RPC_ADDR_FILE));
        let _ = std::fs::remove_file(netdir.join(COOKIE_FILE));
        let store = node.store().clone();
        store.durable().await.map_err(DaemonError::Flush)?;
        store.flush_blocking().map_err(DaemonError::Flush)?;
        tracing::info!(packets = store.len(), "store flushed; bye");
        // The store (and its lock on the datadir) is closed when the last task holding it
        // has seen the shutdown and ended: wait for that (bounded), so that a node started
        // right after in the same process can open the datadir.
        let weak = Arc::downgrade(&store);
        drop((store, node, overlay, mix));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if weak.strong_count() > 0 {
            tracing::warn!("tasks still hold the store 10 s after shutdown");
        }
        Ok(())
    }
}

/// Start a node: store, P2P overlay, RPC server, sweeper. It runs until `shutdown` is
/// cancelled; then call [`Running::finish`].
pub async fn start(
    settings: DaemonSettings,
    shutdown: CancellationToken,
) -> Result<Running, DaemonError> {
    let netdir = settings.netdir.clone();
    std::fs::create_dir_all(&netdir).map_err(|err| DaemonError::CreateDir {
        path: netdir.clone(),
        err,
    })?;
    let store_path = netdir.join(STORE_DIR);
    let store_cfg = crate::store::StoreConfig {
        base_work: crate::pow::base_work(settings.network),
        ..settings.store.clone()
    };
    let store = Store::open(&store_path, &store_cfg).map_err(|err| DaemonError::Store {
        path: store_path.clone(),
        err,
    })?;
    let store = Arc::new(store);
    tracing::info!(network = %settings.network, datadir = %netdir.display(), packets = store.len(), "store opened");

    let info = NodeInfo {
        network: settings.network,
        netdir: netdir.clone(),
    };
    let node = Arc::new(Node::new(
        store.clone(),
        settings.limits.clone(),
        info,
        shutdown.clone(),
    ));

    let overlay = Overlay::start(node.clone(), settings.p2p.clone(), shutdown.clone())
        .await
        .map_err(|err| DaemonError::P2pBind {
            addr: settings
                .p2p
                .listen
                .map(|a| a.to_string())
                .unwrap_or_default(),
            err,
        })?;
    if let Some(a) = overlay.listen_addr() {
        let p2p_path = netdir.join(P2P_ADDR_FILE);
        std::fs::write(&p2p_path, format!("{a}\n")).map_err(|err| DaemonError::WriteFile {
            path: p2p_path,
            err,
        })?;
    }

    // Every node is a mix: its key is made on first start. What the mixer needs (postage
    // checks, the loop monitor) is built first and handed to it.
    let mix_key = load_or_create_key(&netdir)?;
    let mix_public = secp256k1::PublicKey::from_secret_key(secp256k1::SECP256K1, &mix_key);
    let (names, postage) = match &settings.chain {
        Some(cs) => {
            let (names, postage) = start_chain(cs, &settings, &node, mix_public, &shutdown)?;
            (Some(names), Some(postage))
        }
        None => (None, None),
    };
    // One send service for user sends, cover and loops. Our own traffic goes through
    // --cover-via mixes, else fee-free directory mixes.
    let book = settings.announce_mix.then(|| {
        let book = crate::mix::gossip::MixBook::new(node.clone(), mix_key);
        tokio::spawn(book.clone().run(Duration::from_secs(2), shutdown.clone()));
        book
    });
    let sender = Arc::new(SendService::new(
        node.clone(),
        names.clone(),
        settings.own_via.clone(),
        book,
        settings.default_hops,
    ));
    let own_route = sender.own_route().cloned();
    let loops = match (&own_route, settings.loops.per_minute > 0.0) {
        (Some(route), true) => {
            let monitor = Arc::new(
                LoopMonitor::open(node.store(), settings.loops.window)
                    .map_err(|e| DaemonError::Loops(e.to_string()))?,
            );
            Some((monitor, route.clone()))
        }
        (None, true) => {
            tracing::info!(
                "loop packets off: no mixes to route them through (give --cover-via or --namecoind)"
            );
            None
        }
        _ => None,
    };
    let mix = Mixer::new(
        node.clone(),
        mix_key,
        PoolLimits::default(),
        MixerParts {
            postage,
            loops: loops.as_ref().map(|(m, _)| m.clone()),
        },
    )?;
    tracing::info!(mix_tag = %mix.tag(), "mix ready (public key: `bump mix`)");
    sender.attach_mixer(mix.clone());
    sender.set_cover(
        settings.cover.as_ref().is_some_and(|c| c.per_minute > 0.0) && own_route.is_some(),
    );
    if let Some((monitor, route)) = loops {
        tokio::spawn(crate::mix::loops::run(
            mix.clone(),
            sender.clone(),
            monitor,
            route,
            settings.loops.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(mix.clone().run(shutdown.clone()));
    if let (Some(cover), Some(route)) = (settings.cover.clone(), own_route) {
        tokio::spawn(crate::mix::cover::run(
            sender.clone(),
            cover,
            route,
            shutdown.clone(),
        ));
    }

    let cookie_path = netdir.join(COOKIE_FILE);
    let cookie = write_cookie(&cookie_path).map_err(|err| DaemonError::WriteFile {
        path: cookie_path.clone(),
        err,
    })?;
    let mut pairs = vec![(COOKIE_USER.to_string(), cookie)];
    if let Some(up) = &settings.rpc_user_password {
        pairs.push(up.clone());
    }
    // Base64 grows data by 4/3; leave room for JSON around it.
    let max_body = (settings.limits.max_message as u64 * 4 / 3 + (1 << 20))
        .max(10 << 20)
        .min(u32::MAX as u64) as u32;
    let (addr, handle) = crate::rpc::server::start(
        crate::rpc::server::RpcImpl {
            node: node.clone(),
            page_bytes: crate::rpc::server::page_bytes(max_body),
            sender: sender.clone(),
            overlay: Some(overlay.clone()),
            mix: Some(mix.clone()),
            names,
            sealed_skipped: Default::default(),
        },
        settings.rpc_bind,
        Credentials::new(&pairs),
        max_body,
    )
    .await
    .map_err(|err| DaemonError::Bind {
        addr: settings.rpc_bind,
        err,
    })?;
    let addr_path = netdir.join(RPC_ADDR_FILE);
    std::fs::write(&addr_path, format!("{addr}\n")).map_err(|err| DaemonError::WriteFile {
        path: addr_path.clone(),
        err,
    })?;
    tracing::info!(%addr, "RPC server listening (auth: cookie in {})", cookie_path.display());

    let sweeper = tokio::spawn(sweep_loop(
        store.clone(),
        settings.sweep_interval,
        shutdown.clone(),
    ));

    Ok(Running {
        node,
        overlay,
        mix,
        rpc_addr: addr,
        handle,
        sweeper,
        netdir,
        shutdown,
    })
}

/// Connect the node to namecoind: directory, publisher, postage checks.
fn start_chain(
    cs: &ChainSettings,
    settings: &DaemonSettings,
    node: &Arc<Node>,
    mix_public: secp256k1::PublicKey,
    shutdown: &CancellationToken,
) -> Result<(Arc<crate::names::NamesCtx>, Arc<Postage>), DaemonError> {
    let chain = crate::names::Chain::new(&cs.namecoind, settings.network, settings.netdir.clone());
    let publisher =
        crate::names::publish::Publisher::new(chain.clone(), &settings.netdir, mix_public);
    tokio::spawn(publisher.clone().run(cs.poll, shutdown.clone()));
    let p = publisher.clone();
    let postage = Postage::open(
        chain.client.clone(),
        node.store(),
        crate::mix::postage::PostagePolicy {
            fee: cs.mix_fee,
            require: cs.require_postage,
            min_conf: cs.postage_confirmations,
        },
        Box::new(move || p.pay_addresses()),
    )
    .map_err(|e| DaemonError::Mix(e.into()))?;
    // Say at once whether namecoind answers; the node runs (and floods) either way.
    let client = chain.client.clone();
    tokio::spawn(async move {
        match client.getblockchaininfo().await {
            Ok(i) => {
                tracing::info!(chain = %i.chain, blocks = i.blocks, url = client.url(), "namecoind reachable")
            }
            Err(e) => tracing::warn!(
                url = client.url(),
                "namecoind: {e}; names and postage wait for it, flooding goes on"
            ),
        }
    });
    Ok((
        Arc::new(crate::names::NamesCtx {
            chain,
            publisher,
            default_hops: cs.default_hops,
        }),
        Arc::new(postage),
    ))
}

#[cfg(unix)]
fn signal_term() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
}

async fn sweep_loop(store: Arc<Store>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = store.clone();
        let now = crate::unix_now();
        match tokio::task::spawn_blocking(move || s.sweep_expired(now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                if let Err(e) = store.durable().await {
                    tracing::warn!("flush after sweep failed: {e}");
                }
                tracing::info!(
                    removed = n,
                    left = store.len(),
                    bytes_on_disk = store.size_on_disk(),
                    "expired packets swept"
                );
            }
            Ok(Err(e)) => tracing::warn!("expiry sweep failed: {e}"),
            Err(e) => tracing::warn!("expiry sweep task failed: {e}"),
        }
    }
}
