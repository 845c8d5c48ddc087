//! The namecoind JSON-RPC client: authentication (cookie file or rpcuser/rpcpassword),
//! per-wallet endpoints, typed calls, and namecoind's error codes mapped to [`RpcError`].
//!
//! Transport is jsonrpsee's HTTP client speaking JSON-RPC 2.0, so namecoind answers errors with
//! HTTP 200 and an error object (1.0 requests would get HTTP 500). Wallet calls go to
//! `/wallet/<name>`. After an HTTP 401 the cookie file is read again once (namecoind rewrites
//! it at every start) and the call retried.
//!
//! Replies are decoded into the types below by [`decode_result`], the same code the fixture
//! tests run over every recorded real-namecoind answer.

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// namecoind's error codes that BuMP reacts to (rpc/protocol.h).
pub mod code {
    pub const MISC_ERROR: i64 = -1;
    pub const TYPE_ERROR: i64 = -3;
    /// Also used by name_show for "name never existed" and "name expired".
    pub const WALLET_ERROR: i64 = -4;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const CLIENT_IN_INITIAL_DOWNLOAD: i64 = -10;
    pub const WALLET_NOT_FOUND: i64 = -18;
    pub const WALLET_NOT_SPECIFIED: i64 = -19;
    pub const VERIFY_ERROR: i64 = -25;
    pub const NAME_INVALID_ENCODING: i64 = -1000;
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// What went wrong talking to namecoind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    #[error("namecoind is not reachable at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("namecoind refused our credentials (HTTP 401): check the cookie file or rpcuser/rpcpassword")]
    Unauthorized,
    #[error("cannot read the namecoind cookie {path}: {detail} (is namecoind running? is the datadir right?)")]
    Cookie { path: String, detail: String },
    #[error("namecoind answered HTTP {0}")]
    Http(u16),
    #[error("name not found: {0}")]
    NameNotFound(String),
    #[error("name expired: {0}")]
    NameExpired(String),
    #[error("namecoind is still in initial block download (a fresh regtest chain stays there until a block is mined)")]
    InitialDownload,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("insufficient funds in the namecoind wallet: {0}")]
    InsufficientFunds(String),
    #[error("namecoind wallet error {code}: {message}")]
    Wallet { code: i64, message: String },
    #[error("namecoind rejected the transaction: {0}")]
    Verify(String),
    #[error("namecoind does not know the method {0}")]
    MethodNotFound(String),
    #[error("namecoind error {code}: {message}")]
    Other { code: i64, message: String },
    #[error("unexpected answer from namecoind to {method}: {detail}")]
    Decode { method: String, detail: String },
}

impl RpcError {
    /// Map a JSON-RPC error object from namecoind.
    pub fn from_code(code: i64, message: &str) -> RpcError {
        let m = message.to_string();
        match code {
            code::WALLET_ERROR if m.starts_with("name never existed: ") => {
                RpcError::NameNotFound(quoted_name(&m["name never existed: ".len()..]))
            }
            code::WALLET_ERROR if m.starts_with("name expired: ") => {
                RpcError::NameExpired(quoted_name(&m["name expired: ".len()..]))
            }
            code::CLIENT_IN_INITIAL_DOWNLOAD => RpcError::InitialDownload,
            code::INVALID_PARAMETER => RpcError::InvalidParameter(m),
            code::WALLET_INSUFFICIENT_FUNDS => RpcError::InsufficientFunds(m),
            code::WALLET_ERROR | -19..=-11 => RpcError::Wallet { code, message: m },
            code::VERIFY_ERROR => RpcError::Verify(m),
            code::METHOD_NOT_FOUND => RpcError::MethodNotFound(m),
            _ => RpcError::Other { code, message: m },
        }
    }

    /// namecoind's numeric code, when the error came from namecoind itself.
    pub fn code(&self) -> Option<i64> {
        Some(match self {
            RpcError::NameNotFound(_) | RpcError::NameExpired(_) => code::WALLET_ERROR,
            RpcError::InitialDownload => code::CLIENT_IN_INITIAL_DOWNLOAD,
            RpcError::InvalidParameter(_) => code::INVALID_PARAMETER,
            RpcError::InsufficientFunds(_) => code::WALLET_INSUFFICIENT_FUNDS,
            RpcError::Wallet { code, .. } | RpcError::Other { code, .. } => *code,
            RpcError::Verify(_) => code::VERIFY_ERROR,
            RpcError::MethodNotFound(_) => code::METHOD_NOT_FOUND,
            _ => return None,
        })
    }

