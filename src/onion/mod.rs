//! Sphinx onions as specified by Lightning's BOLT #4, with the size of the hop-payload area as a
//! parameter (1300 bytes in Lightning; BuMP's own size is set where the onion is put in a
//! packet body).
//!
//! An onion is `version (1) ‖ ephemeral public key (33) ‖ hop payloads (area) ‖ HMAC (32)`.
//! Each hop's slice of the area is `BigSize(len) ‖ payload ‖ HMAC of the next layer`; an HMAC of
//! 32 zero bytes marks the last hop. Creation and peeling share one set of primitives:
//! [`hop_keys`] (ECDH shared secret and key blinding), [`derive_key`] (`rho`, `mu`, `pad`),
//! [`xor_stream`] (ChaCha20 with a zero nonce), and [`layer_hmac`].

use bitcoin::hashes::hmac::{Hmac, HmacEngine};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use secp256k1::ecdh::SharedSecret;
#[cfg(test)]
use secp256k1::Secp256k1;
use secp256k1::{PublicKey, Scalar, SecretKey};
use subtle::ConstantTimeEq;

pub const VERSION: u8 = 0;
pub const HMAC_LEN: usize = 32;
/// Bytes around the payload area: version, public key, HMAC.
pub const OVERHEAD: usize = 1 + 33 + HMAC_LEN;
/// Lightning's payload area.
pub const LIGHTNING_AREA: usize = 1300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionError {
    #[error("onion must be {want} bytes, got {got}")]
    WrongLength { want: usize, got: usize },
    #[error("unknown onion version {0}")]
    Version(u8),
    #[error("invalid ephemeral public key")]
    BadKey,
    #[error("HMAC check failed")]
    Hmac,
    #[error("hop payloads need {need} bytes, the area holds {area}")]
    TooLarge { need: usize, area: usize },
    #[error("need as many payloads as hops, and at least one")]
    HopCount,
    #[error("malformed hop payload length")]
    BadLength,
}

/// HMAC-SHA256 of `msg` keyed with `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut e = HmacEngine::<sha256::Hash>::new(key);
    for p in parts {
        e.input(p);
    }
    Hmac::<sha256::Hash>::from_engine(e).to_byte_array()
}

/// BOLT #4 key derivation: HMAC-SHA256 keyed with the key type's ASCII name.
pub fn derive_key(key_type: &[u8], shared_secret: &[u8; 32]) -> [u8; 32] {
    hmac(key_type, &[shared_secret])
}

/// XOR `data` with the ChaCha20 stream of `key` (zero nonce), starting `skip` bytes into it.
pub fn xor_stream(key: &[u8; 32], skip: usize, data: &mut [u8]) {
    let mut c = chacha20::ChaCha20::new(key.into(), &[0u8; 12].into());
    if skip > 0 {
        let mut sink = vec![0u8; skip];
        c.apply_keystream(&mut sink);
    }
    c.apply_keystream(data);
}

/// The HMAC that authenticates one layer: keyed with `mu`, over the payload area and the
/// associated data.
pub fn layer_hmac(mu: &[u8; 32], area: &[u8], associated: &[u8]) -> [u8; 32] {
    hmac(mu, &[area, associated])
}

/// Shared secret and next ephemeral key for one hop, from either side: the sender passes its
/// ephemeral secret and the hop's public key; the hop passes its secret and the ephemeral key.
/// Returns (shared secret, blinding factor).
pub fn hop_keys(
    ephemeral_pub: &PublicKey,
    point: &PublicKey,
    secret: &SecretKey,
) -> ([u8; 32], Scalar) {
    let ss = SharedSecret::new(point, secret).secret_bytes();
    let mut e = sha256::Hash::engine();
    e.input(&ephemeral_pub.serialize());
    e.input(&ss);
    let b = sha256::Hash::from_engine(e).to_byte_array();
    // A SHA-256 output is a valid scalar except with negligible probability.
    let blinding = Scalar::from_be_bytes(b).unwrap_or(Scalar::ONE);
    (ss, blinding)
}

