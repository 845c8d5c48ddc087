//! Loop packets and (n-1) detection.
//!
//! A mix sends its own packets around a loop — through itself, then other mixes, then back to
//! itself — at a Poisson rate, with a standard Tau level, so they look like any other traffic.
//! The first layer is peeled locally and the packet enters our own pool like any other entry
//! (an output nobody can tie to an input); the last layer is addressed to us again and marked
//! *drop*. When it comes back we recognise it by the shared secret of that last layer
//! (remembered at creation, never sent) and note the round trip.
//!
//! **Why**: the (n-1) attacker must keep honest packets away from the mix while he fills its
//! crowd with his own. He cannot tell our loop packets from honest ones, so they stop coming
//! back too. When most of the most recent loops are overdue ([`LoopConfig::window`] decided
//! loops, fewer than half back by their deadline), the mix raises an **alarm**:
//!
//! - strangers' packets still enter the pool and wait for their own Tau values, but no longer
//!   count toward anyone's crowd ([`super::pool::TauPool::insert_uncounted`]);
//! - the mix sends loop packets at the higher *defend* rate; those (and its returning loops)
//!   are the only entries that count, so every message still leaves among at least its crowd of
//!   packets the attacker did not make. Their first layer (ours, seen by nobody else) waits for
//!   the largest crowd held, up to [`MAX_DEFEND_CROWD`], so they gather in batches big enough
//!   to take waiting messages along;
//! - a warning is logged and `bump mix` shows the alarm.
//!
//! The alarm clears when loops come back again. Liveness is kept (the mix's own loops fill
//! crowds), at the price of the defend rate's bandwidth while it lasts. docs/anonymity.md
//! measures it.
//!
//! Persistence (sled tree `ext/loops`): key = SHA-256 of the last layer's shared secret,
//! value = sent ms ‖ deadline ms ‖ returned ms (0 = not yet), u64 BE each. At most
//! [`MAX_TRACKED`] loops are kept, oldest forgotten first.

use super::cover::RouteSource;
use super::mixer::Mixer;
use super::send::{instructions, RoutePolicy};
use super::tau::TauLevel;
use crate::onion::layer::wrap_keyed;
use crate::sync::Locked;
use crate::tag::Tag;
use bitcoin::hashes::{sha256, Hash};
use rand::seq::SliceRandom;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Loops remembered at most.
pub const MAX_TRACKED: usize = 1024;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Mean loops per minute in normal times (0 = off).
    pub per_minute: f64,
    /// Mean loops per minute while the alarm is raised.
    pub defend_per_minute: f64,
    /// Other mixes on each loop (between our two layers).
    pub middle_hops: usize,
    /// Tau level of every layer (the same as real traffic).
    pub tau: TauLevel,
    /// A loop not back this long after it was sent counts as missing.
    pub timeout: Duration,
    /// How many of the most recent decided loops the alarm looks at.
    pub window: usize,
    /// Expiry of loop packets, seconds.
    pub ttl: u32,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            per_minute: 1.0,
            defend_per_minute: 12.0,
            middle_hops: 2,
            tau: TauLevel::default_level(),
            timeout: Duration::from_secs(600),
            window: 6,
            ttl: 6 * 3600,
        }
    }
}

impl LoopConfig {
    /// No loop packets.
    pub fn off() -> Self {
        LoopConfig {
            per_minute: 0.0,
            ..Default::default()
        }
    }
}

/// What `bump mix` shows about loops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopStats {
    /// Loops sent (since the node started).
    pub sent: u64,
    /// Loops back before their deadline (since the node started).
    pub returned: u64,
    /// Loops tracked that are neither back nor overdue.
    pub pending: usize,
    /// Tracked loops past their deadline and not back.
    pub missing: usize,
    /// Median round trip of the tracked loops that came back, ms.
    #[serde(default)]
    pub median_rtt_ms: Option<u64>,
    /// True while the mix suspects an (n-1) attack (see docs/anonymity.md).
    pub alarm: bool,
    /// Unix time the alarm was raised.
    #[serde(default)]
    pub alarm_since: Option<u64>,
    /// Times the alarm was raised.
    pub alarms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    sent: u64,
    deadline: u64,
    returned: u64,
}

