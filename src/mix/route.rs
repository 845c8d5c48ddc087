//! Wrapping a message for a route: it is split into parts small enough for the route's final-hop
//! capacity; each part (its message frame, see protocol.md §3) becomes the final data of its own
//! onion with a fresh session key, so parts are unlinkable until they meet at the recipient's
//! tag. Every layer gets the same quantized expiry, so expiries relate nothing to the path.

use crate::message::{frame_parts, ClearFramer, Framer, MessageError, MessageId, FRAME_HEADER_LEN};
use crate::onion::layer::{capacity, mix_tag, wrap, BumpOnionError, HopInstructions};
use crate::packet::Packet;
use crate::tag::Tag;
use rand::RngCore;
use secp256k1::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error(transparent)]
    Onion(#[from] BumpOnionError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("route has no room for data")]
    NoRoom,
}

/// Tau values and expiry for every hop of a route.
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy {
    pub crowd: u64,
    pub delay_secs: u64,
    pub expires: u32,
}

/// The minimum delay one hop is told: the level's delay `d` plus an exponential wait of mean
/// `d / 2`, capped at `2d` (so between `d` and `3d`), drawn per hop. A release then follows
/// its input by no fixed interval an observer could look for (docs/anonymity.md, "Hop
/// delays"); the level's delay stays the minimum every hop keeps.
pub fn hop_delay(d: u64, rng: &mut dyn RngCore) -> u64 {
    use rand::Rng as _;
    if d == 0 {
        return 0;
    }
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let mean = d as f64 / 2.0;
    d + ((-u.ln()) * mean).min(2.0 * d as f64).round() as u64
}

/// Instructions for every hop of `route`: forward to the next mix's tag, the last to
/// `final_tag`, all with the same crowd and expiry, each its own [`hop_delay`]. Callers add
/// final data or a drop flag.
pub(crate) fn instructions(
    route: &[PublicKey],
    final_tag: Tag,
    pol: RoutePolicy,
    rng: &mut dyn RngCore,
) -> Vec<HopInstructions> {
    (0..route.len())
        .map(|i| HopInstructions {
            next_tag: if i + 1 < route.len() {
                mix_tag(&route[i + 1])
            } else {
                final_tag
            },
            next_expires: pol.expires,
            crowd: pol.crowd,
            delay_secs: hop_delay(pol.delay_secs, rng),
            postage: None,
            drop: false,
            final_data: None,
        })
        .collect()
}

/// Data bytes one part can carry over `route`.
pub fn part_capacity(route: &[PublicKey], pol: RoutePolicy) -> usize {
    part_capacity_with(route, pol, &[])
}

/// Data bytes one clear-framed part can carry over `route` with postage in the given hops'
/// layers.
pub fn part_capacity_with(
    route: &[PublicKey],
    pol: RoutePolicy,
    postage: &[Option<[u8; 36]>],
) -> usize {
    final_capacity_with(route, pol, postage).saturating_sub(FRAME_HEADER_LEN)
}

/// Bytes of final data (a framed part) one onion over `route` can carry, with postage in the
/// given hops' layers.
pub fn final_capacity_with(
    route: &[PublicKey],
    pol: RoutePolicy,
    postage: &[Option<[u8; 36]>],
) -> usize {
    // Sizes only: the delays drawn do not change the layer's length.
    let mut instr = instructions(route, Tag([0; 20]), pol, &mut rand::rngs::OsRng);
    for (hop, p) in instr.iter_mut().zip(postage) {
        hop.postage = *p;
    }
    let Some(last) = instr.pop() else { return 0 };
    capacity(&instr, &last)
}

/// Wrap `data` for `final_tag` through `route`; returns the relay packets to publish.
/// `postage[i]`, when given, goes in hop i's layer of every part.
#[allow(clippy::too_many_arguments)]
pub fn wrap_message(
    data: &[u8],
    final_tag: Tag,
    route: &[PublicKey],
    pol: RoutePolicy,
    postage: &[Option<[u8; 36]>],
    limit: usize,
    rng: &mut impl RngCore,
) -> Result<(MessageId, Vec<Packet>), WrapError> {
    let plan = |_: usize, _: &mut dyn RngCore| PartRoute {
        keys: route.to_vec(),
        first_delay: None,
    };
    wrap_parts(
        data,
        &ClearFramer,
        final_tag,
        route.len(),
        plan,
        pol,
        postage,
        limit,
        rng,
    )
}

