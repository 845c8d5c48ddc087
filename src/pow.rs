//! Proof of work per packet (docs/protocol.md §1.2): the price of a place in every node's store.
//!
//! A packet's **work** is `2^128 / (h + 1)`, where `h` is the first 16 bytes of its id (SHA256d
//! of the 1024 bytes) read as a big-endian integer: the expected number of nonces a sender tries
//! to find an id that small. A packet **meets** work `W` iff `h <= floor((2^128 - 1) / W)`.
//!
//! The work a packet must carry grows with the time it asks to be kept:
//!
//! ```text
//! required(ttl) = base × (86400 + ttl) / 86400        (ttl = expires − now, in seconds)
//! ```
//!
//! so a 48 h packet costs 3× the base and a 1 h packet about 1.04×. `ttl` is measured by each
//! node when the packet arrives, so a relay never asks more than the origin paid for. The base
//! is per network: on main and test it is [`BASE_WORK`] (about 15 ms of one core here, see
//! `cargo bench --bench pow`); on regtest [`REGTEST_BASE_WORK`], so tests and demos run fast.
//!
//! Solving tries nonces from 0 up (deterministic: the same packet gets the same nonce); a batch
//! of packets is solved on all cores.

use crate::packet::{Packet, PacketError, PacketId, PACKET_LEN};
use bitcoin::hashes::{sha256d, Hash};
use namecoin::Network;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Expected nonce trials per packet at the base on main and test networks.
pub const BASE_WORK: u64 = 20_000;
/// The base on regtest: a few trials.
pub const REGTEST_BASE_WORK: u64 = 16;
/// Seconds of TTL that add one base of work.
pub const TTL_UNIT: u64 = 86_400;

/// The base work of a network.
pub fn base_work(network: Network) -> u64 {
    match network {
        Network::Regtest => REGTEST_BASE_WORK,
        Network::Mainnet | Network::Testnet => BASE_WORK,
    }
}

/// Work a packet that asks to be kept `ttl` seconds must carry, at `base`.
pub fn required_work(base: u64, ttl: u32) -> u64 {
    let w = base as u128 * (TTL_UNIT as u128 + ttl as u128) / TTL_UNIT as u128;
    w.clamp(1, u64::MAX as u128) as u64
}

/// The first 16 bytes of an id as a big-endian number.
fn head(id: &PacketId) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&id.0[..16]);
    u128::from_be_bytes(b)
}

/// The largest id head that meets `work`.
pub fn target(work: u64) -> u128 {
    u128::MAX / work.max(1) as u128
}

/// The work an id carries: `2^128 / (head + 1)`, saturated to u64.
pub fn work_of(id: &PacketId) -> u64 {
    let h = head(id);
    if h == u128::MAX {
        return 1;
    }
    (u128::MAX / (h + 1)).min(u64::MAX as u128) as u64
}

/// A packet's **score**: its work per TTL, normalised so that a packet that carries exactly the
/// work its TTL requires at base `b` scores about `b` (`work × 86400 / (86400 + ttl)`). Stores
/// evict the lowest score first.
pub fn score(id: &PacketId, ttl: u32) -> u64 {
    let w = work_of(id) as u128 * TTL_UNIT as u128 / (TTL_UNIT as u128 + ttl as u128);
    w.min(u64::MAX as u128) as u64
}

/// Whether `id` meets `work`.
pub fn meets(id: &PacketId, work: u64) -> bool {
    head(id) <= target(work)
}

/// Accept only a packet whose id carries the work its remaining TTL requires at `base`.
pub fn check(packet: &Packet, now: u32, base: u64) -> Result<(), PacketError> {
    check_id(&packet.id(), packet.expires, now, base)
}

/// [`check`] for a packet whose id (the hash of its bytes) the caller already computed.
pub fn check_id(id: &PacketId, expires: u32, now: u32, base: u64) -> Result<(), PacketError> {
    let needs = required_work(base, expires.saturating_sub(now));
    if meets(id, needs) {
        Ok(())
    } else {
        Err(PacketError::NotEnoughWork {
            has: work_of(id),
            needs,
        })
    }
}