impl Record {
    fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.sent.to_be_bytes());
        v[8..16].copy_from_slice(&self.deadline.to_be_bytes());
        v[16..].copy_from_slice(&self.returned.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Record> {
        if v.len() != 24 {
            return None;
        }
        let at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Record {
            sent: at(0),
            deadline: at(8),
            returned: at(16),
        })
    }

    fn back_in_time(&self) -> bool {
        self.returned != 0 && self.returned <= self.deadline
    }
}

/// The loop ledger and the alarm.
pub struct LoopMonitor {
    tree: sled::Tree,
    window: usize,
    alarm: AtomicBool,
    stats: Mutex<LoopStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
}

/// The loop ledger key for a layer's shared secret.
pub fn loop_key(shared_secret: &[u8; 32]) -> [u8; 32] {
    // Domain-separated from the replay cache's plain SHA-256.
    let mut b = b"bump/loop/1".to_vec();
    b.extend_from_slice(shared_secret);
    sha256::Hash::hash(&b).to_byte_array()
}

impl LoopMonitor {
    pub fn open(store: &crate::store::Store, window: usize) -> Result<LoopMonitor, LoopError> {
        let m = LoopMonitor {
            tree: store.tree("loops")?,
            window: window.max(1),
            alarm: AtomicBool::new(false),
            stats: Mutex::new(LoopStats::default()),
        };
        m.evaluate(crate::clock::unix_ms());
        Ok(m)
    }

    pub fn alarmed(&self) -> bool {
        self.alarm.load(Ordering::Relaxed)
    }

    fn records(&self) -> Vec<([u8; 32], Record)> {
        self.tree
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(k, v)| Some((k.as_ref().try_into().ok()?, Record::decode(&v)?)))
            .collect()
    }

    /// Remember a loop we just made.
    pub fn sent(&self, key: [u8; 32], now_ms: u64, timeout: Duration) -> Result<(), LoopError> {
        let r = Record {
            sent: now_ms,
            deadline: now_ms.saturating_add(timeout.as_millis() as u64),
            returned: 0,
        };
        self.tree.insert(key, &r.encode())?;
        if self.tree.len() > MAX_TRACKED {
            let mut all = self.records();
            all.sort_by_key(|(_, r)| r.sent);
            for (k, _) in all.iter().take(all.len() - MAX_TRACKED) {
                self.tree.remove(k)?;
            }
        }
        self.stats.locked().sent += 1;
        Ok(())
    }

    /// A packet peeled with this shared secret: one of our loops coming back? Marks it.
    pub fn returned(&self, shared_secret: &[u8; 32], now_ms: u64) -> bool {
        let key = loop_key(shared_secret);
        let Ok(Some(v)) = self.tree.get(key) else {
            return false;
        };
        let Some(mut r) = Record::decode(&v) else {
            return false;
        };
        if r.returned == 0 {
            r.returned = now_ms.max(1);
            let _ = self.tree.insert(key, &r.encode());
            if r.back_in_time() {
                self.stats.locked().returned += 1;
            }
        }
        true
    }

    /// Recompute the alarm at `now_ms`; returns `Some(new state)` when it changed.
    pub fn evaluate(&self, now_ms: u64) -> Option<bool> {
        let all = self.records();
        let mut decided: Vec<Record> = all
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.back_in_time() || r.deadline <= now_ms)
            .collect();
        decided.sort_by_key(|r| std::cmp::Reverse(r.sent));
        decided.truncate(self.window);
        let back = decided.iter().filter(|r| r.back_in_time()).count();
        let need = self.window.min(3);
        let alarm = decided.len() >= need && back * 2 < decided.len();
        let mut rtts: Vec<u64> = all
            .iter()
            .filter(|(_, r)| r.returned != 0)
            .map(|(_, r)| r.returned.saturating_sub(r.sent))
            .collect();
        rtts.sort_unstable();
        let mut s = self.stats.locked();
        s.pending = all
            .iter()
            .filter(|(_, r)| r.returned == 0 && r.deadline > now_ms)
            .count();
        s.missing = all
            .iter()
            .filter(|(_, r)| r.returned == 0 && r.deadline <= now_ms)
            .count();
        s.median_rtt_ms = rtts.get(rtts.len() / 2).copied();
        let was = self.alarm.swap(alarm, Ordering::Relaxed);
        s.alarm = alarm;
        if alarm && !was {
            s.alarms += 1;
            s.alarm_since = Some(now_ms / 1000);
        }
        if !alarm {
            s.alarm_since = None;
        }
        (alarm != was).then_some(alarm)
    }

    pub fn stats(&self) -> LoopStats {
        self.stats.locked().clone()
    }
}