/// BigSize encoding (BOLT #1).
pub fn bigsize(n: u64, out: &mut Vec<u8>) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Read a minimally encoded BigSize; returns (value, bytes used).
pub fn read_bigsize(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let (v, n) = match first {
        0xfd => (u16::from_be_bytes(b.get(1..3)?.try_into().ok()?) as u64, 3),
        0xfe => (u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as u64, 5),
        0xff => (u64::from_be_bytes(b.get(1..9)?.try_into().ok()?), 9),
        x => (x as u64, 1),
    };
    let minimal = match n {
        3 => v >= 0xfd,
        5 => v > 0xffff,
        9 => v > 0xffff_ffff,
        _ => true,
    };
    minimal.then_some((v, n))
}

fn framed_len(payload: &[u8]) -> usize {
    let mut v = Vec::new();
    bigsize(payload.len() as u64, &mut v);
    v.len() + payload.len() + HMAC_LEN
}

/// Build an onion for `hops` carrying `payloads` (one per hop, without length prefix), every
/// layer authenticated with the same associated data (as Lightning does).
pub fn create(
    session_key: &SecretKey,
    hops: &[PublicKey],
    payloads: &[Vec<u8>],
    associated: &[u8],
    area: usize,
) -> Result<Vec<u8>, OnionError> {
    let ads = vec![associated; hops.len()];
    create_with_ad(session_key, hops, payloads, &ads, area)
}

/// Like [`create`], with associated data per hop: layer `i` is checked against `ads[i]`.
pub fn create_with_ad(
    session_key: &SecretKey,
    hops: &[PublicKey],
    payloads: &[Vec<u8>],
    ads: &[&[u8]],
    area: usize,
) -> Result<Vec<u8>, OnionError> {
    create_keyed(session_key, hops, payloads, ads, area).map(|(onion, _)| onion)
}

/// Like [`create_with_ad`], also returning the shared secret of every hop (what each hop will
/// derive when it peels its layer).
pub fn create_keyed(
    session_key: &SecretKey,
    hops: &[PublicKey],
    payloads: &[Vec<u8>],
    ads: &[&[u8]],
    area: usize,
) -> Result<(Vec<u8>, Vec<[u8; 32]>), OnionError> {
    if hops.is_empty() || hops.len() != payloads.len() || ads.len() != hops.len() {
        return Err(OnionError::HopCount);
    }
    let need: usize = payloads.iter().map(|p| framed_len(p)).sum();
    if need > area {
        return Err(OnionError::TooLarge { need, area });
    }
    let secp = secp256k1::SECP256K1;
    // Walk the route: ephemeral key and shared secret per hop.
    let mut eph_secret = *session_key;
    let first_pub = PublicKey::from_secret_key(secp, &eph_secret);
    let mut secrets = Vec::with_capacity(hops.len());
    for hop in hops {
        let eph_pub = PublicKey::from_secret_key(secp, &eph_secret);
        let (ss, blinding) = hop_keys(&eph_pub, hop, &eph_secret);
        secrets.push(ss);
        eph_secret = eph_secret
            .mul_tweak(&blinding)
            .map_err(|_| OnionError::BadKey)?;
    }
    // Filler: what the earlier hops' shifts push into the tail, as the last hop will see it.
    let mut filler: Vec<u8> = Vec::new();
    let mut pos = 0;
    for (i, p) in payloads.iter().enumerate().take(hops.len() - 1) {
        let start = area - pos;
        pos += framed_len(p);
        filler.resize(pos, 0);
        xor_stream(&derive_key(b"rho", &secrets[i]), start, &mut filler);
    }
    // Wrap from the last hop back to the first.
    let mut buf = vec![0u8; area];
    xor_stream(&derive_key(b"pad", session_key.as_ref()), 0, &mut buf);
    let mut next_hmac = [0u8; HMAC_LEN];
    for i in (0..hops.len()).rev() {
        let mut frame = Vec::with_capacity(framed_len(&payloads[i]));
        bigsize(payloads[i].len() as u64, &mut frame);
        frame.extend_from_slice(&payloads[i]);
        frame.extend_from_slice(&next_hmac);
        buf.copy_within(0..area - frame.len(), frame.len());
        buf[..frame.len()].copy_from_slice(&frame);
        xor_stream(&derive_key(b"rho", &secrets[i]), 0, &mut buf);
        if i == hops.len() - 1 {
            buf[area - filler.len()..].copy_from_slice(&filler);
        }
        next_hmac = layer_hmac(&derive_key(b"mu", &secrets[i]), &buf, ads[i]);
    }
    let mut out = Vec::with_capacity(area + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&first_pub.serialize());
    out.extend_from_slice(&buf);
    out.extend_from_slice(&next_hmac);
    Ok((out, secrets))
}

