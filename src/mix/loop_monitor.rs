//! The loop ledger and the (n-1) alarm: which of our loop packets are out, which came back in
//! time, and whether most recent ones are missing (the alarm). It knows nothing of how loops
//! are built or sent ([`super::loops`]) nor of the mix that peels them ([`super::mixer`]), which
//! asks it [`LoopMonitor::returned`] and [`LoopMonitor::alarmed`].
//!
//! Persistence (table `ext/loops`): key = SHA-256 of the last layer's shared secret (see
//! [`loop_key`]), value = sent ms ‖ deadline ms ‖ returned ms (0 = not yet), u64 BE each. At
//! most [`MAX_TRACKED`] loops are kept, oldest forgotten first.

use crate::store::{Codec, Store, StoreError, Table, TableSpec};
use crate::sync::Locked;
use bitcoin::hashes::{sha256, Hash};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Loops remembered at most.
pub const MAX_TRACKED: usize = 1024;

struct LoopTable;
impl TableSpec for LoopTable {
    const NAME: &'static str = "loops";
    type Key = [u8; 32];
    type Value = Record;
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

impl Codec for Record {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.sent.to_be_bytes());
        v.extend_from_slice(&self.deadline.to_be_bytes());
        v.extend_from_slice(&self.returned.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Record> {
        if v.len() != 24 {
            return None;
        }
        Some(Record {
            sent: u64::decode(&v[..8])?,
            deadline: u64::decode(&v[8..16])?,
            returned: u64::decode(&v[16..])?,
        })
    }
}

impl Record {
    fn back_in_time(&self) -> bool {
        self.returned != 0 && self.returned <= self.deadline
    }
}

/// The loop ledger and the alarm.
pub struct LoopMonitor {
    table: Table<LoopTable>,
    window: usize,
    alarm: AtomicBool,
    stats: Mutex<LoopStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The loop ledger key for a layer's shared secret.
pub fn loop_key(shared_secret: &[u8; 32]) -> [u8; 32] {
    // Domain-separated from the replay cache's plain SHA-256.
    let mut b = b"bump/loop/1".to_vec();
    b.extend_from_slice(shared_secret);
    sha256::Hash::hash(&b).to_byte_array()
}

impl LoopMonitor {
    pub fn open(store: &Store, window: usize) -> Result<LoopMonitor, LoopError> {
        let m = LoopMonitor {
            table: store.table::<LoopTable>()?,
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
        self.table.iter().filter_map(|r| r.ok()).collect()
    }

    /// Remember a loop we just made.
    pub fn sent(&self, key: [u8; 32], now_ms: u64, timeout: Duration) -> Result<(), LoopError> {
        let r = Record {
            sent: now_ms,
            deadline: now_ms.saturating_add(timeout.as_millis() as u64),
            returned: 0,
        };
        self.table.insert(&key, &r)?;
        if self.table.len() > MAX_TRACKED {
            let mut all = self.records();
            all.sort_by_key(|(_, r)| r.sent);
            for (k, _) in all.iter().take(all.len() - MAX_TRACKED) {
                self.table.remove(k)?;
            }
        }
        self.stats.locked().sent += 1;
        Ok(())
    }

    /// A packet peeled with this shared secret: one of our loops coming back? Marks it.
    pub fn returned(&self, shared_secret: &[u8; 32], now_ms: u64) -> bool {
        let key = loop_key(shared_secret);
        let Ok(Some(mut r)) = self.table.get(&key) else {
            return false;
        };
        if r.returned == 0 {
            r.returned = now_ms.max(1);
            let _ = self.table.insert(&key, &r);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

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