/// Highest crowd the mix's own first layer takes while the alarm is up (the highest standard
/// level's): strangers' messages with a larger crowd wait for the alarm to end.
pub const MAX_DEFEND_CROWD: u64 = 20;

/// Build one loop: `[us, middle..., us]`, the last layer marked drop, every layer with `pol`'s
/// Tau values except our own first layer, which waits for `first_crowd` (nobody else sees it).
/// Returns the packet addressed to us and the ledger key of its last layer.
pub fn build_loop(
    us: &secp256k1::PublicKey,
    middle: &[secp256k1::PublicKey],
    pol: RoutePolicy,
    first_crowd: u64,
    rng: &mut impl RngCore,
) -> Option<(crate::packet::Packet, [u8; 32])> {
    let mut route = Vec::with_capacity(middle.len() + 2);
    route.push(*us);
    route.extend_from_slice(middle);
    route.push(*us);
    let mut random_tag = [0u8; 20];
    rng.fill_bytes(&mut random_tag);
    let mut instr = instructions(&route, Tag(random_tag), pol);
    instr.last_mut()?.drop = true;
    instr.first_mut()?.crowd = first_crowd;
    let (packet, secrets) = wrap_keyed(&route, &instr, pol.expires, rng).ok()?;
    Some((packet, loop_key(secrets.last()?)))
}

