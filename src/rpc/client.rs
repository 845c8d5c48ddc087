//! How the command line finds and talks to a running node: the RPC address comes from
//! `<netdir>/rpc.addr` (or `--rpc-connect`), credentials from `<netdir>/.cookie` (or
//! rpcuser/rpcpassword). Failures become one clear sentence.

use super::auth::{basic_header, read_cookie};
use crate::config::{COOKIE_FILE, RPC_ADDR_FILE};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use namecoin::Network;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the command line waits for one RPC answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no BuMP node is running for network '{network}' with datadir {netdir} (start one with `bump{flag} node`)")]
    NotRunning {
        network: Network,
        netdir: PathBuf,
        flag: String,
    },
    #[error("cannot read the RPC cookie {path}: {err} (is the node running with this --datadir?)")]
    Cookie { path: PathBuf, err: std::io::Error },
    #[error("the node refused our credentials (HTTP 401): check --rpcuser/--rpcpassword, or that the cookie in the datadir is current")]
    Unauthorized,
    #[error("{0}")]
    Node(String),
    #[error("RPC transport error: {0}")]
    Transport(String),
    #[error("no answer from the node within the RPC timeout (--rpc-timeout, default {} s): the address in rpc.addr may belong to another program (restart the node) or the node is stuck", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("bad RPC address in {path}: {text:?}")]
    BadAddrFile { path: PathBuf, text: String },
}

/// Where and how to reach a node.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    auth_header: String,
    timeout: Duration,
}

fn network_flag(net: Network) -> String {
    match net {
        Network::Mainnet => String::new(),
        Network::Testnet => " --testnet".into(),
        Network::Regtest => " --regtest".into(),
    }
}

impl Target {
    /// Find the node of `network` whose network folder is `netdir`.
    pub fn locate(
        netdir: &Path,
        network: Network,
        connect: Option<SocketAddr>,
        user_password: Option<(String, String)>,
    ) -> Result<Target, ClientError> {
        let not_running = || ClientError::NotRunning {
            network,
            netdir: netdir.to_path_buf(),
            flag: network_flag(network),
        };
        let addr = match connect {
            Some(a) => a,
            None => {
                let path = netdir.join(RPC_ADDR_FILE);
                let text = std::fs::read_to_string(&path).map_err(|_| not_running())?;
                text.trim()
                    .parse()
                    .map_err(|_| ClientError::BadAddrFile { path, text })?
            }
        };
        // A stale rpc.addr (after a crash) points at nothing: say "not running", not "refused".
        if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            return Err(not_running());
        }
        let (user, password) = match user_password {
            Some(up) => up,
            None => {
                let path = netdir.join(COOKIE_FILE);
                read_cookie(&path).map_err(|err| ClientError::Cookie { path, err })?
            }
        };
        Ok(Target {
            addr,
            auth_header: basic_header(&user, &password),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Wait this long for each answer instead of [`REQUEST_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Target {
        self.timeout = timeout;
        self
    }

    fn headers(&self) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&self.auth_header) {
            h.insert(http::header::AUTHORIZATION, v);
        }
        h
    }

    pub fn http(&self, max_bytes: u32) -> Result<HttpClient, ClientError> {
        HttpClientBuilder::default()
            .set_headers(self.headers())
            .max_request_size(max_bytes)
            .max_response_size(max_bytes)
            .request_timeout(self.timeout)
            .build(format!("http://{}", self.addr))
            .map_err(classify)
    }

    pub async fn ws(&self, max_bytes: u32) -> Result<WsClient, ClientError> {
        WsClientBuilder::default()
            .set_headers(self.headers())
            .max_request_size(max_bytes)
            .max_response_size(max_bytes)
            .request_timeout(self.timeout)
            .connection_timeout(self.timeout)
            .build(format!("ws://{}", self.addr))
            .await
            .map_err(classify)
    }
}

/// Turn a jsonrpsee client error into a [`ClientError`].
pub fn classify(e: jsonrpsee::core::ClientError) -> ClientError {
    use jsonrpsee::core::ClientError as E;
    match e {
        E::Call(obj) => ClientError::Node(obj.message().to_string()),
        E::RequestTimeout => ClientError::Timeout,
        other => {
            let s = other.to_string();
            if s.contains("401") || s.contains("Unauthorized") {
                ClientError::Unauthorized
            } else {
                ClientError::Transport(s)
            }
        }
    }
}
