//! The BuMP packet: the fixed-size unit that is stored, flooded and mixed.
//!
//! Wire layout (exactly [`PACKET_LEN`] = 1024 bytes):
//!
//! | offset | size | field                          |
//! |--------|------|--------------------------------|
//! | 0      | 20   | tag                            |
//! | 20     | 4    | expires, u32 little endian, unix seconds |
//! | 24     | 8    | nonce, u64 little endian (proof of work, [`crate::pow`]) |
//! | 32     | 992  | body                           |
//!
//! The packet id is the double SHA-256 of the 1024 bytes. The interchange form is one JSON
//! object `{"tag":"<40 hex>","chunk":"<base64 of body>","expires":<u32>,"nonce":<u64>}`.

use crate::tag::{Tag, TagError, TAG_LEN};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Size of a packet on the wire.
pub const PACKET_LEN: usize = 1024;
/// Where the nonce sits in the wire form.
pub const NONCE_OFFSET: usize = TAG_LEN + 4;
/// Size of a packet body.
pub const BODY_LEN: usize = PACKET_LEN - NONCE_OFFSET - 8;
/// Default and usual maximum time-to-live: 48 hours.
pub const DEFAULT_MAX_TTL: u32 = 48 * 3600;
/// How far in the future beyond the max TTL an `expires` may lie, to absorb clock skew.
pub const CLOCK_SKEW: u32 = 600;

/// 32-byte packet id: double SHA-256 of the encoded packet.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PacketId(pub [u8; 32]);

impl PacketId {
    /// The id's first 8 bytes as a number: what hash tables key it by. An id is a SHA256d
    /// output, so these bytes are as evenly spread as all 32; tables put them through a
    /// randomly seeded hasher, and ids alike in all 8 bytes cost about 2^32 packets' proof
    /// of work each, so nobody can pile ids into one bucket.
    pub fn prefix(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }
}

impl std::hash::Hash for PacketId {
    /// Hashes [`PacketId::prefix`] (equal ids have equal prefixes): a quarter of the bytes.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.prefix());
    }
}

crate::hex_id!(PacketId, 32);

/// A decoded packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub tag: Tag,
    pub expires: u32,
    /// Proof-of-work nonce ([`crate::pow`]).
    pub nonce: u64,
    pub body: Box<[u8; BODY_LEN]>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("tag", &self.tag)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why bytes or JSON are not a valid packet, or a packet is not acceptable now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a packet is exactly {PACKET_LEN} bytes, got {0}")]
    WrongLength(usize),
    #[error("malformed packet JSON: {0}")]
    Json(String),
    #[error("bad tag: {0}")]
    Tag(#[from] TagError),
    #[error("chunk is not valid base64: {0}")]
    Base64(String),
    #[error("chunk decodes to {0} bytes, a packet body must be exactly {BODY_LEN}")]
    WrongChunkSize(usize),
    #[error("packet expired at {expires} (now {now})")]
    Expired { expires: u32, now: u32 },
    #[error(
        "packet expires at {expires}, more than the maximum TTL of {max_ttl}s plus {CLOCK_SKEW}s of clock skew after now ({now})"
    )]
    TooFarAhead {
        expires: u32,
        now: u32,
        max_ttl: u32,
    },
    #[error("packet has no nonce: it is of the layout before proof of work (protocol.md §1); send it again with a current bump")]
    OldLayout,
    #[error("packet carries work {has}, this node requires {needs} for its TTL (a packet from before proof of work, or not solved)")]
    NotEnoughWork { has: u64, needs: u64 },
}

/// The interchange (JSON) form of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketJson {
    pub tag: String,
    pub chunk: String,
    pub expires: u32,
    /// Required: a packet without it is of the layout before proof of work.
    pub nonce: u64,
}

