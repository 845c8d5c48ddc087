//! The mix directory: every `bump/` name from namecoind's `name_scan`, each validated as a
//! [`MixRecord`]; bad records are listed as rejected with the reason and never used.
//!
//! The listing is cached in memory and in `<netdir>/mixes.json` and refreshed when older than
//! the refresh interval (default 60 s) or on request. When namecoind cannot be reached the last
//! listing is served, marked stale, so sending through known mixes keeps working.

use super::record::{MixRecord, NAMESPACE};
use crate::sync::Locked;
use namecoin::rpc::{Client, RpcError};
use namecoin::Network;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Names fetched per name_scan call.
const PAGE: u32 = 200;
/// Most names read in one refresh.
const MAX_NAMES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixEntry {
    pub name: String,
    pub record: MixRecord,
    pub expires_in: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Listing {
    /// Chain height the listing was made at.
    pub height: u64,
    /// Unix time it was made.
    pub fetched_at: u64,
    pub mixes: Vec<MixEntry>,
    pub rejected: Vec<Rejected>,
    /// True when namecoind could not be reached and this is the last good listing.
    #[serde(default)]
    pub stale: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("no mix named {0}")]
    NoSuchMix(String),
    #[error("{name} is not usable: {reason}")]
    Rejected { name: String, reason: String },
    #[error("the directory has {have} valid mixes; {want} needed (publish more, or send with fewer hops)")]
    TooFew { have: usize, want: usize },
}

pub struct Directory {
    client: Arc<Client>,
    network: Network,
    cache_file: PathBuf,
    cache: Mutex<Option<Listing>>,
    pub refresh: Duration,
}

fn now() -> u64 {
    crate::unix_now() as u64
}

impl Directory {
    pub fn new(client: Arc<Client>, network: Network, netdir: PathBuf) -> Directory {
        let cache_file = netdir.join("mixes.json");
        // The cache is a file anyone with access may have edited: keep only records that
        // still validate, so a bad one can never be routed through.
        let cache = std::fs::read(&cache_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Listing>(&b).ok())
            .map(|mut l| {
                l.mixes.retain(|m| {
                    MixRecord::decode(&m.record.encode(), network).as_ref() == Ok(&m.record)
                });
                l
            });
        Directory {
            client,
            network,
            cache_file,
            cache: Mutex::new(cache),
            refresh: Duration::from_secs(60),
        }
    }

    /// Read every `bump/` name and validate it.
    async fn fetch(&self) -> Result<Listing, RpcError> {
        let height = self.client.getblockcount().await?;
        let mut names = Vec::new();
        let mut start = NAMESPACE.to_string();
        loop {
            let page = self.client.name_scan(&start, PAGE, Some(NAMESPACE)).await?;
            let n = page.len();
            for info in page {
                // name_scan starts at `start` inclusive: skip the one we already have.
                if names
                    .last()
                    .is_some_and(|l: &namecoin::rpc::NameInfo| l.name == info.name)
                {
                    continue;
                }
                names.push(info);
            }
            if n < PAGE as usize || names.len() >= MAX_NAMES {
                break;
            }
            start = names.last().map(|l| l.name.clone()).unwrap_or_default();
        }
        let mut listing = Listing {
            height,
            fetched_at: now(),
            ..Default::default()
        };
        for info in names {
            match MixRecord::validate(&info, self.network, height) {
                Ok(record) => listing.mixes.push(MixEntry {
                    name: info.name,
                    record,
                    expires_in: info.expires_in,
                }),
                Err(e) => listing.rejected.push(Rejected {
                    name: info.name,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(listing)
    }

    /// The directory, refreshed when older than `refresh` or when `force`.
    pub async fn listing(&self, force: bool) -> Result<Listing, DirectoryError> {
        let cached = self.cache.locked().clone();
        if let Some(c) = &cached {
            if !force && now().saturating_sub(c.fetched_at) < self.refresh.as_secs() && !c.stale {
                return Ok(c.clone());
            }
        }
        match self.fetch().await {
            Ok(l) => {
                if let Ok(bytes) = serde_json::to_vec_pretty(&l) {
                    let tmp = self.cache_file.with_extension("json.tmp");
                    if std::fs::write(&tmp, bytes).is_ok() {
                        let _ = std::fs::rename(&tmp, &self.cache_file);
                    }
                }
                *self.cache.locked() = Some(l.clone());
                Ok(l)
            }
            Err(e) if e.is_unavailable() => match cached {
                Some(mut c) => {
                    tracing::warn!(
                        "mix directory: {e}; serving the listing from height {}",
                        c.height
                    );
                    c.stale = true;
                    Ok(c)
                }
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Look one mix up by name, straight from namecoind (falling back to the cached listing
    /// when namecoind is unreachable).
    pub async fn resolve(&self, name: &str) -> Result<MixEntry, DirectoryError> {
        let fetched = async {
            let info = self.client.name_show(name).await?;
            let height = self.client.getblockcount().await?;
            Ok::<_, RpcError>((info, height))
        }
        .await;
        match fetched {
            Ok((info, height)) => match MixRecord::validate(&info, self.network, height) {
                Ok(record) => Ok(MixEntry {
                    name: info.name,
                    record,
                    expires_in: info.expires_in,
                }),
                Err(e) => Err(DirectoryError::Rejected {
                    name: name.into(),
                    reason: e.to_string(),
                }),
            },
            Err(RpcError::NameNotFound(_)) | Err(RpcError::NameExpired(_)) => {
                Err(DirectoryError::NoSuchMix(name.into()))
            }
            Err(e) if e.is_unavailable() => {
                let cached = self.cache.locked().clone();
                cached
                    .and_then(|c| c.mixes.into_iter().find(|m| m.name == name))
                    .ok_or(DirectoryError::Rpc(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `n` distinct valid mixes at random.
    pub async fn pick(&self, n: usize) -> Result<Vec<MixEntry>, DirectoryError> {
        use rand::seq::SliceRandom;
        let l = self.listing(false).await?;
        if l.mixes.len() < n {
            return Err(DirectoryError::TooFew {
                have: l.mixes.len(),
                want: n,
            });
        }
        Ok(l.mixes
            .choose_multiple(&mut rand::rngs::OsRng, n)
            .cloned()
            .collect())
    }
}
