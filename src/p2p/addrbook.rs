//! The peer table: addresses the node knows, what it learned about them, and bans.
//!
//! Persisted as JSON in `<netdir>/peers.json` (written atomically: temp file + rename) so a
//! restarted node remembers BuMP peers and keeps bans. Bans are per IP address, with an expiry.
//! Addresses come from `--connect`/`--addnode` (manual), from `addr`/`addrv2` gossip (only
//! entries with the BuMP service bit), and from successful connections.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Most addresses kept; gossip beyond this replaces the stalest gossip entry.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddrEntry {
    pub addr: SocketAddr,
    pub services: u64,
    /// Confirmed BuMP-capable by a `feature` message in a handshake.
    pub bump: bool,
    /// "manual", "gossip" or "connected".
    pub source: String,
    pub last_success: u64,
    pub last_attempt: u64,
    pub failures: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    addrs: Vec<AddrEntry>,
    bans: Vec<(IpAddr, u64)>,
}

pub struct AddrBook {
    path: Option<PathBuf>,
    entries: HashMap<SocketAddr, AddrEntry>,
    bans: HashMap<IpAddr, u64>,
}

/// Seconds to wait before retrying an address that failed `failures` times in a row.
pub fn backoff_secs(failures: u32) -> u64 {
    if failures == 0 {
        0
    } else {
        (1u64 << failures.min(9)).min(300)
    }
}

