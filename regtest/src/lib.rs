//! Local Namecoin regtest network for BuMP: the embedded chain and how to use a real namecoind.
//!
//! [`Regtest::start`] runs an in-process stand-in for `namecoind -regtest`: a chain with blocks
//! mined on demand (or every `automine`), UTXOs, wallets and names with namecoind's rules
//! ([`chain`]), its JSON-RPC subset with the same JSON shapes, HTTP statuses and error codes
//! ([`rpc`]), and the P2P handshake ([`p2p`]). It writes a cookie the way namecoind does, in
//! `<datadir>/regtest/.cookie`, so a BuMP node is pointed at it exactly as at a real one.
//! `regtest/README.md` tells how to run the same flows against a real namecoind.

pub mod chain;
pub mod p2p;
pub mod rpc;
pub mod script;

pub use chain::Chain;
pub use namecoin::Network;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The network this crate simulates.
pub const NETWORK: Network = Network::Regtest;

#[derive(Debug, Clone)]
pub struct RegtestConfig {
    /// Where `.cookie` goes (in `<datadir>/regtest/`).
    pub datadir: PathBuf,
    /// Loopback address for RPC; port 0 picks one.
    pub rpc_bind: SocketAddr,
    /// Loopback address for P2P; `None` = no P2P listener.
    pub p2p_bind: Option<SocketAddr>,
    /// Mine one block this often (paying a chain-owned address); `None` = only on request.
    pub automine: Option<Duration>,
    pub rpc_user_password: Option<(String, String)>,
}

impl RegtestConfig {
    pub fn new(datadir: &Path) -> RegtestConfig {
        RegtestConfig {
            datadir: datadir.to_path_buf(),
            rpc_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            p2p_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            automine: None,
            rpc_user_password: None,
        }
    }
}

/// A running stand-in. Dropping it (or [`Regtest::stop`]) stops its tasks and removes the
/// cookie, as namecoind does at shutdown.
pub struct Regtest {
    pub rpc_addr: SocketAddr,
    pub p2p_addr: Option<SocketAddr>,
    pub cookie_path: PathBuf,
    pub chain: Arc<Mutex<Chain>>,
    state: Arc<rpc::RpcState>,
    shutdown: CancellationToken,
}

impl Regtest {
    pub async fn start(cfg: RegtestConfig) -> std::io::Result<Regtest> {
        let netdir = cfg.datadir.join("regtest");
        std::fs::create_dir_all(&netdir)?;
        let cookie_path = netdir.join(".cookie");
        let secret: [u8; 32] = rand::random();
        let cookie = format!("__cookie__:{}", hex::encode(secret));
        write_private(&cookie_path, &cookie)?;
        let mut credentials = vec![cookie];
        if let Some((u, p)) = &cfg.rpc_user_password {
            credentials.push(format!("{u}:{p}"));
        }
        let chain = Arc::new(Mutex::new(Chain::new()));
        let state = Arc::new(rpc::RpcState {
            chain: chain.clone(),
            credentials,
            down: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind(cfg.rpc_bind).await?;
        let rpc_addr = listener.local_addr()?;
        tokio::spawn(serve_rpc(listener, state.clone(), shutdown.clone()));
        let p2p_addr = match cfg.p2p_bind {
            Some(a) => {
                let l = TcpListener::bind(a).await?;
                let addr = l.local_addr()?;
                tokio::spawn(p2p::serve(l, chain.clone(), shutdown.clone()));
                Some(addr)
            }
            None => None,
        };
        if let Some(every) = cfg.automine {
            let chain = chain.clone();
            let stop = shutdown.clone();
            let miner = {
                let mut c = chain.lock().unwrap_or_else(|e| e.into_inner());
                let _ = c.create_wallet("__miner__");
                let a = c.new_address("__miner__").expect("wallet made above");
                script::address_to_script(&a, chain::P2PKH_PREFIX, chain::P2SH_PREFIX)
                    .expect("ours")
            };
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {
                            chain.lock().unwrap_or_else(|e| e.into_inner()).mine(1, &miner);
                        }
                    }
                }
            });
        }
        tracing::info!(%rpc_addr, ?p2p_addr, "embedded regtest chain running");
        Ok(Regtest {
            rpc_addr,
            p2p_addr,
            cookie_path,
            chain,
            state,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// Mine `n` blocks to a fresh address of `wallet` (created if missing); returns the height.
    pub fn mine_to_wallet(&self, wallet: &str, n: u32) -> u32 {
        let mut c = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        if !c.wallets.contains_key(wallet) {
            let _ = c.create_wallet(wallet);
        }
        let a = c.new_address(wallet).expect("wallet exists");
        let s =
            script::address_to_script(&a, chain::P2PKH_PREFIX, chain::P2SH_PREFIX).expect("ours");
        c.mine(n, &s);
        c.height()
    }

    pub fn height(&self) -> u32 {
        self.chain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .height()
    }

    /// Make RPC unreachable (new connections closed, requests on open ones dropped) or
    /// reachable again: namecoind going down and coming back, for tests.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.cookie_path);
    }
}

impl Drop for Regtest {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    std::io::Write::write_all(&mut opts.open(path)?, text.as_bytes())
}

async fn serve_rpc(listener: TcpListener, state: Arc<rpc::RpcState>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        if state.down.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let state = state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move {
                    if state.down.load(Ordering::SeqCst) {
                        return Err("namecoind is down".to_string());
                    }
                    rpc::handle(state, req).await.map_err(|e| match e {})
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}