    /// True when namecoind could not be asked at all (down, wrong port, bad cookie): worth a
    /// retry later, unlike an answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable { .. } | RpcError::Cookie { .. } | RpcError::Http(_)
        )
    }
}

/// `'bump/x'` → `bump/x` (namecoind quotes names in messages).
fn quoted_name(s: &str) -> String {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(s)
        .to_string()
}

/// Decode one reply body in either JSON-RPC dialect (1.0: `result` + `error`, both present;
/// 2.0: one of them) into `T`, or the mapped error.
pub fn decode_result<T: DeserializeOwned>(method: &str, body: &Value) -> Result<T, RpcError> {
    if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = err.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(RpcError::from_code(code, message));
    }
    let result = body.get("result").cloned().unwrap_or(Value::Null);
    decode_value(method, result)
}

/// Decode a bare `result` value.
pub fn decode_value<T: DeserializeOwned>(method: &str, result: Value) -> Result<T, RpcError> {
    serde_json::from_value(result).map_err(|e| RpcError::Decode {
        method: method.into(),
        detail: e.to_string(),
    })
}

/// Satoshis from a JSON amount in coins (namecoind prints amounts as decimal numbers).
pub fn amount_to_sat(coins: f64) -> Option<u64> {
    if !(coins.is_finite() && (0.0..=21e7).contains(&coins)) {
        return None;
    }
    Some((coins * 1e8).round() as u64)
}

/// A satoshi amount as namecoind's decimal string ("0.00001000"); namecoind takes amounts as
/// numbers or strings, and a string never turns into `1e-5`.
pub fn sat_to_amount_string(sat: u64) -> String {
    format!("{}.{:08}", sat / 100_000_000, sat % 100_000_000)
}

fn amount_sat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = f64::deserialize(d)?;
    amount_to_sat(v).ok_or_else(|| serde::de::Error::custom(format!("bad amount {v}")))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockchainInfo {
    pub chain: String,
    pub blocks: u64,
    pub headers: u64,
    pub bestblockhash: String,
    #[serde(default)]
    pub initialblockdownload: bool,
}

/// One name as name_show, name_scan and name_pending print it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NameInfo {
    pub name: String,
    #[serde(default)]
    pub name_encoding: Option<String>,
    /// Absent when the value is not valid in its encoding (`value_error` instead).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_error: Option<String>,
    #[serde(default)]
    pub value_encoding: Option<String>,
    pub txid: String,
    pub vout: u32,
    #[serde(default)]
    pub address: Option<String>,
    /// Absent for pending operations.
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub expired: Option<bool>,
    #[serde(default)]
    pub ismine: Option<bool>,
    /// Only name_pending: name_new / name_firstupdate / name_update.
    #[serde(default)]
    pub op: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScriptPubKey {
    #[serde(default)]
    pub asm: String,
    #[serde(default)]
    pub desc: Option<String>,
    pub hex: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    /// Present on name outputs.
    #[serde(default, rename = "nameOp")]
    pub name_op: Option<Value>,
}

/// gettxout's answer (`null` → `None`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxOutInfo {
    pub bestblock: String,
    pub confirmations: u64,
    #[serde(deserialize_with = "amount_sat")]
    pub value: u64,
    #[serde(rename = "scriptPubKey")]
    pub script_pub_key: ScriptPubKey,
    pub coinbase: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawTxOut {
    #[serde(deserialize_with = "amount_sat")]
    pub value: u64,
    pub n: u32,
    #[serde(rename = "scriptPubKey")]
    pub script_pub_key: ScriptPubKey,
}

/// getrawtransaction verbose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawTransaction {
    pub txid: String,
    pub hash: String,
    pub version: i64,
    pub size: u64,
    pub vsize: u64,
    pub locktime: u64,
    pub vin: Vec<Value>,
    pub vout: Vec<RawTxOut>,
    pub hex: String,
    #[serde(default)]
    pub blockhash: Option<String>,
    #[serde(default)]
    pub confirmations: Option<u64>,
}

/// Where namecoind is and how to log in.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// `<datadir>/<network>/.cookie`, read at first use and again after a 401.
    Cookie(PathBuf),
    UserPass(String, String),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://127.0.0.1:18443`
    pub url: String,
    pub auth: Auth,
    /// Wallet for wallet calls (`/wallet/<name>`); `None` = namecoind's default wallet.
    pub wallet: Option<String>,
    pub timeout: Duration,
}

