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
//! The ledger and the alarm live in [`super::loop_monitor`]; this module builds and sends.

use super::loop_monitor::{loop_key, LoopMonitor};
use super::mixer::Mixer;
use super::route::{instructions, RoutePolicy};
use super::send::{RouteSource, SendService};
use super::tau::Tau;
use crate::onion::layer::wrap_keyed;
use crate::tag::Tag;

use rand::seq::SliceRandom;
use rand::RngCore;

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Mean loops per minute in normal times (0 = off).
    pub per_minute: f64,
    /// Mean loops per minute while the alarm is raised.
    pub defend_per_minute: f64,
    /// Other mixes on each loop (between our two layers).
    pub middle_hops: usize,
    /// Tau values of every layer (a standard level, the same as real traffic).
    pub tau: Tau,
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
            tau: super::tau::TauLevel::default_level().into(),
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
    let mut instr = instructions(&route, Tag(random_tag), pol, rng);
    instr.last_mut()?.drop = true;
    instr.first_mut()?.crowd = first_crowd;
    let (packet, secrets) = wrap_keyed(&route, &instr, pol.expires, rng).ok()?;
    Some((packet, loop_key(secrets.last()?)))
}

/// Send loops until shutdown; re-evaluate the alarm every second.
pub async fn run(
    mix: Arc<Mixer>,
    sender: Arc<SendService>,
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
        crowd = cfg.tau.crowd,
        delay_secs = cfg.tau.delay_secs,
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
                let pol = match sender.own_policy(cfg.tau, cfg.ttl, now) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("loop packets stopped: {e}");
                        return;
                    }
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
            assert_eq!(u.instructions.crowd, crowd);
            assert!((30..=90).contains(&u.instructions.delay_secs));
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
}
