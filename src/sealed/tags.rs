//! Tags of sealed messages that do not link over time (docs/protocol.md §8.3).
//!
//! - A group's tag for day-slot `s` (`s = unix time / 86400`) is the first 20 bytes of
//!   HMAC-SHA256(K_tag, "bump/tag/1" ‖ s as u32 BE), K_tag derived from the group key. Without
//!   the key, two days' tags of one group look unrelated.
//! - A direct message goes to its recipient's **inbox bucket** tag: the first 20 bytes of
//!   SHA-256("bump/inbox/1" ‖ s u32 BE ‖ bucket), bucket = first byte of
//!   SHA-256("bump/bucket/1" ‖ recipient x-only key). Anyone can compute it: it reveals one of
//!   256 buckets, and readers trial-decrypt only their bucket's messages.

use super::keys::{GroupKey, PublicId};
use crate::tag::Tag;
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};

pub const SLOT_SECS: u32 = 86_400;

pub fn slot(now: u32) -> u32 {
    now / SLOT_SECS
}

fn tag20(h: &[u8]) -> Tag {
    let mut t = [0u8; 20];
    t.copy_from_slice(&h[..20]);
    Tag(t)
}

pub fn group_tag(g: &GroupKey, slot: u32) -> Tag {
    let mut e = hmac::HmacEngine::<sha256::Hash>::new(&g.tag_key());
    e.input(b"bump/tag/1");
    e.input(&slot.to_be_bytes());
    tag20(hmac::Hmac::<sha256::Hash>::from_engine(e).as_byte_array())
}

/// The slots a reader must read at `now` to see every unexpired message: from the slot of
/// `now − max_ttl` to the slot of `now + 600` (a sender's clock may run ahead).
pub fn read_slots(now: u32, max_ttl: u32) -> std::ops::RangeInclusive<u32> {
    slot(now.saturating_sub(max_ttl))..=slot(now.saturating_add(600))
}

pub fn bucket(id: &PublicId) -> u8 {
    let mut e = sha256::Hash::engine();
    e.input(b"bump/bucket/1");
    e.input(&id.to_bytes());
    sha256::Hash::from_engine(e).as_byte_array()[0]
}

pub fn inbox_tag(bucket: u8, slot: u32) -> Tag {
    let mut e = sha256::Hash::engine();
    e.input(b"bump/inbox/1");
    e.input(&slot.to_be_bytes());
    e.input(&[bucket]);
    tag20(sha256::Hash::from_engine(e).as_byte_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_tags_rotate_per_day_and_differ_between_groups() {
        let (a, b) = (GroupKey([1; 32]), GroupKey([2; 32]));
        assert_ne!(group_tag(&a, 100), group_tag(&a, 101));
        assert_ne!(group_tag(&a, 100), group_tag(&b, 100));
        assert_eq!(group_tag(&a, 100), group_tag(&GroupKey([1; 32]), 100));
        // A reader at noon of day 10 with a 48 h TTL reads days 8..=10.
        assert_eq!(read_slots(10 * 86_400 + 43_200, 172_800), 8..=10);
        // Just before midnight a sender's day may already be tomorrow.
        assert_eq!(read_slots(11 * 86_400 - 100, 172_800), 8..=11);
    }
}