/// A namecoind JSON-RPC client. Cheap to share (`Arc`); calls may run concurrently.
pub struct Client {
    cfg: ClientConfig,
    clients: Mutex<Option<(HttpClient, HttpClient)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg,
            clients: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    fn authorization(&self) -> Result<String, RpcError> {
        use base64::Engine;
        let userpass = match &self.cfg.auth {
            Auth::UserPass(u, p) => format!("{u}:{p}"),
            Auth::Cookie(path) => std::fs::read_to_string(path)
                .map_err(|e| RpcError::Cookie {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })?
                .trim()
                .to_string(),
        };
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userpass)
        ))
    }

    fn build(&self) -> Result<(HttpClient, HttpClient), RpcError> {
        let mut headers = HeaderMap::new();
        let auth = HeaderValue::from_str(&self.authorization()?).map_err(|e| RpcError::Cookie {
            path: "(credentials)".into(),
            detail: e.to_string(),
        })?;
        headers.insert("authorization", auth);
        let base = self.cfg.url.trim_end_matches('/').to_string();
        let wallet_url = match &self.cfg.wallet {
            Some(w) => format!("{base}/wallet/{w}"),
            None => base.clone(),
        };
        let make = |url: &str| {
            HttpClientBuilder::default()
                .set_headers(headers.clone())
                .request_timeout(self.cfg.timeout)
                .max_response_size(64 << 20)
                .build(url)
                .map_err(|e| RpcError::Unreachable {
                    url: url.to_string(),
                    detail: e.to_string(),
                })
        };
        Ok((make(&base)?, make(&wallet_url)?))
    }

    fn client(&self, wallet: bool, rebuild: bool) -> Result<HttpClient, RpcError> {
        let mut g = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if rebuild || g.is_none() {
            *g = Some(self.build()?);
        }
        let (node, w) = g.as_ref().expect("built above");
        Ok(if wallet { w.clone() } else { node.clone() })
    }

    /// One call; `wallet` routes it to the wallet endpoint.
    pub async fn call(
        &self,
        method: &str,
        params: Vec<Value>,
        wallet: bool,
    ) -> Result<Value, RpcError> {
        let mut retried = false;
        loop {
            let client = self.client(wallet, false)?;
            let mut p = ArrayParams::new();
            for v in &params {
                p.insert(v).map_err(|e| RpcError::Decode {
                    method: method.into(),
                    detail: e.to_string(),
                })?;
            }
            match client.request::<Value, _>(method, p).await {
                Ok(v) => return Ok(v),
                Err(ClientError::Call(obj)) => {
                    return Err(RpcError::from_code(obj.code() as i64, obj.message()))
                }
                Err(ClientError::Transport(e)) => {
                    use jsonrpsee::http_client::transport::Error as T;
                    match e.downcast_ref::<T>() {
                        Some(T::Rejected { status_code: 401 }) => {
                            if retried || !matches!(self.cfg.auth, Auth::Cookie(_)) {
                                return Err(RpcError::Unauthorized);
                            }
                            // namecoind may have restarted with a new cookie.
                            retried = true;
                            self.client(wallet, true)?;
                            continue;
                        }
                        Some(T::Rejected { status_code }) => {
                            return Err(RpcError::Http(*status_code))
                        }
                        _ => {
                            return Err(RpcError::Unreachable {
                                url: self.cfg.url.clone(),
                                detail: e.to_string(),
                            })
                        }
                    }
                }
                Err(ClientError::RequestTimeout) => {
                    return Err(RpcError::Unreachable {
                        url: self.cfg.url.clone(),
                        detail: "request timed out".into(),
                    })
                }
                Err(e) => {
                    return Err(RpcError::Decode {
                        method: method.into(),
                        detail: e.to_string(),
                    })
                }
            }
        }
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Vec<Value>,
        wallet: bool,
    ) -> Result<T, RpcError> {
        decode_value(method, self.call(method, params, wallet).await?)
    }

    pub async fn getblockchaininfo(&self) -> Result<BlockchainInfo, RpcError> {
        self.typed("getblockchaininfo", vec![], false).await
    }

    pub async fn getblockcount(&self) -> Result<u64, RpcError> {
        self.typed("getblockcount", vec![], false).await
    }

    pub async fn name_show(&self, name: &str) -> Result<NameInfo, RpcError> {
        self.typed("name_show", vec![name.into()], false).await
    }

    /// Names from `start` on (exclusive of nothing: namecoind starts at `start`), at most
    /// `count`, only those beginning with `prefix` when given.
    pub async fn name_scan(
        &self,
        start: &str,
        count: u32,
        prefix: Option<&str>,
    ) -> Result<Vec<NameInfo>, RpcError> {
        let mut params = vec![start.into(), count.into()];
        if let Some(p) = prefix {
            params.push(serde_json::json!({ "prefix": p }));
        }
        self.typed("name_scan", params, false).await
    }

    /// name_new → (txid, rand).
    pub async fn name_new(&self, name: &str) -> Result<(String, String), RpcError> {
        let v: Vec<String> = self.typed("name_new", vec![name.into()], true).await?;
        match <[String; 2]>::try_from(v) {
            Ok([txid, rand]) => Ok((txid, rand)),
            Err(v) => Err(RpcError::Decode {
                method: "name_new".into(),
                detail: format!("expected [txid, rand], got {} items", v.len()),
            }),
        }
    }

    pub async fn name_firstupdate(
        &self,
        name: &str,
        rand: &str,
        txid: &str,
        value: &str,
    ) -> Result<String, RpcError> {
        self.typed(
            "name_firstupdate",
            vec![name.into(), rand.into(), txid.into(), value.into()],
            true,
        )
        .await
    }

    pub async fn name_update(&self, name: &str, value: &str) -> Result<String, RpcError> {
        self.typed("name_update", vec![name.into(), value.into()], true)
            .await
    }

    pub async fn name_pending(&self) -> Result<Vec<NameInfo>, RpcError> {
        self.typed("name_pending", vec![], true).await
    }

    pub async fn getnewaddress(&self) -> Result<String, RpcError> {
        self.typed("getnewaddress", vec![], true).await
    }

    pub async fn sendtoaddress(&self, address: &str, sat: u64) -> Result<String, RpcError> {
        self.typed(
            "sendtoaddress",
            vec![address.into(), sat_to_amount_string(sat).into()],
            true,
        )
        .await
    }

    pub async fn gettxout(
        &self,
        txid: &str,
        vout: u32,
        include_mempool: bool,
    ) -> Result<Option<TxOutInfo>, RpcError> {
        self.typed(
            "gettxout",
            vec![txid.into(), vout.into(), include_mempool.into()],
            false,
        )
        .await
    }

    pub async fn getrawtransaction_verbose(&self, txid: &str) -> Result<RawTransaction, RpcError> {
        self.typed("getrawtransaction", vec![txid.into(), true.into()], false)
            .await
    }

    pub async fn generatetoaddress(
        &self,
        blocks: u32,
        address: &str,
    ) -> Result<Vec<String>, RpcError> {
        self.typed(
            "generatetoaddress",
            vec![blocks.into(), address.into()],
            false,
        )
        .await
    }

    pub async fn createwallet(&self, name: &str) -> Result<Value, RpcError> {
        self.typed("createwallet", vec![name.into()], false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        assert_eq!(sat_to_amount_string(1000), "0.00001000");
        assert_eq!(sat_to_amount_string(4_973_854_400), "49.73854400");
        assert_eq!(amount_to_sat(49.738544), Some(4_973_854_400));
        assert_eq!(amount_to_sat(0.00001), Some(1000));
        assert_eq!(amount_to_sat(-1.0), None);
        for sat in [0u64, 1, 546, 99_999_999, 2_100_000_000_000_000] {
            let s = sat_to_amount_string(sat);
            assert_eq!(amount_to_sat(s.parse().unwrap()), Some(sat), "{s}");
        }
    }

    #[test]
    fn error_codes_map() {
        assert_eq!(
            RpcError::from_code(-4, "name never existed: 'bump/x'"),
            RpcError::NameNotFound("bump/x".into())
        );
        assert_eq!(
            RpcError::from_code(-4, "name expired: 'bump/x'"),
            RpcError::NameExpired("bump/x".into())
        );
        assert_eq!(
            RpcError::from_code(-10, "Namecoin is downloading blocks..."),
            RpcError::InitialDownload
        );
        assert!(matches!(
            RpcError::from_code(-8, "the value is too long"),
            RpcError::InvalidParameter(_)
        ));
        assert!(matches!(
            RpcError::from_code(-6, "Insufficient funds"),
            RpcError::InsufficientFunds(_)
        ));
        assert!(matches!(
            RpcError::from_code(-18, "Requested wallet does not exist or is not loaded"),
            RpcError::Wallet { code: -18, .. }
        ));
        for c in [-4, -10, -8, -6, -18, -25, -32601, -1] {
            assert_eq!(RpcError::from_code(c, "m").code(), Some(c));
        }
    }
}
