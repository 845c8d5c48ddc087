//! BuMP's onion instance: a relay packet's 1000-byte body is a Sphinx onion with a 934-byte
//! payload area, and each layer's HMAC covers the relay packet's `tag ‖ expires`, so changing
//! either kills the packet at the next mix.
//!
//! A mix is addressed by its public key; its **mix tag** is `HASH160("bump/mix/1" ‖ compressed
//! public key)`, the tag under which relay packets for it are published.
//!
//! Each hop's payload is a TLV stream (BigSize type, BigSize length, value), types ascending:
//!
//! | type | value | meaning |
//! |------|-------|---------|
//! | 2    | 20 bytes | tag of the packet this mix publishes (next mix's tag, or the final tag) |
//! | 4    | u32 BE | `expires` of the packet this mix publishes (chosen by the sender) |
//! | 6    | u64 BE | Tau minimum crowd: packets that must enter the pool after this one |
//! | 8    | u64 BE | Tau minimum delay in seconds |
//! | 10   | 36 bytes | postage outpoint (txid ‖ vout LE), optional |
//! | 12   | empty | drop: a dummy; the mix discards it after the Tau wait |
//! | 14   | ≤ 1000 bytes | final body data: this mix is the last; it publishes a packet whose body is this data padded with random bytes to 1000 |
//!
//! Unknown even types are an error, unknown odd types are ignored (BOLT #1 "it's OK to be odd").
//! Relay packets and final packets are both 1024-byte packets with random-looking bodies.

use super::{bigsize, create_keyed, peel as sphinx_peel, read_bigsize, OnionError, OVERHEAD};
use crate::packet::{Packet, BODY_LEN};
use crate::tag::{Tag, TAG_LEN};
use bitcoin::hashes::{hash160, Hash};
use rand::RngCore;
use secp256k1::{PublicKey, SecretKey};

/// Payload area of a BuMP onion: the body minus version, key and HMAC.
pub const AREA: usize = BODY_LEN - OVERHEAD;
/// Most hops a route may have.
pub const MAX_HOPS: usize = 8;

/// Parse a mix public key written as 66 hex digits (compressed secp256k1).
pub fn parse_mix_key(s: &str) -> Option<PublicKey> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| PublicKey::from_slice(&b).ok())
}

/// Test mixes: secret keys `[1; 32]`, `[2; 32]`, ... and their public keys.
#[cfg(test)]
pub(crate) fn test_mixes(n: u8) -> (Vec<SecretKey>, Vec<PublicKey>) {
    let secp = secp256k1::Secp256k1::new();
    let sk: Vec<SecretKey> = (1..=n)
        .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
        .collect();
    let pk = sk
        .iter()
        .map(|k| PublicKey::from_secret_key(&secp, k))
        .collect();
    (sk, pk)
}

/// The tag a mix listens on.
pub fn mix_tag(key: &PublicKey) -> Tag {
    let mut b = b"bump/mix/1".to_vec();
    b.extend_from_slice(&key.serialize());
    Tag(hash160::Hash::hash(&b).to_byte_array())
}

