//! Publishing our mix record as a Namecoin name, resumably, and keeping it alive.
//!
//! `bump name publish LABEL` records a request in `<netdir>/names/<label>.json`; the node's
//! publisher drives it through namecoind, saving the state after every step so a restart
//! resumes where it stopped:
//!
//! `requested` → name_new → `name_new_sent` → (12 confirmations) → name_firstupdate →
//! `firstupdate_sent` → (name_show shows it) → `active` → (renewal or a changed record) →
//! name_update → `update_sent` → `active` …
//!
//! Renewal: names expire (36,000 blocks; 30 on regtest). When fewer than the renewal margin
//! remain (2,000 blocks; 10 on regtest), or the record's key expiry `exp` comes within that
//! margin, or the record changed (fee, contact, key), the publisher sends name_update with a
//! fresh record whose `exp` is two name lifetimes ahead.

use super::record::{check_label, MixRecord, RecordError, NAMESPACE};
use super::Chain;
use namecoin::rpc::RpcError;
use namecoin::Network;
use secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Requested,
    NameNewSent,
    FirstupdateSent,
    Active,
    UpdateSent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishState {
    pub name: String,
    pub stage: Stage,
    pub fee: u64,
    #[serde(default)]
    pub p2p: Option<String>,
    /// Our postage address (made with getnewaddress when fee > 0).
    #[serde(default)]
    pub pay: Option<String>,
    #[serde(default)]
    pub new_txid: Option<String>,
    #[serde(default)]
    pub rand: Option<String>,
    /// The last name_firstupdate / name_update we sent.
    #[serde(default)]
    pub op_txid: Option<String>,
    /// The value on chain (or being put there).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot write {0}: {1}")]
    Io(String, std::io::Error),
}

/// Blocks before expiry at which a name is renewed.
pub fn renew_margin(network: Network) -> u64 {
    match network {
        Network::Regtest => 10,
        _ => 2_000,
    }
}