/// Find a nonce that gives `packet` at least `work`, trying 0, 1, 2, ... Returns the
/// number of nonces tried.
pub fn solve(packet: &mut Packet, work: u64) -> u64 {
    let mut bytes = packet.encode();
    // From 0, so the same packet always gets the same nonce: a mix that re-releases a packet
    // after a crash publishes the same id, which the store deduplicates.
    let mut nonce: u64 = 0;
    let t = target(work);
    let mut tries = 0u64;
    loop {
        tries += 1;
        bytes[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_le_bytes());
        let id = sha256d::Hash::hash(&bytes).to_byte_array();
        if head(&PacketId(id)) <= t {
            packet.nonce = nonce;
            return tries;
        }
        nonce = nonce.wrapping_add(1);
    }
}

/// Where the nonce sits in the wire form.
const NONCE_AT: usize = crate::packet::NONCE_OFFSET;
const _: () = assert!(NONCE_AT + 8 <= PACKET_LEN);

/// Solve every packet for `work`, on all cores. Returns the total nonces tried.
pub fn solve_all(packets: &mut [Packet], work: u64) -> u64 {
    solve_counted(packets, work, &AtomicU64::new(0))
}

/// [`solve_all`], adding one to `done` per packet solved (for a progress line).
pub fn solve_counted(packets: &mut [Packet], work: u64, done: &AtomicU64) -> u64 {
    let one = |p: &mut Packet| {
        let t = solve(p, work);
        done.fetch_add(1, Ordering::Relaxed);
        t
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(packets.len().max(1));
    if threads <= 1 {
        return packets.iter_mut().map(one).sum();
    }
    let per = packets.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = packets
            .chunks_mut(per)
            .map(|chunk| s.spawn(move || chunk.iter_mut().map(one).sum::<u64>()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

/// [`solve_all`] for a packet list built by async code: runs on the blocking pool.
pub async fn solve_off_thread(packets: Vec<Packet>, work: u64) -> Vec<Packet> {
    solve_off_thread_counted(packets, work, Arc::new(AtomicU64::new(0))).await
}

/// [`solve_counted`] on the blocking pool.
pub async fn solve_off_thread_counted(
    mut packets: Vec<Packet>,
    work: u64,
    done: Arc<AtomicU64>,
) -> Vec<Packet> {
    match tokio::task::spawn_blocking(move || {
        solve_counted(&mut packets, work, &done);
        packets
    })
    .await
    {
        Ok(p) => p,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::BODY_LEN;
    use crate::tag::Tag;

    fn pkt() -> Packet {
        Packet {
            tag: Tag([1; 20]),
            expires: 1_000_000,
            nonce: 0,
            body: Box::new([2; BODY_LEN]),
        }
    }

    #[test]
    fn required_work_grows_with_ttl() {
        assert_eq!(required_work(1000, 0), 1000);
        assert_eq!(required_work(1000, 86_400), 2000);
        assert_eq!(required_work(1000, 2 * 86_400), 3000);
        assert!(required_work(1000, 3600) > 1000 && required_work(1000, 3600) < 1100);
        assert_eq!(required_work(0, 0), 1, "never zero");
    }

    #[test]
    fn a_solved_packet_meets_its_work_and_an_unsolved_one_rarely_does() {
        let mut p = pkt();
        let tries = solve(&mut p, 4096);
        assert!(meets(&p.id(), 4096), "after {tries} tries");
        assert!(work_of(&p.id()) >= 4096);
        // Changing any byte undoes the work (with overwhelming probability at 2^20).
        let mut q = pkt();
        solve(&mut q, 1 << 20);
        assert!(meets(&q.id(), 1 << 20));
        q.body[0] ^= 1;
        assert!(!meets(&q.id(), 1 << 20));
    }

    #[test]
    fn targets_and_work_agree_at_the_edges() {
        assert_eq!(target(1), u128::MAX);
        let mut id = PacketId([0; 32]);
        assert_eq!(work_of(&id), u64::MAX);
        id.0[..16].copy_from_slice(&target(1000).to_be_bytes());
        assert!(meets(&id, 1000) && !meets(&id, 1001));
        assert!(work_of(&id) >= 999 && work_of(&id) <= 1000);
        id.0[..16].copy_from_slice(&[0xff; 16]);
        assert_eq!(work_of(&id), 1);
    }

    #[test]
    fn solve_all_solves_every_packet() {
        let mut v: Vec<Packet> = (0..9u8)
            .map(|i| {
                let mut p = pkt();
                p.body[5] = i;
                p
            })
            .collect();
        solve_all(&mut v, 512);
        assert!(v.iter().all(|p| meets(&p.id(), 512)));
    }
}