/// What one mix is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopInstructions {
    pub next_tag: Tag,
    pub next_expires: u32,
    pub crowd: u64,
    pub delay_secs: u64,
    pub postage: Option<[u8; 36]>,
    pub drop: bool,
    /// Present only for the last hop.
    pub final_data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BumpOnionError {
    #[error(transparent)]
    Onion(#[from] OnionError),
    #[error("malformed hop instructions: {0}")]
    Tlv(&'static str),
    #[error("a route needs 1 to {MAX_HOPS} hops and one instruction set per hop")]
    Route,
    #[error("final data of {0} bytes does not fit (at most {1} with this route)")]
    TooMuchData(usize, usize),
}

fn tlv(t: u64, v: &[u8], out: &mut Vec<u8>) {
    bigsize(t, out);
    bigsize(v.len() as u64, out);
    out.extend_from_slice(v);
}

impl HopInstructions {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        tlv(2, &self.next_tag.0, &mut out);
        tlv(4, &self.next_expires.to_be_bytes(), &mut out);
        tlv(6, &self.crowd.to_be_bytes(), &mut out);
        tlv(8, &self.delay_secs.to_be_bytes(), &mut out);
        if let Some(p) = &self.postage {
            tlv(10, p, &mut out);
        }
        if self.drop {
            tlv(12, &[], &mut out);
        }
        if let Some(d) = &self.final_data {
            tlv(14, d, &mut out);
        }
        out
    }

    pub fn decode(mut b: &[u8]) -> Result<HopInstructions, BumpOnionError> {
        let bad = BumpOnionError::Tlv;
        let (mut tag, mut exp, mut crowd, mut delay) = (None, None, None, None);
        let (mut postage, mut drop, mut final_data) = (None, false, None);
        let mut last_type: Option<u64> = None;
        while !b.is_empty() {
            let (t, n) = read_bigsize(b).ok_or(bad("type"))?;
            b = &b[n..];
            let (len, n) = read_bigsize(b).ok_or(bad("length"))?;
            b = &b[n..];
            let len = usize::try_from(len).map_err(|_| bad("length"))?;
            if len > b.len() {
                return Err(bad("value runs past the payload"));
            }
            if last_type.map(|l| t <= l).unwrap_or(false) {
                return Err(bad("types not strictly ascending"));
            }
            last_type = Some(t);
            let v = &b[..len];
            b = &b[len..];
            let fixed = |want: usize| {
                if v.len() == want {
                    Ok(v)
                } else {
                    Err(bad("wrong value length"))
                }
            };
            match t {
                2 => tag = Some(Tag(fixed(TAG_LEN)?.try_into().map_err(|_| bad("tag"))?)),
                4 => {
                    exp = Some(u32::from_be_bytes(
                        fixed(4)?.try_into().map_err(|_| bad("expires"))?,
                    ))
                }
                6 => {
                    crowd = Some(u64::from_be_bytes(
                        fixed(8)?.try_into().map_err(|_| bad("crowd"))?,
                    ))
                }
                8 => {
                    delay = Some(u64::from_be_bytes(
                        fixed(8)?.try_into().map_err(|_| bad("delay"))?,
                    ))
                }
                10 => postage = Some(fixed(36)?.try_into().map_err(|_| bad("postage"))?),
                12 => {
                    fixed(0)?;
                    drop = true;
                }
                14 => {
                    if v.len() > BODY_LEN {
                        return Err(bad("final data longer than a body"));
                    }
                    final_data = Some(v.to_vec());
                }
                t if t % 2 == 0 => return Err(bad("unknown even type")),
                _ => {}
            }
        }
        Ok(HopInstructions {
            next_tag: tag.ok_or(bad("missing tag"))?,
            next_expires: exp.ok_or(bad("missing expires"))?,
            crowd: crowd.ok_or(bad("missing crowd"))?,
            delay_secs: delay.ok_or(bad("missing delay"))?,
            postage,
            drop,
            final_data,
        })
    }
}

/// Associated data of a layer: the relay packet's tag and expires, as on the wire.
fn associated(tag: &Tag, expires: u32) -> [u8; TAG_LEN + 4] {
    let mut ad = [0u8; TAG_LEN + 4];
    ad[..TAG_LEN].copy_from_slice(&tag.0);
    ad[TAG_LEN..].copy_from_slice(&expires.to_le_bytes());
    ad
}

/// Most final data a route of `hops` can carry given the instructions of the forwarding hops.
pub fn capacity(forwarding: &[HopInstructions], last_without_data: &HopInstructions) -> usize {
    let framed = |p: usize| {
        let mut v = Vec::new();
        bigsize(p as u64, &mut v);
        v.len() + p + super::HMAC_LEN
    };
    let used: usize = forwarding.iter().map(|h| framed(h.encode().len())).sum();
    let base = last_without_data.encode().len();
    // Final TLV: type (1) + BigSize length (≤ 3) + data; the payload length prefix ≤ 3.
    let room = AREA.saturating_sub(used + base + 1 + 3 + 3 + super::HMAC_LEN);
    room.min(BODY_LEN)
}

/// Wrap a message for a route of mixes. `first_expires` is the expiry of the relay packet the
/// sender publishes (addressed to `route[0]`). Returns that packet.
pub fn wrap(
    route: &[PublicKey],
    instructions: &[HopInstructions],
    first_expires: u32,
    rng: &mut impl RngCore,
) -> Result<Packet, BumpOnionError> {
    wrap_keyed(route, instructions, first_expires, rng).map(|(p, _)| p)
}

/// Like [`wrap`], also returning each hop's shared secret (a mix's loop packets are recognised
/// on their return by the secret of their last layer, which the mix itself peels).
pub fn wrap_keyed(
    route: &[PublicKey],
    instructions: &[HopInstructions],
    first_expires: u32,
    rng: &mut impl RngCore,
) -> Result<(Packet, Vec<[u8; 32]>), BumpOnionError> {
    if route.is_empty() || route.len() > MAX_HOPS || route.len() != instructions.len() {
        return Err(BumpOnionError::Route);
    }
    let mut session = [0u8; 32];
    let session = loop {
        rng.fill_bytes(&mut session);
        if let Ok(k) = SecretKey::from_slice(&session) {
            break k;
        }
    };
    let mut ads = Vec::with_capacity(route.len());
    let mut expires = first_expires;
    for (key, instr) in route.iter().zip(instructions) {
        ads.push(associated(&mix_tag(key), expires));
        expires = instr.next_expires;
    }
    let ad_refs: Vec<&[u8]> = ads.iter().map(|a| &a[..]).collect();
    let payloads: Vec<Vec<u8>> = instructions.iter().map(|i| i.encode()).collect();
    let (onion, secrets) =
        create_keyed(&session, route, &payloads, &ad_refs, AREA).map_err(|e| match e {
            OnionError::TooLarge { .. } => {
                let last = instructions
                    .last()
                    .map(|i| i.final_data.as_ref().map(|d| d.len()).unwrap_or(0))
                    .unwrap_or(0);
                let mut bare = instructions[instructions.len() - 1].clone();
                bare.final_data = None;
                BumpOnionError::TooMuchData(
                    last,
                    capacity(&instructions[..instructions.len() - 1], &bare),
                )
            }
            e => BumpOnionError::Onion(e),
        })?;
    let mut body = Box::new([0u8; BODY_LEN]);
    body.copy_from_slice(&onion);
    Ok((
        Packet {
            tag: mix_tag(&route[0]),
            expires: first_expires,
            nonce: 0,
            body,
        },
        secrets,
    ))
}

/// What a mix gets from peeling one relay packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    pub instructions: HopInstructions,
    /// The packet to publish after the Tau wait (`None` for a dummy to drop).
    pub outgoing: Option<Packet>,
    pub shared_secret: [u8; 32],
}

