//! BuMP on Namecoin: mix records as names ([`record`]), the mix directory built from
//! `name_scan` ([`directory`]), publishing and renewing our own record ([`publish`]).
//! [`Chain`] is a node's link to namecoind: the client plus the network it runs on.

pub mod directory;
pub mod publish;
pub mod record;

use namecoin::rpc::{Auth, Client, ClientConfig};
use namecoin::Network;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a node reaches namecoind (flags `--namecoind*`, or `namecoind*` in bump.conf).
#[derive(Debug, Clone)]
pub struct NamecoindSettings {
    pub url: String,
    pub auth: Auth,
    pub wallet: Option<String>,
}

impl NamecoindSettings {
    /// namecoind's cookie path for a datadir (`<datadir>/<network folder>/.cookie`).
    pub fn cookie_in(datadir: &std::path::Path, network: Network) -> PathBuf {
        match network.namecoind_subdir() {
            None => datadir.join(".cookie"),
            Some(sub) => datadir.join(sub).join(".cookie"),
        }
    }
}

/// A node's link to namecoind.
pub struct Chain {
    pub client: Arc<Client>,
    pub network: Network,
    pub directory: directory::Directory,
}

impl Chain {
    pub fn new(settings: &NamecoindSettings, network: Network, cache_dir: PathBuf) -> Arc<Chain> {
        let client = Arc::new(Client::new(ClientConfig {
            url: settings.url.clone(),
            auth: settings.auth.clone(),
            wallet: settings.wallet.clone(),
            timeout: Duration::from_secs(30),
        }));
        let directory = directory::Directory::new(client.clone(), network, cache_dir);
        Arc::new(Chain {
            client,
            network,
            directory,
        })
    }
}

/// What the RPC server needs for name-based sending and publishing.
pub struct NamesCtx {
    pub chain: Arc<Chain>,
    pub publisher: Arc<publish::Publisher>,
    /// Hops when a send names neither `via` nor `hops` (docs/protocol.md §7.4: 3).
    pub default_hops: usize,
}

/// Default number of mixes a message goes through when the node has a directory.
pub const DEFAULT_HOPS: usize = 3;
