//! Cover traffic: dummy packets at a Poisson rate, indistinguishable on the wire from real relay
//! packets (same size, same onion, same Tau values), routed through mixes and marked *drop* at
//! their last hop, which discards them at their release time. They never produce a final
//! packet, so no user ever sees one. Routes are drawn from the send service's own route
//! ([`super::send::RouteSource`]): the mixes given with `--cover-via`, or else the Namecoin
//! directory's mixes that ask no fee (paying postage for every dummy is not built). Tau values
//! and expiry come from [`SendService::policy`], the same check every send passes. Like a real
//! send, a dummy starts in this node's own pool ([`SendService::submit`]): its first layer is
//! ours, peeled here, with the same per-packet random delay.

use super::route::{instructions, RoutePolicy};
use super::send::{RouteSource, SendService};
use super::tau::Tau;
use crate::onion::layer::wrap;
use crate::tag::Tag;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use secp256k1::PublicKey;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Cover traffic settings.
#[derive(Debug, Clone)]
pub struct CoverConfig {
    /// Mean dummies per minute (0 = off).
    pub per_minute: f64,
    pub tau: Tau,
    /// Seconds; capped at the node's maximum.
    pub ttl: u32,
}

/// Build one dummy relay packet through a random route drawn from `via`: a random ordering of
/// 1 to [`crate::names::DEFAULT_HOPS`] of them, after our own mix `own` when given (its layer
/// waits `own_delay`, as a real send's own layer does).
pub fn dummy(
    own: Option<(PublicKey, u64)>,
    via: &[PublicKey],
    pol: RoutePolicy,
    rng: &mut impl RngCore,
) -> Option<crate::packet::Packet> {
    let mut others: Vec<PublicKey> = via
        .iter()
        .filter(|k| Some(**k) != own.map(|o| o.0))
        .copied()
        .collect();
    if others.is_empty() {
        return None;
    }
    others.shuffle(&mut rand::rngs::OsRng);
    let hops = rand::rngs::OsRng.gen_range(1..=others.len().min(crate::names::DEFAULT_HOPS));
    others.truncate(hops);
    let mut route: Vec<PublicKey> = own.map(|o| o.0).into_iter().collect();
    route.extend(others);
    let mut random_tag = [0u8; 20];
    rng.fill_bytes(&mut random_tag);
    // Built exactly like a real message's route, except that the last hop drops it.
    let mut instr = instructions(&route, Tag(random_tag), pol, rng);
    if let Some(last) = instr.last_mut() {
        last.drop = true;
    }
    if let (Some((_, d)), Some(first)) = (own, instr.first_mut()) {
        first.delay_secs = d;
    }
    wrap(&route, &instr, pol.expires, rng).ok()
}

/// Publish dummies until shutdown.
pub async fn run(
    sender: Arc<SendService>,
    cfg: CoverConfig,
    via: RouteSource,
    shutdown: CancellationToken,
) {
    if cfg.per_minute <= 0.0 {
        return;
    }
    let mean = Duration::from_secs_f64(60.0 / cfg.per_minute);
    tracing::info!(
        per_minute = cfg.per_minute,
        via = %via.describe(),
        crowd = cfg.tau.crowd,
        delay_secs = cfg.tau.delay_secs,
        "cover traffic on"
    );
    let mut warned = false;
    loop {
        let wait = crate::p2p::peer::poisson_delay(mean);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let now = crate::unix_now();
        let pol = match sender.own_policy(cfg.tau, cfg.ttl, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cover traffic stopped: {e}");
                return;
            }
        };
        let mixes = via.candidates().await;
        if mixes.is_empty() {
            if !warned {
                tracing::warn!("no mixes to route cover traffic through; cover paused");
                warned = true;
            }
            continue;
        }
        warned = false;
        let own = sender.own_mix().map(|k| {
            (
                k,
                SendService::own_first_delay(cfg.tau, &mut rand::rngs::OsRng),
            )
        });
        if let Some(p) = dummy(own, &mixes, pol, &mut rand::rngs::OsRng) {
            if let Err(e) = sender.submit(vec![p], now).await {
                tracing::warn!("could not publish a cover packet: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onion::layer::{mix_tag, peel};

    #[test]
    fn dummies_look_like_relay_packets_and_die_at_their_last_hop() {
        let (sk, pk) = crate::onion::layer::test_mixes(3);
        let pol = RoutePolicy {
            crowd: 1,
            delay_secs: 5,
            expires: 2_000_000_000,
        };
        for _ in 0..20 {
            let mut p = dummy(None, &pk, pol, &mut rand::rngs::OsRng).unwrap();
            assert_eq!(p.expires, pol.expires);
            // Follow it through whichever mixes it was routed to.
            let mut hops = 0;
            loop {
                let i = pk
                    .iter()
                    .position(|k| mix_tag(k) == p.tag)
                    .expect("addressed to one of the mixes");
                let u = peel(&sk[i], &p, &mut rand::rngs::OsRng).unwrap();
                assert_eq!(u.instructions.crowd, 1, "same Tau values as real traffic");
                assert!(
                    (5..=15).contains(&u.instructions.delay_secs),
                    "a hop delay drawn like real traffic's: {}",
                    u.instructions.delay_secs
                );
                hops += 1;
                match u.outgoing {
                    Some(next) => p = next,
                    None => {
                        assert!(u.instructions.drop);
                        break;
                    }
                }
            }
            assert!((1..=3).contains(&hops));
        }
        // Started in our own pool: our layer first, with our own delay, then others only.
        let (own_sk, own_pk) = (sk[0], pk[0]);
        for _ in 0..20 {
            let p = dummy(Some((own_pk, 77)), &pk, pol, &mut rand::rngs::OsRng).unwrap();
            assert_eq!(p.tag, mix_tag(&own_pk));
            let u = peel(&own_sk, &p, &mut rand::rngs::OsRng).unwrap();
            assert_eq!(u.instructions.delay_secs, 77);
            let next = u.outgoing.expect("goes on to another mix");
            assert_ne!(next.tag, mix_tag(&own_pk), "our mix appears once");
        }
        assert!(dummy(Some((own_pk, 1)), &pk[..1], pol, &mut rand::rngs::OsRng).is_none());
    }
}