/// The route of one part of a message.
#[derive(Debug, Clone)]
pub struct PartRoute {
    pub keys: Vec<PublicKey>,
    /// The minimum delay of the first layer, when it differs from the policy's (the sender's
    /// own layer, which it peels itself: nobody else sees it).
    pub first_delay: Option<u64>,
}

/// Wrap `data`, framed by `framer`, for `final_tag`, each part through the route
/// `plan(part index)` gives; every route has `hops` mixes (so all parts have the same
/// capacity).
#[allow(clippy::too_many_arguments)]
pub fn wrap_parts(
    data: &[u8],
    framer: &dyn Framer,
    final_tag: Tag,
    hops: usize,
    mut plan: impl FnMut(usize, &mut dyn RngCore) -> PartRoute,
    pol: RoutePolicy,
    postage: &[Option<[u8; 36]>],
    limit: usize,
    rng: &mut impl RngCore,
) -> Result<(MessageId, Vec<Packet>), WrapError> {
    // Capacity depends only on the number of hops and where postage is: the first part's
    // route sizes them all.
    let mut first = Some(plan(0, rng));
    let cap = first
        .as_ref()
        .filter(|r| r.keys.len() == hops)
        .map_or(0, |r| final_capacity_with(&r.keys, pol, postage));
    if cap == 0 {
        return Err(WrapError::NoRoom);
    }
    let (msg_id, parts) = match frame_parts(data, framer, cap, limit, rng) {
        Err(MessageError::NoRoom) => return Err(WrapError::NoRoom),
        r => r?,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (index, framed) in parts.into_iter().enumerate() {
        let part = match first.take() {
            Some(r) => r,
            None => plan(index, rng),
        };
        if part.keys.len() != hops {
            return Err(WrapError::NoRoom);
        }
        let mut instr = instructions(&part.keys, final_tag, pol, rng);
        for (hop, p) in instr.iter_mut().zip(postage) {
            hop.postage = *p;
        }
        if let (Some(d), Some(first)) = (part.first_delay, instr.first_mut()) {
            first.delay_secs = d;
        }
        if let Some(last) = instr.last_mut() {
            last.final_data = Some(framed);
        }
        out.push(wrap(&part.keys, &instr, pol.expires, rng)?);
    }
    Ok((msg_id, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_delays_are_drawn_per_hop_between_the_level_and_three_times_it() {
        let mut rng = rand::rngs::OsRng;
        let d: Vec<u64> = (0..500).map(|_| hop_delay(30, &mut rng)).collect();
        assert!(d.iter().all(|x| (30..=90).contains(x)), "{d:?}");
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        // Exp(15) capped at 60 has mean ≈ 14.7: the mean delay ≈ 44.7 s.
        assert!((40.0..50.0).contains(&mean), "mean {mean}");
        assert!(
            d.iter().filter(|&&x| x == 30).count() < 50,
            "not pinned at the minimum"
        );
        assert_eq!(hop_delay(0, &mut rng), 0, "no delay asked, none added");
    }
    use crate::message::Assembler;
    use crate::onion::layer::peel;
    use rand::SeedableRng;

    #[test]
    fn multi_part_message_through_three_mixes_reassembles() {
        let (sk, pk) = crate::onion::layer::test_mixes(3);
        let pol = RoutePolicy {
            crowd: 0,
            delay_secs: 0,
            expires: 1_000_000,
        };
        let per = part_capacity(&pk, pol);
        assert!(per >= 600, "{per}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let data: Vec<u8> = (0..3 * per + 5).map(|i| (i * 7) as u8).collect();
        let (id, packets) =
            wrap_message(&data, Tag([5; 20]), &pk, pol, &[], 1 << 20, &mut rng).unwrap();
        assert_eq!(packets.len(), 4);
        // Each part has its own onion: the first layers share no bytes beyond the tag.
        assert_ne!(packets[0].body[1..34], packets[1].body[1..34]);
        let mut asm = Assembler::new();
        for (seq, mut p) in packets.into_iter().enumerate() {
            for k in &sk {
                p = peel(k, &p, &mut rng).unwrap().outgoing.unwrap();
            }
            assert_eq!(p.tag, Tag([5; 20]));
            asm.push(seq as u64, &p);
        }
        let (done, partial) = asm.finish();
        assert!(partial.is_empty());
        assert_eq!(done[0].id, id);
        assert_eq!(done[0].data, data);
    }
}