impl AddrBook {
    pub fn in_memory() -> AddrBook {
        AddrBook {
            path: None,
            entries: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// Load from `path`; a missing file is an empty book, a corrupt one is set aside
    /// (renamed `.corrupt`) with a warning rather than stopping the node.
    pub fn load(path: &Path) -> AddrBook {
        let mut book = AddrBook {
            path: Some(path.to_path_buf()),
            entries: HashMap::new(),
            bans: HashMap::new(),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<OnDisk>(&text) {
                Ok(d) => {
                    book.entries = d.addrs.into_iter().map(|e| (e.addr, e)).collect();
                    book.bans = d.bans.into_iter().collect();
                }
                Err(e) => {
                    tracing::warn!(
                        "peer table {} is corrupt ({e}); starting with an empty one",
                        path.display()
                    );
                    let _ = std::fs::rename(path, path.with_extension("json.corrupt"));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read peer table {}: {e}", path.display()),
        }
        book
    }

    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let d = OnDisk {
            addrs: self.entries.values().cloned().collect(),
            bans: self.bans.iter().map(|(ip, t)| (*ip, *t)).collect(),
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&d).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrEntry> {
        self.entries.get(addr)
    }

    /// Add an address if unknown. Gossip never overwrites what the node learned itself.
    pub fn add(&mut self, addr: SocketAddr, services: u64, source: &str) {
        if self.entries.contains_key(&addr) {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            let stalest = self
                .entries
                .values()
                .filter(|e| e.source == "gossip")
                .min_by_key(|e| (e.last_success, std::cmp::Reverse(e.failures)))
                .map(|e| e.addr);
            match stalest {
                Some(a) => {
                    self.entries.remove(&a);
                }
                None => return,
            }
        }
        self.entries.insert(
            addr,
            AddrEntry {
                addr,
                services,
                bump: false,
                source: source.into(),
                last_success: 0,
                last_attempt: 0,
                failures: 0,
            },
        );
    }

    pub fn attempted(&mut self, addr: SocketAddr, now: u64) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.last_attempt = now;
        }
    }

    pub fn failed(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.failures = e.failures.saturating_add(1);
        }
    }

    pub fn connected(&mut self, addr: SocketAddr, services: u64, bump: bool, now: u64) {
        self.add(addr, services, "connected");
        if let Some(e) = self.entries.get_mut(&addr) {
            e.services = services;
            e.bump = bump;
            e.last_success = now;
            e.failures = 0;
        }
    }

    /// Whether `addr` may be dialled now (not banned, backoff over).
    pub fn may_dial(&self, addr: &SocketAddr, now: u64) -> bool {
        if self.is_banned(&addr.ip(), now) {
            return false;
        }
        match self.entries.get(addr) {
            Some(e) => now >= e.last_attempt + backoff_secs(e.failures),
            None => true,
        }
    }

    /// Addresses worth an outbound connection: BuMP-capable (confirmed, or advertised by the
    /// service bit), dialable now, not in `exclude`. Confirmed ones first.
    pub fn candidates(
        &self,
        now: u64,
        bump_bit: u64,
        exclude: &HashSet<SocketAddr>,
    ) -> Vec<SocketAddr> {
        let mut v: Vec<&AddrEntry> = self
            .entries
            .values()
            .filter(|e| (e.bump || e.services & bump_bit != 0) && !exclude.contains(&e.addr))
            .filter(|e| self.may_dial(&e.addr, now))
            .collect();
        v.sort_by_key(|e| (!e.bump, e.failures, std::cmp::Reverse(e.last_success)));
        v.into_iter().map(|e| e.addr).collect()
    }

    /// Addresses to gossip: confirmed BuMP peers, most recently seen first.
    pub fn gossip(&self, max: usize) -> Vec<(u64, SocketAddr)> {
        let mut v: Vec<&AddrEntry> = self
            .entries
            .values()
            .filter(|e| e.bump && e.last_success > 0)
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.last_success));
        v.into_iter()
            .take(max)
            .map(|e| (e.last_success, e.addr))
            .collect()
    }

    pub fn ban(&mut self, ip: IpAddr, until: u64) {
        self.bans.insert(ip, until);
    }

    pub fn is_banned(&self, ip: &IpAddr, now: u64) -> bool {
        self.bans.get(ip).map(|&until| now < until).unwrap_or(false)
    }

    /// Drop expired bans; returns how many remain.
    pub fn prune_bans(&mut self, now: u64) -> usize {
        self.bans.retain(|_, until| *until > now);
        self.bans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn persists_entries_and_bans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut b = AddrBook::load(&path);
        b.add(a("127.0.0.2:1"), 1 << 24, "gossip");
        b.connected(a("127.0.0.3:1"), 1 << 24, true, 100);
        b.ban("127.0.0.9".parse().unwrap(), 500);
        b.save().unwrap();
        let b = AddrBook::load(&path);
        assert_eq!(b.len(), 2);
        assert!(b.get(&a("127.0.0.3:1")).unwrap().bump);
        assert!(b.is_banned(&"127.0.0.9".parse().unwrap(), 499));
        assert!(!b.is_banned(&"127.0.0.9".parse().unwrap(), 500));
        assert_eq!(b.gossip(10), vec![(100, a("127.0.0.3:1"))]);
    }

    #[test]
    fn corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        std::fs::write(&path, "{not json").unwrap();
        let b = AddrBook::load(&path);
        assert!(b.is_empty());
        assert!(dir.path().join("peers.json.corrupt").exists());
    }

    #[test]
    fn candidates_respect_backoff_bans_and_the_bit() {
        let mut b = AddrBook::in_memory();
        b.add(a("127.0.0.2:1"), 1 << 24, "gossip");
        b.add(a("127.0.0.4:1"), 1, "gossip"); // coin-only: never a candidate
        b.add(a("127.0.0.5:1"), 1 << 24, "gossip");
        b.ban("127.0.0.5".parse().unwrap(), 1000);
        let none = HashSet::new();
        assert_eq!(b.candidates(10, 1 << 24, &none), vec![a("127.0.0.2:1")]);
        b.attempted(a("127.0.0.2:1"), 10);
        b.failed(a("127.0.0.2:1"));
        b.failed(a("127.0.0.2:1"));
        assert!(
            b.candidates(11, 1 << 24, &none).is_empty(),
            "backoff of 4 s"
        );
        assert_eq!(b.candidates(14, 1 << 24, &none), vec![a("127.0.0.2:1")]);
        assert_eq!(backoff_secs(30), 300);
    }
}
