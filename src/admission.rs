//! The admission floor (docs/admission.md): the least **score** (work per TTL,
//! [`crate::pow::score`]) a packet must carry to be stored, modelled on Bitcoin Core's rolling
//! minimum mempool fee.
//!
//! The floor is the larger of two parts:
//!
//! - the **fill part**: the network's base while the store is at most half full
//!   ([`FILL_THRESHOLD`]); above that it rises linearly to [`FULL_FACTOR`] × base at a full store;
//! - the **rolling part**: each eviction raises it to the evicted packet's score plus 1/8
//!   ([`EVICTION_STEP`]); it decays back toward the base with a half-life of [`HALF_LIFE`]
//!   seconds (halved while the store is under half full, quartered under a quarter, as Core
//!   does), and snaps to the base once the excess is under 1/16 of the base.
//!
//! The rolling part is what a node persists ([`Rolling`], in the store's meta tree), so a
//! restart keeps the floor. This module is pure arithmetic: no I/O, time passed in.

/// Above this fraction of the quota the fill part rises.
pub const FILL_THRESHOLD: (u64, u64) = (1, 2);
/// The fill part at a full store, in bases.
pub const FULL_FACTOR: u64 = 4;
/// Seconds for the rolling part's excess over the base to halve (store at least half full).
pub const HALF_LIFE: u32 = 2 * 3600;
/// An eviction raises the rolling part to the evicted score × (1 + 1/EVICTION_STEP).
pub const EVICTION_STEP: u64 = 8;

/// The persisted, rolling part of the floor: its value when last updated, and when (unix s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    pub value: u64,
    pub at: u32,
}

impl Rolling {
    /// 12 bytes: value u64 BE ‖ at u32 BE.
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.value.to_be_bytes());
        b[8..].copy_from_slice(&self.at.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Rolling> {
        if b.len() != 12 {
            return None;
        }
        Some(Rolling {
            value: u64::from_be_bytes(b[..8].try_into().ok()?),
            at: u32::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// The floor rules of one store: its network's base and its quota.
#[derive(Debug, Clone, Copy)]
pub struct FloorRules {
    pub base: u64,
    pub max_packets: u64,
}

impl FloorRules {
    /// The rolling part at rest.
    pub fn at_rest(&self, now: u32) -> Rolling {
        Rolling {
            value: self.base,
            at: now,
        }
    }

    /// The fill part for a store holding `len` packets.
    pub fn fill_part(&self, len: u64) -> u64 {
        let max = self.max_packets.max(1) as u128;
        let start = max * FILL_THRESHOLD.0 as u128 / FILL_THRESHOLD.1 as u128;
        let len = (len as u128).min(max);
        if len <= start || max == start {
            return self.base;
        }
        let extra = self.base as u128 * (FULL_FACTOR as u128 - 1) * (len - start) / (max - start);
        (self.base as u128 + extra).min(u64::MAX as u128) as u64
    }

    /// Half-life of the rolling excess for a store holding `len` packets.
    pub fn half_life(&self, len: u64) -> u32 {
        let max = self.max_packets.max(1);
        if len < max / 4 {
            HALF_LIFE / 4
        } else if len < max / 2 {
            HALF_LIFE / 2
        } else {
            HALF_LIFE
        }
    }

    /// The rolling part decayed from its last update to `now` (never below the base).
    pub fn decayed(&self, r: Rolling, len: u64, now: u32) -> Rolling {
        let value = r.value.max(self.base);
        let excess = value - self.base;
        if excess == 0 || now <= r.at {
            return Rolling {
                value,
                at: r.at.max(now),
            };
        }
        let dt = (now - r.at) as f64;
        let left = excess as f64 * (-dt / self.half_life(len) as f64).exp2();
        let left = if left < (self.base as f64 / 16.0).max(1.0) {
            0
        } else {
            left as u64
        };
        Rolling {
            value: self.base.saturating_add(left),
            at: now,
        }
    }

    /// The floor of a store holding `len` packets whose rolling part is `r`.
    pub fn floor(&self, r: Rolling, len: u64, now: u32) -> u64 {
        self.fill_part(len).max(self.decayed(r, len, now).value)
    }

    /// The rolling part after a packet of `score` was evicted.
    pub fn after_eviction(&self, r: Rolling, score: u64, len: u64, now: u32) -> Rolling {
        let bumped = score.saturating_add(score / EVICTION_STEP + 1);
        let d = self.decayed(r, len, now);
        Rolling {
            value: d.value.max(bumped),
            at: now,
        }
    }
}

/// Announced floors are rounded down to a grid of ratio 2^(1/8) (about 9 %), so that the
/// floor a node tells its peers says little more than its order of magnitude (Core rounds its
/// `feefilter` for the same reason) and small changes need no new message.
pub fn quantize(floor: u64) -> u64 {
    if floor <= 1 {
        return floor;
    }
    let step = ((floor as f64).log2() * 8.0).floor();
    let q = (step / 8.0).exp2() as u64;
    // Float rounding must never push the announced floor above the real one.
    q.clamp(1, floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: FloorRules = FloorRules {
        base: 1000,
        max_packets: 100,
    };

    #[test]
    fn the_fill_part_is_the_base_to_half_full_then_rises_to_four_bases() {
        assert_eq!(R.fill_part(0), 1000);
        assert_eq!(R.fill_part(50), 1000);
        assert_eq!(R.fill_part(75), 2500);
        assert_eq!(R.fill_part(100), 4000);
        assert_eq!(R.fill_part(500), 4000);
        assert!(R.fill_part(51) > 1000);
    }

    #[test]
    fn an_eviction_raises_the_floor_which_then_halves_its_excess_per_half_life() {
        let r = R.after_eviction(R.at_rest(0), 9000, 100, 0);
        assert_eq!(r.value, 9000 + 1125 + 1);
        // One half-life later (full store): the excess over the base is halved.
        let d = R.decayed(r, 100, HALF_LIFE);
        assert!(
            (d.value as i64 - (1000 + 9126 / 2) as i64).abs() <= 1,
            "{d:?}"
        );
        // A store under a quarter full decays four times as fast.
        let fast = R.decayed(r, 10, HALF_LIFE / 4);
        assert!((fast.value as i64 - d.value as i64).abs() <= 1);
        // Long after, back at the base exactly.
        assert_eq!(R.decayed(r, 100, 20 * HALF_LIFE).value, 1000);
        // A later, cheaper eviction never lowers the floor.
        let again = R.after_eviction(r, 2000, 100, 1);
        assert!(again.value >= r.value - 1);
        // The floor is the larger part.
        assert_eq!(R.floor(R.at_rest(0), 100, 0), 4000);
        assert_eq!(R.floor(r, 100, 0), r.value);
    }

    #[test]
    fn rolling_round_trips_and_rejects_wrong_lengths() {
        let r = Rolling {
            value: 123_456_789,
            at: 42,
        };
        assert_eq!(Rolling::decode(&r.encode()), Some(r));
        assert_eq!(Rolling::decode(&[0; 11]), None);
    }

    #[test]
    fn quantized_floors_never_exceed_the_floor_and_step_by_about_nine_percent() {
        for f in [1u64, 2, 3, 16, 17, 1000, 20_000, 123_456_789, u64::MAX / 3] {
            let q = quantize(f);
            assert!(
                q <= f && q as u128 * 110 / 100 + 1 >= f as u128,
                "{f} -> {q}"
            );
        }
        assert_eq!(quantize(20_000), quantize(20_500));
    }
}