/// Peel a relay packet addressed to the mix with `secret`.
pub fn peel(
    secret: &SecretKey,
    packet: &Packet,
    rng: &mut impl RngCore,
) -> Result<Peeled, BumpOnionError> {
    let ad = associated(&packet.tag, packet.expires);
    let peeled = sphinx_peel(secret, &packet.body[..], &ad, AREA)?;
    let instructions = HopInstructions::decode(&peeled.payload)?;
    let outgoing = if instructions.drop {
        None
    } else {
        let mut body = Box::new([0u8; BODY_LEN]);
        match (&peeled.next, &instructions.final_data) {
            (Some(next), None) => body.copy_from_slice(next),
            (None, Some(data)) => {
                rng.fill_bytes(&mut body[..]);
                body[..data.len()].copy_from_slice(data);
            }
            (Some(_), Some(_)) => {
                return Err(BumpOnionError::Tlv("final data at a forwarding hop"))
            }
            (None, None) => return Err(BumpOnionError::Tlv("last hop without final data")),
        }
        Some(Packet {
            tag: instructions.next_tag,
            expires: instructions.next_expires,
            nonce: 0,
            body,
        })
    };
    Ok(Peeled {
        instructions,
        outgoing,
        shared_secret: peeled.shared_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mixes(n: u8) -> (Vec<SecretKey>, Vec<PublicKey>) {
        test_mixes(n)
    }

    fn route_instructions(pk: &[PublicKey], final_tag: Tag, data: Vec<u8>) -> Vec<HopInstructions> {
        let n = pk.len();
        (0..n)
            .map(|i| HopInstructions {
                next_tag: if i + 1 < n {
                    mix_tag(&pk[i + 1])
                } else {
                    final_tag
                },
                next_expires: 7200 * (i as u32 + 2),
                crowd: 3,
                delay_secs: 30,
                postage: None,
                drop: false,
                final_data: (i + 1 == n).then(|| data.clone()),
            })
            .collect()
    }

    #[test]
    fn three_hops_carry_at_least_600_bytes_and_five_hops_work() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for hops in [3u8, 5] {
            let (sk, pk) = mixes(hops);
            let mut bare = route_instructions(&pk, Tag([9; 20]), vec![]);
            let last = bare.pop().unwrap();
            let cap = capacity(
                &bare,
                &HopInstructions {
                    final_data: None,
                    ..last
                },
            );
            if hops == 3 {
                assert!(cap >= 600, "3 hops carry {cap} bytes");
            }
            let data: Vec<u8> = (0..cap).map(|i| i as u8).collect();
            let instr = route_instructions(&pk, Tag([9; 20]), data.clone());
            let mut packet = wrap(&pk, &instr, 3600, &mut rng).unwrap();
            assert_eq!(packet.tag, mix_tag(&pk[0]));
            for i in 0..hops as usize {
                let u = peel(&sk[i], &packet, &mut rng).unwrap();
                assert_eq!(u.instructions, instr[i]);
                packet = u.outgoing.unwrap();
            }
            assert_eq!(packet.tag, Tag([9; 20]));
            assert_eq!(&packet.body[..data.len()], &data[..]);
            // One byte more does not fit.
            let too_much = route_instructions(&pk, Tag([9; 20]), vec![0; cap + 1]);
            assert!(matches!(
                wrap(&pk, &too_much, 3600, &mut rng),
                Err(BumpOnionError::TooMuchData(..))
            ));
        }
    }

    #[test]
    fn changing_tag_expires_or_any_body_bit_kills_the_packet() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let (sk, pk) = mixes(3);
        let instr = route_instructions(&pk, Tag([9; 20]), b"hello".to_vec());
        let packet = wrap(&pk, &instr, 3600, &mut rng).unwrap();
        let mut p = packet.clone();
        p.expires += 1;
        assert!(peel(&sk[0], &p, &mut rng).is_err());
        let mut p = packet.clone();
        p.tag.0[0] ^= 1;
        assert!(peel(&sk[0], &p, &mut rng).is_err());
        for pos in (0..BODY_LEN).step_by(37) {
            let mut p = packet.clone();
            p.body[pos] ^= 0x80;
            assert!(
                peel(&sk[0], &p, &mut rng).is_err(),
                "flip at {pos} survived"
            );
        }
        // A flip in the second layer's packet is caught by the second mix.
        let mut second = peel(&sk[0], &packet, &mut rng).unwrap().outgoing.unwrap();
        second.body[500] ^= 1;
        assert!(peel(&sk[1], &second, &mut rng).is_err());
    }

    #[test]
    fn tlv_rules() {
        let h = HopInstructions {
            next_tag: Tag([1; 20]),
            next_expires: 5,
            crowd: 2,
            delay_secs: 3,
            postage: Some([4; 36]),
            drop: true,
            final_data: None,
        };
        assert_eq!(HopInstructions::decode(&h.encode()).unwrap(), h);
        let mut odd = h.encode();
        tlv(101, b"ignored", &mut odd);
        assert_eq!(HopInstructions::decode(&odd).unwrap(), h);
        let mut even = h.encode();
        tlv(100, b"", &mut even);
        assert!(HopInstructions::decode(&even).is_err());
        assert!(HopInstructions::decode(&h.encode()[..10]).is_err());
        let mut out_of_order = Vec::new();
        tlv(4, &5u32.to_be_bytes(), &mut out_of_order);
        tlv(2, &[1; 20], &mut out_of_order);
        assert!(HopInstructions::decode(&out_of_order).is_err());
    }

    #[test]
    fn dummies_are_dropped_at_their_hop() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let (sk, pk) = mixes(2);
        let mut instr = route_instructions(&pk, Tag([9; 20]), b"x".to_vec());
        instr[1].drop = true;
        let p = wrap(&pk, &instr, 3600, &mut rng).unwrap();
        let hop1 = peel(&sk[0], &p, &mut rng).unwrap().outgoing.unwrap();
        let last = peel(&sk[1], &hop1, &mut rng).unwrap();
        assert!(last.instructions.drop);
        assert!(last.outgoing.is_none());
    }
}