pub struct Publisher {
    chain: Arc<Chain>,
    dir: PathBuf,
    key: PublicKey,
    wake: tokio::sync::Notify,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl Publisher {
    pub fn new(chain: Arc<Chain>, netdir: &Path, key: PublicKey) -> Arc<Publisher> {
        Arc::new(Publisher {
            chain,
            dir: netdir.join("names"),
            key,
            wake: tokio::sync::Notify::new(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        let label = name.strip_prefix(NAMESPACE).unwrap_or(name);
        self.dir.join(format!("{label}.json"))
    }

    fn save(&self, s: &PublishState) -> Result<(), PublishError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PublishError::Io(self.dir.display().to_string(), e))?;
        let p = self.path(&s.name);
        write_atomic(&p, &serde_json::to_vec_pretty(s).expect("plain struct"))
            .map_err(|e| PublishError::Io(p.display().to_string(), e))
    }

    /// Every name we publish.
    pub fn states(&self) -> Vec<PublishState> {
        let mut out: Vec<PublishState> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a: &PublishState, b| a.name.cmp(&b.name));
        out
    }

    /// Our postage addresses (for checking that postage pays us).
    pub fn pay_addresses(&self) -> HashSet<String> {
        self.states().into_iter().filter_map(|s| s.pay).collect()
    }

    /// Ask to publish (or change) `bump/<label>`; the publisher does the rest.
    pub fn request(
        &self,
        label: &str,
        fee: u64,
        p2p: Option<String>,
    ) -> Result<PublishState, PublishError> {
        check_label(label)?;
        let name = format!("{NAMESPACE}{label}");
        let state = match self.states().into_iter().find(|s| s.name == name) {
            Some(mut s) => {
                s.fee = fee;
                s.p2p = p2p;
                s
            }
            None => PublishState {
                name,
                stage: Stage::Requested,
                fee,
                p2p,
                pay: None,
                new_txid: None,
                rand: None,
                op_txid: None,
                value: None,
                height: None,
                expires_in: None,
                last_error: None,
            },
        };
        self.save(&state)?;
        self.wake.notify_one();
        Ok(state)
    }

    fn record_value(&self, s: &PublishState, height: u64) -> String {
        let lifetime = self.chain.network.name_expiration_depth();
        MixRecord::new(
            &self.key,
            s.fee,
            s.pay.clone(),
            height + 2 * lifetime,
            s.p2p.clone(),
        )
        .encode()
    }

    /// Whether the record on chain still says what we want.
    fn needs_update(&self, s: &PublishState, height: u64) -> bool {
        let Some(v) = &s.value else { return true };
        let Ok(on_chain) = MixRecord::decode(v, self.chain.network) else {
            return true;
        };
        let want = MixRecord::new(&self.key, s.fee, s.pay.clone(), on_chain.exp, s.p2p.clone());
        let margin = renew_margin(self.chain.network);
        on_chain != want
            || on_chain.exp <= height + margin
            || s.expires_in.is_some_and(|e| e <= margin as i64)
    }

    /// Move one name one step on; returns whether anything changed.
    async fn step_one(&self, mut s: PublishState) -> Result<bool, RpcError> {
        let c = &self.chain.client;
        let before = s.clone();
        match s.stage {
            Stage::Requested => {
                if s.fee > 0 && s.pay.is_none() {
                    s.pay = Some(c.getnewaddress().await?);
                    let _ = self.save(&s);
                }
                let (txid, rand) = c.name_new(&s.name).await?;
                tracing::info!(name = %s.name, %txid, "name_new sent; waiting for 12 confirmations");
                s.new_txid = Some(txid);
                s.rand = Some(rand);
                s.stage = Stage::NameNewSent;
            }
            Stage::NameNewSent => {
                let txid = s.new_txid.clone().unwrap_or_default();
                let tx = c.getrawtransaction_verbose(&txid).await?;
                let confs = tx.confirmations.unwrap_or(0);
                if confs >= Network::MIN_FIRSTUPDATE_DEPTH {
                    let height = c.getblockcount().await?;
                    let value = self.record_value(&s, height);
                    let rand = s.rand.clone().unwrap_or_default();
                    let op = c.name_firstupdate(&s.name, &rand, &txid, &value).await?;
                    tracing::info!(name = %s.name, txid = %op, "name_firstupdate sent");
                    s.op_txid = Some(op);
                    s.value = Some(value);
                    s.stage = Stage::FirstupdateSent;
                }
            }
            Stage::FirstupdateSent | Stage::UpdateSent => match c.name_show(&s.name).await {
                Ok(info) if Some(&info.txid) == s.op_txid.as_ref() => {
                    tracing::info!(name = %s.name, height = ?info.height, "mix record is on chain");
                    s.stage = Stage::Active;
                    s.height = info.height;
                    s.expires_in = info.expires_in;
                    s.value = info.value;
                }
                Ok(_) | Err(RpcError::NameNotFound(_)) => {} // not mined yet
                Err(e) => return Err(e),
            },
            Stage::Active => {
                let info = c.name_show(&s.name).await;
                let height = c.getblockcount().await?;
                match info {
                    Ok(info) => {
                        s.expires_in = info.expires_in;
                        s.height = info.height;
                        s.value = info.value;
                    }
                    Err(RpcError::NameExpired(_)) => {
                        // Too late to renew: register again.
                        tracing::warn!(name = %s.name, "our name expired; registering it again");
                        s.stage = Stage::Requested;
                        s.value = None;
                    }
                    Err(e) => return Err(e),
                }
                if s.stage == Stage::Active && self.needs_update(&s, height) {
                    let value = self.record_value(&s, height);
                    let op = c.name_update(&s.name, &value).await?;
                    tracing::info!(name = %s.name, txid = %op, "name_update sent (renewal or new record)");
                    s.op_txid = Some(op);
                    s.value = Some(value);
                    s.stage = Stage::UpdateSent;
                }
            }
        }
        s.last_error = None;
        let changed = s != before;
        if changed {
            let _ = self.save(&s);
        }
        Ok(changed)
    }

    /// One pass over every name.
    pub async fn step(&self) {
        for s in self.states() {
            let name = s.name.clone();
            if let Err(e) = self.step_one(s.clone()).await {
                let msg = e.to_string();
                if s.last_error.as_deref() != Some(&msg) {
                    tracing::warn!(%name, "publishing: {msg} (will retry)");
                    let mut s = s;
                    s.last_error = Some(msg);
                    let _ = self.save(&s);
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, poll: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(poll);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            self.step().await;
        }
    }
}