/// One peeled layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    /// This hop's payload (length prefix removed).
    pub payload: Vec<u8>,
    /// The shared secret (its hash goes in the replay cache).
    pub shared_secret: [u8; 32],
    /// The onion for the next hop, or `None` at the last hop.
    pub next: Option<Vec<u8>>,
}

/// Peel one layer with the hop's secret key. Fails (without revealing why beyond the error
/// kind) if the HMAC does not verify: any changed bit anywhere in the onion or the associated
/// data is caught here.
pub fn peel(
    secret: &SecretKey,
    onion: &[u8],
    associated: &[u8],
    area: usize,
) -> Result<Peeled, OnionError> {
    if onion.len() != area + OVERHEAD {
        return Err(OnionError::WrongLength {
            want: area + OVERHEAD,
            got: onion.len(),
        });
    }
    if onion[0] != VERSION {
        return Err(OnionError::Version(onion[0]));
    }
    let eph = PublicKey::from_slice(&onion[1..34]).map_err(|_| OnionError::BadKey)?;
    let body = &onion[34..34 + area];
    let got_hmac = &onion[34 + area..];
    let (ss, blinding) = hop_keys(&eph, &eph, secret);
    let want = layer_hmac(&derive_key(b"mu", &ss), body, associated);
    if !bool::from(want.ct_eq(got_hmac)) {
        return Err(OnionError::Hmac);
    }
    let mut buf = vec![0u8; 2 * area];
    buf[..area].copy_from_slice(body);
    xor_stream(&derive_key(b"rho", &ss), 0, &mut buf);
    let (len, n) = read_bigsize(&buf).ok_or(OnionError::BadLength)?;
    let len = usize::try_from(len).map_err(|_| OnionError::BadLength)?;
    if len == 0 || n + len + HMAC_LEN > area {
        return Err(OnionError::BadLength);
    }
    let payload = buf[n..n + len].to_vec();
    let mut next_hmac = [0u8; HMAC_LEN];
    next_hmac.copy_from_slice(&buf[n + len..n + len + HMAC_LEN]);
    let next = if next_hmac == [0u8; HMAC_LEN] {
        None
    } else {
        let shift = n + len + HMAC_LEN;
        let secp = secp256k1::SECP256K1;
        let next_eph = eph
            .mul_tweak(secp, &blinding)
            .map_err(|_| OnionError::BadKey)?;
        let mut out = Vec::with_capacity(area + OVERHEAD);
        out.push(VERSION);
        out.extend_from_slice(&next_eph.serialize());
        out.extend_from_slice(&buf[shift..shift + area]);
        out.extend_from_slice(&next_hmac);
        Some(out)
    };
    Ok(Peeled {
        payload,
        shared_secret: ss,
        next,
    })
}

pub mod layer;

#[cfg(test)]
mod tests;