impl Packet {
    /// Encode to the 1024-byte wire form.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        self.encode_into(&mut out);
        out
    }

    /// Encode into a caller-provided buffer.
    pub fn encode_into(&self, out: &mut [u8; PACKET_LEN]) {
        out[..TAG_LEN].copy_from_slice(&self.tag.0);
        out[TAG_LEN..NONCE_OFFSET].copy_from_slice(&self.expires.to_le_bytes());
        out[NONCE_OFFSET..NONCE_OFFSET + 8].copy_from_slice(&self.nonce.to_le_bytes());
        out[NONCE_OFFSET + 8..].copy_from_slice(&self.body[..]);
    }

    /// Decode from the wire form. Any 1024 bytes are a well-formed packet; expiry is checked
    /// separately with [`Packet::check_expiry`].
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        if bytes.len() != PACKET_LEN {
            return Err(PacketError::WrongLength(bytes.len()));
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&bytes[..TAG_LEN]);
        let mut exp = [0u8; 4];
        exp.copy_from_slice(&bytes[TAG_LEN..TAG_LEN + 4]);
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[NONCE_OFFSET..NONCE_OFFSET + 8]);
        // Copied straight into its allocation (no zeroing first).
        let body: Box<[u8; BODY_LEN]> = bytes[NONCE_OFFSET + 8..]
            .to_vec()
            .into_boxed_slice()
            .try_into()
            .map_err(|_| PacketError::WrongLength(bytes.len()))?;
        Ok(Packet {
            tag: Tag(tag),
            expires: u32::from_le_bytes(exp),
            nonce: u64::from_le_bytes(nonce),
            body,
        })
    }

    /// The packet id: double SHA-256 of the wire form.
    pub fn id(&self) -> PacketId {
        PacketId::of_bytes(&self.encode())
    }

    /// Accept only packets that expire after `now` and no later than `now + max_ttl` (plus
    /// [`CLOCK_SKEW`]).
    pub fn check_expiry(&self, now: u32, max_ttl: u32) -> Result<(), PacketError> {
        if self.expires <= now {
            return Err(PacketError::Expired {
                expires: self.expires,
                now,
            });
        }
        let limit = now.saturating_add(max_ttl).saturating_add(CLOCK_SKEW);
        if self.expires > limit {
            return Err(PacketError::TooFarAhead {
                expires: self.expires,
                now,
                max_ttl,
            });
        }
        Ok(())
    }

    /// The interchange form.
    pub fn to_json(&self) -> PacketJson {
        PacketJson {
            tag: self.tag.to_hex(),
            chunk: base64::engine::general_purpose::STANDARD.encode(&self.body[..]),
            expires: self.expires,
            nonce: self.nonce,
        }
    }

    /// Parse the interchange form (hex tag in either case, standard base64 with padding).
    pub fn from_json(j: &PacketJson) -> Result<Packet, PacketError> {
        let tag = Tag::from_hex(j.tag.trim())?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(j.chunk.trim())
            .map_err(|e| PacketError::Base64(e.to_string()))?;
        if raw.len() != BODY_LEN {
            return Err(PacketError::WrongChunkSize(raw.len()));
        }
        let mut body = Box::new([0u8; BODY_LEN]);
        body.copy_from_slice(&raw);
        Ok(Packet {
            tag,
            expires: j.expires,
            nonce: j.nonce,
            body,
        })
    }

    /// Parse one interchange JSON object from text.
    pub fn from_json_str(s: &str) -> Result<Packet, PacketError> {
        let j: PacketJson = serde_json::from_str(s).map_err(json_error)?;
        Packet::from_json(&j)
    }
}

/// A JSON error, with the old layout (no `nonce`) named as such.
fn json_error(e: serde_json::Error) -> PacketError {
    let msg = e.to_string();
    if msg.contains("missing field `nonce`") {
        PacketError::OldLayout
    } else {
        PacketError::Json(msg)
    }
}

impl PacketId {
    /// Id of an encoded packet.
    pub fn of_bytes(bytes: &[u8; PACKET_LEN]) -> PacketId {
        PacketId(namecoin::wire::digest(bytes))
    }
}

/// Parse a file of packets in interchange form: a single JSON object, a JSON array of objects,
/// or JSON Lines (one object per line; blank lines ignored). Errors name the entry (1-based).
pub fn parse_interchange(text: &str) -> Result<Vec<Packet>, (usize, PacketError)> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let list: Vec<PacketJson> =
            serde_json::from_str(trimmed).map_err(|e| (1, json_error(e)))?;
        return list
            .iter()
            .enumerate()
            .map(|(i, j)| Packet::from_json(j).map_err(|e| (i + 1, e)))
            .collect();
    }
    let mut out = Vec::new();
    // A JSON stream covers both one object and JSON Lines (and pretty-printed objects).
    let stream = serde_json::Deserializer::from_str(text).into_iter::<PacketJson>();
    for (i, item) in stream.enumerate() {
        let j = item.map_err(|e| (i + 1, json_error(e)))?;
        out.push(Packet::from_json(&j).map_err(|e| (i + 1, e))?);
    }
    Ok(out)
}