/// Send loops until shutdown; re-evaluate the alarm every second.
pub async fn run(
    mix: Arc<Mixer>,
    monitor: Arc<LoopMonitor>,
    source: RouteSource,
    cfg: LoopConfig,
    shutdown: CancellationToken,
) {
    if cfg.per_minute <= 0.0 {
        return;
    }
    tracing::info!(
        per_minute = cfg.per_minute,
        defend_per_minute = cfg.defend_per_minute,
        tau = %cfg.tau,
        "loop packets on"
    );
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut warned_no_route = false;
    let next_wait = |alarm: bool| {
        let rate = if alarm {
            cfg.defend_per_minute.max(cfg.per_minute)
        } else {
            cfg.per_minute
        };
        crate::p2p::peer::poisson_delay(Duration::from_secs_f64(60.0 / rate))
    };
    let mut next = tokio::time::Instant::now() + next_wait(monitor.alarmed());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = check.tick() => {
                match monitor.evaluate(crate::clock::unix_ms()) {
                    Some(true) => {
                        let s = monitor.stats();
                        tracing::warn!(
                            missing = s.missing,
                            "most recent loop packets did not come back: possible (n-1) attack or isolation; only our own packets count toward crowds until they do"
                        );
                        // Defend at once rather than after the normal-rate wait.
                        next = tokio::time::Instant::now() + next_wait(true);
                    }
                    Some(false) => tracing::info!("loop packets are coming back; alarm cleared"),
                    None => {}
                }
            }
            _ = tokio::time::sleep_until(next) => {
                next = tokio::time::Instant::now() + next_wait(monitor.alarmed());
                let us = mix.public_key();
                let mut others: Vec<_> = source
                    .candidates()
                    .await
                    .into_iter()
                    .filter(|k| *k != us)
                    .collect();
                if others.len() < cfg.middle_hops.max(1) {
                    if !warned_no_route {
                        tracing::warn!(
                            have = others.len(),
                            want = cfg.middle_hops.max(1),
                            "too few other mixes without a fee for loop packets; loops paused"
                        );
                        warned_no_route = true;
                    }
                    continue;
                }
                warned_no_route = false;
                others.shuffle(&mut rand::rngs::OsRng);
                others.truncate(cfg.middle_hops.max(1));
                let now = crate::unix_now();
                let pol = RoutePolicy {
                    crowd: cfg.tau.crowd,
                    delay_secs: cfg.tau.delay_secs,
                    expires: crate::node::quantized_expiry(now, cfg.ttl.min(mix.max_ttl())),
                };
                // Under alarm our packets are the only counted companions, so they must gather
                // in batches at least as large as the crowds waiting for them: our own first
                // layer waits for the largest crowd held (capped), unseen by anyone else.
                let first_crowd = if monitor.alarmed() {
                    pol.crowd.max(mix.largest_held_crowd().min(MAX_DEFEND_CROWD))
                } else {
                    pol.crowd
                };
                let Some((packet, key)) = build_loop(&us, &others, pol, first_crowd, &mut rand::rngs::OsRng) else {
                    continue;
                };
                if let Err(e) = monitor.sent(key, now as u64 * 1000, cfg.timeout) {
                    tracing::warn!("could not record a loop packet: {e}");
                    continue;
                }
                if let Err(e) = mix.inject_own(&packet).await {
                    tracing::warn!("could not send a loop packet: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onion::layer::{mix_tag, peel};
    use crate::store::{Store, StoreConfig};

    #[test]
    fn a_loop_comes_back_to_us_and_is_recognised_by_its_last_layer() {
        let (sk, pk) = crate::onion::layer::test_mixes(3);
        let pol = RoutePolicy {
            crowd: 5,
            delay_secs: 30,
            expires: 2_000_000_000,
        };
        let (mut p, key) = build_loop(&pk[0], &pk[1..], pol, 7, &mut rand::rngs::OsRng).unwrap();
        let order = [0usize, 1, 2, 0];
        for (i, &hop) in order.iter().enumerate() {
            assert_eq!(p.tag, mix_tag(&pk[hop]));
            let u = peel(&sk[hop], &p, &mut rand::rngs::OsRng).unwrap();
            let crowd = if i == 0 { 7 } else { 5 };
            assert_eq!(
                (u.instructions.crowd, u.instructions.delay_secs),
                (crowd, 30)
            );
            if i == 3 {
                assert!(u.instructions.drop);
                assert_eq!(loop_key(&u.shared_secret), key);
                assert!(u.outgoing.is_none());
            } else {
                assert_ne!(loop_key(&u.shared_secret), key);
                p = u.outgoing.unwrap();
            }
        }
    }

    #[test]
    fn the_alarm_rises_when_loops_stay_out_and_clears_when_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let m = LoopMonitor::open(&store, 6).unwrap();
        let t = Duration::from_secs(10);
        let ss = |i: u8| [i; 32];
        // Four loops back in time: no alarm.
        for i in 0..4u8 {
            m.sent(loop_key(&ss(i)), 1_000 * i as u64, t).unwrap();
            assert!(m.returned(&ss(i), 1_000 * i as u64 + 500));
        }
        assert!(!m.returned(&ss(99), 5_000), "not ours");
        assert_eq!(m.evaluate(20_000), None);
        assert!(!m.alarmed());
        // Five more that never come back: once their deadlines pass, 5 of the last 6 are
        // missing.
        for i in 10..15u8 {
            m.sent(loop_key(&ss(i)), 30_000 + i as u64, t).unwrap();
        }
        assert_eq!(m.evaluate(35_000), None, "not overdue yet");
        assert_eq!(m.evaluate(41_000), Some(true));
        let s = m.stats();
        assert!(s.alarm && s.missing == 5 && s.returned == 4 && s.alarms == 1);
        // The alarm survives a restart (the ledger is on disk).
        drop(m);
        let m = LoopMonitor::open(&store, 6).unwrap();
        assert!(m.alarmed());
        // Loops come back again: four fresh ones return, 4 of the last 6 are back.
        for i in 20..24u8 {
            m.sent(loop_key(&ss(i)), 50_000 + i as u64, t).unwrap();
            m.returned(&ss(i), 51_000);
        }
        assert_eq!(m.evaluate(52_000), Some(false));
        // A loop that comes back after its deadline still counts as missing.
        m.sent(loop_key(&ss(30)), 60_000, t).unwrap();
        m.returned(&ss(30), 80_000);
        m.evaluate(80_000);
        assert_eq!(m.stats().returned, 4, "only the in-time ones since restart");
    }
}