/// Packets from a reader of JSON Lines or concatenated objects, one at a time (a JSON array is
/// not a stream: use [`parse_interchange`]). Items are numbered from 1 for error messages.
pub fn interchange_stream<R: std::io::Read>(
    reader: R,
) -> impl Iterator<Item = Result<Packet, (usize, PacketError)>> {
    serde_json::Deserializer::from_reader(std::io::BufReader::new(reader))
        .into_iter::<PacketJson>()
        .enumerate()
        .map(|(i, item)| {
            let j = item.map_err(|e| (i + 1, json_error(e)))?;
            Packet::from_json(&j).map_err(|e| (i + 1, e))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stream_reads_what_the_whole_text_parser_reads() {
        let p = Packet {
            tag: Tag([3; 20]),
            expires: 77,
            nonce: 0,
            body: Box::new([4; BODY_LEN]),
        };
        let line = serde_json::to_string(&p.to_json()).unwrap();
        let text = format!("{line}\n\n{line}\n");
        let streamed: Vec<Packet> = interchange_stream(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(streamed, parse_interchange(&text).unwrap());
        let bad = format!("{line}\n{{\"tag\":1}}\n");
        let err = interchange_stream(bad.as_bytes())
            .find_map(|r| r.err())
            .unwrap();
        assert_eq!(err.0, 2, "the second entry is named");
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        (
            any::<[u8; 20]>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), BODY_LEN),
        )
            .prop_map(|(t, e, b)| {
                let mut body = Box::new([0u8; BODY_LEN]);
                body.copy_from_slice(&b);
                Packet {
                    tag: Tag(t),
                    expires: e,
                    nonce: 0,
                    body,
                }
            })
    }

    proptest! {
        #[test]
        fn wire_round_trip(p in arb_packet()) {
            let bytes = p.encode();
            prop_assert_eq!(bytes.len(), PACKET_LEN);
            let q = Packet::decode(&bytes).unwrap();
            prop_assert_eq!(&q, &p);
            prop_assert_eq!(q.id(), p.id());
        }

        #[test]
        fn json_round_trip(p in arb_packet()) {
            let s = serde_json::to_string(&p.to_json()).unwrap();
            prop_assert_eq!(Packet::from_json_str(&s).unwrap(), p);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let r = Packet::decode(&bytes);
            prop_assert_eq!(r.is_ok(), bytes.len() == PACKET_LEN);
        }
    }

    #[test]
    fn layout_is_tag_expires_nonce_body() {
        let mut body = Box::new([0u8; BODY_LEN]);
        body[0] = 0xaa;
        body[BODY_LEN - 1] = 0xbb;
        let p = Packet {
            tag: Tag([7; 20]),
            expires: 0x0403_0201,
            nonce: 0x0807_0605_0403_0201,
            body,
        };
        let b = p.encode();
        assert_eq!(BODY_LEN, 992);
        assert_eq!(&b[..20], &[7; 20]);
        assert_eq!(&b[20..24], &[1, 2, 3, 4]);
        assert_eq!(&b[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[32], 0xaa);
        assert_eq!(b[1023], 0xbb);
        assert_eq!(Packet::decode(&b).unwrap(), p);
    }

    #[test]
    fn old_layout_json_is_refused_by_name() {
        let old = format!(
            "{{\"tag\":\"{}\",\"chunk\":\"{}\",\"expires\":5}}",
            "ab".repeat(20),
            base64::engine::general_purpose::STANDARD.encode([0u8; 1000])
        );
        assert_eq!(Packet::from_json_str(&old), Err(PacketError::OldLayout));
        assert!(PacketError::OldLayout
            .to_string()
            .contains("before proof of work"));
    }

    #[test]
    fn json_accepts_upper_case_and_rejects_bad_chunks() {
        let p = Packet {
            tag: Tag([0xab; 20]),
            expires: 5,
            nonce: 0,
            body: Box::new([1; BODY_LEN]),
        };
        let mut j = p.to_json();
        j.tag = j.tag.to_uppercase();
        assert_eq!(Packet::from_json(&j).unwrap(), p);

        let mut short = p.to_json();
        short.chunk = base64::engine::general_purpose::STANDARD.encode([0u8; 999]);
        assert_eq!(
            Packet::from_json(&short),
            Err(PacketError::WrongChunkSize(999))
        );

        let mut bad = p.to_json();
        bad.chunk = "!!!".into();
        assert!(matches!(
            Packet::from_json(&bad),
            Err(PacketError::Base64(_))
        ));

        assert!(matches!(
            Packet::from_json_str("{\"tag\":1}"),
            Err(PacketError::Json(_))
        ));
    }

    #[test]
    fn expiry_window() {
        let p = |e| Packet {
            tag: Tag([0; 20]),
            expires: e,
            nonce: 0,
            body: Box::new([0; BODY_LEN]),
        };
        let now = 1_000_000;
        assert!(matches!(
            p(now).check_expiry(now, 3600),
            Err(PacketError::Expired { .. })
        ));
        assert!(p(now + 1).check_expiry(now, 3600).is_ok());
        assert!(p(now + 3600 + CLOCK_SKEW).check_expiry(now, 3600).is_ok());
        assert!(matches!(
            p(now + 3601 + CLOCK_SKEW).check_expiry(now, 3600),
            Err(PacketError::TooFarAhead { .. })
        ));
    }

    #[test]
    fn interchange_files_in_three_shapes() {
        let a = Packet {
            tag: Tag([1; 20]),
            expires: 9,
            nonce: 0,
            body: Box::new([2; BODY_LEN]),
        };
        let b = Packet {
            tag: Tag([3; 20]),
            expires: 8,
            nonce: 0,
            body: Box::new([4; BODY_LEN]),
        };
        let ja = serde_json::to_string(&a.to_json()).unwrap();
        let jb = serde_json::to_string(&b.to_json()).unwrap();
        let want = vec![a.clone(), b.clone()];
        assert_eq!(parse_interchange(&format!("{ja}\n\n{jb}\n")).unwrap(), want);
        assert_eq!(parse_interchange(&format!("[{ja},{jb}]")).unwrap(), want);
        assert_eq!(parse_interchange(&ja).unwrap(), vec![a]);
        let err = parse_interchange(&format!("{ja}\n{{\"tag\":\"x\"}}")).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(parse_interchange("").unwrap().is_empty());
    }
}
