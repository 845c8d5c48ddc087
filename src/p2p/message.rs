//! The P2P messages a BuMP node handles, with one encoder and one decoder each.
//!
//! Coin messages reuse `bitcoin`'s consensus encoding (`version`, `addr`, `addrv2`,
//! inventory entries). BuMP adds one command and one inventory type:
//!
//! - `bump`: payload is exactly one 1024-byte packet;
//! - inventory type [`INV_BUMP`] (`0x42554d50`): an inv/getdata/notfound entry whose 32-byte
//!   hash is a packet id.
//!
//! Capability is negotiated with a BIP 434 `feature` message (id [`FEATURE_ID`]). Commands not
//! listed in [`max_payload`] are skipped unread by the codec.

use super::recon;
use crate::packet::{Packet, PacketId, PACKET_LEN};
use bitcoin::consensus::{deserialize_partial, encode, serialize, Decodable, Encodable};
use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::VarInt;
use bytes::{Bytes, BytesMut};
use namecoin::wire::{Command, Outgoing};

/// Inventory type of BuMP packets: the ASCII bytes "PMUB" read as u32 LE, i.e. "BUMP" BE.
pub const INV_BUMP: u32 = 0x4255_4d50;
/// Service bit (experimental range 24-31) advertising BuMP; a hint only, never trusted alone.
pub const NODE_BUMP: u64 = 1 << 24;
/// BIP 434 feature id that marks a BuMP peer. Its data is one byte: the BuMP protocol version.
pub const FEATURE_ID: &str = "bump/1";
/// 3: catch-up by set reconciliation (`bumprecon`, docs/protocol.md §5.5).
pub const BUMP_PROTOCOL_VERSION: u8 = 3;
/// The oldest BuMP version still spoken: 2, packet layout 2 with proof of work; such peers
/// get the inventory catch-up.
pub const MIN_BUMP_PROTOCOL_VERSION: u8 = 2;
/// Versions from which a peer reconciles.
pub const RECON_VERSION: u8 = 3;
/// Most entries in one inv, getdata or notfound (sent and accepted).
pub const MAX_INV: usize = 50_000;
/// Most entries in one addr or addrv2.
pub const MAX_ADDR: usize = 1000;

pub mod cmd {
    use namecoin::wire::Command;
    pub const VERSION: Command = Command::new("version");
    pub const VERACK: Command = Command::new("verack");
    pub const FEATURE: Command = Command::new("feature");
    pub const PING: Command = Command::new("ping");
    pub const PONG: Command = Command::new("pong");
    pub const INV: Command = Command::new("inv");
    pub const GETDATA: Command = Command::new("getdata");
    pub const NOTFOUND: Command = Command::new("notfound");
    pub const BUMP: Command = Command::new("bump");
    pub const ADDR: Command = Command::new("addr");
    pub const ADDRV2: Command = Command::new("addrv2");
    pub const GETADDR: Command = Command::new("getaddr");
    pub const SENDADDRV2: Command = Command::new("sendaddrv2");
    pub const BUMPFLOOR: Command = Command::new("bumpfloor");
    pub const BUMPRECON: Command = Command::new("bumprecon");
}

/// Largest payload accepted per command; `None` means "skip it unread".
pub fn max_payload(c: &Command) -> Option<usize> {
    let inv = 9 + MAX_INV * 36;
    Some(match *c {
        cmd::VERSION => 1024,
        cmd::VERACK | cmd::GETADDR | cmd::SENDADDRV2 => 0,
        cmd::FEATURE => 1 + 80 + 3 + 512,
        cmd::PING | cmd::PONG | cmd::BUMPFLOOR => 8,
        cmd::INV | cmd::GETDATA | cmd::NOTFOUND => inv,
        cmd::BUMP => PACKET_LEN,
        cmd::BUMPRECON => 9 + recon::MAX_RANGES * (37 + 16) + 9 + recon::MAX_IDS * 32,
        cmd::ADDR => 3 + MAX_ADDR * 30,
        cmd::ADDRV2 => 3 + MAX_ADDR * 600,
        _ => return None,
    })
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Version(VersionMessage),
    Verack,
    Feature {
        id: String,
        data: Vec<u8>,
    },
    Ping(u64),
    Pong(u64),
    /// Packet ids announced; `other` counts entries of other inventory types (ignored).
    Inv {
        ids: Vec<PacketId>,
        other: usize,
    },
    GetData {
        ids: Vec<PacketId>,
        other: usize,
    },
    NotFound {
        ids: Vec<PacketId>,
        other: usize,
    },
    Bump(Box<Packet>),
    Addr(Vec<(u32, Address)>),
    AddrV2(Vec<AddrV2Message>),
    GetAddr,
    SendAddrV2,
    /// `bumpfloor`: the least score (work per TTL) the sender stores now; do not announce it
    /// packets below (docs/protocol.md §5.8, like Core's `feefilter`).
    Floor(u64),
    /// `bumprecon`: one step of set reconciliation (docs/protocol.md §5.5).
    Recon(Vec<recon::Range>),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{command}: {err}")]
    Malformed { command: Command, err: String },
    #[error("{command} has {n} entries, more than {max}")]
    TooMany {
        command: Command,
        n: u64,
        max: usize,
    },
    #[error("{command}: {n} trailing bytes")]
    Trailing { command: Command, n: usize },
    #[error("command {0} is not handled")]
    Unhandled(Command),
}

fn full<T: Decodable>(command: Command, payload: &[u8]) -> Result<T, DecodeError> {
    let (v, used) = deserialize_partial::<T>(payload).map_err(|e| DecodeError::Malformed {
        command,
        err: e.to_string(),
    })?;
    if used != payload.len() {
        return Err(DecodeError::Trailing {
            command,
            n: payload.len() - used,
        });
    }
    Ok(v)
}

fn decode_inv(command: Command, payload: &[u8]) -> Result<(Vec<PacketId>, usize), DecodeError> {
    let mal = |e: encode::Error| DecodeError::Malformed {
        command,
        err: e.to_string(),
    };
    let mut r = payload;
    let n = VarInt::consensus_decode(&mut r).map_err(mal)?.0;
    if n > MAX_INV as u64 {
        return Err(DecodeError::TooMany {
            command,
            n,
            max: MAX_INV,
        });
    }
    let mut ids = Vec::with_capacity(n as usize);
    let mut other = 0;
    for _ in 0..n {
        match Inventory::consensus_decode(&mut r).map_err(mal)? {
            Inventory::Unknown {
                inv_type: INV_BUMP,
                hash,
            } => ids.push(PacketId(hash)),
            _ => other += 1,
        }
    }
    if !r.is_empty() {
        return Err(DecodeError::Trailing {
            command,
            n: r.len(),
        });
    }
    Ok((ids, other))
}

fn encode_inv(ids: &[PacketId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + ids.len() * 36);
    VarInt(ids.len() as u64)
        .consensus_encode(&mut out)
        .expect("vec write");
    for id in ids {
        Inventory::Unknown {
            inv_type: INV_BUMP,
            hash: id.0,
        }
        .consensus_encode(&mut out)
        .expect("vec write");
    }
    out
}

fn check_count(command: Command, payload: &[u8], max: usize) -> Result<(), DecodeError> {
    let mut r = payload;
    let n = VarInt::consensus_decode(&mut r)
        .map_err(|e| DecodeError::Malformed {
            command,
            err: e.to_string(),
        })?
        .0;
    if n > max as u64 {
        return Err(DecodeError::TooMany { command, n, max });
    }
    Ok(())
}

impl Message {
    pub fn decode(command: Command, payload: &[u8]) -> Result<Message, DecodeError> {
        let empty = |m: Message| {
            if payload.is_empty() {
                Ok(m)
            } else {
                Err(DecodeError::Trailing {
                    command,
                    n: payload.len(),
                })
            }
        };
        match command {
            cmd::VERSION => {
                // Trailing bytes after a version are allowed (future fields).
                let (v, _) = deserialize_partial::<VersionMessage>(payload).map_err(|e| {
                    DecodeError::Malformed {
                        command,
                        err: e.to_string(),
                    }
                })?;
                Ok(Message::Version(v))
            }
            cmd::VERACK => empty(Message::Verack),
            cmd::GETADDR => empty(Message::GetAddr),
            cmd::SENDADDRV2 => empty(Message::SendAddrV2),
            cmd::FEATURE => {
                let mut r = payload;
                let mal = |e: encode::Error| DecodeError::Malformed {
                    command,
                    err: e.to_string(),
                };
                let id = String::consensus_decode(&mut r).map_err(mal)?;
                let data = Vec::<u8>::consensus_decode(&mut r).map_err(mal)?;
                if !(4..=80).contains(&id.len()) || data.len() > 512 {
                    return Err(DecodeError::Malformed {
                        command,
                        err: "feature id or data out of range".into(),
                    });
                }
                Ok(Message::Feature { id, data })
            }
            cmd::PING => Ok(Message::Ping(full(command, payload)?)),
            cmd::PONG => Ok(Message::Pong(full(command, payload)?)),
            cmd::BUMPFLOOR => Ok(Message::Floor(full(command, payload)?)),
            cmd::BUMPRECON => {
                recon::decode(payload)
                    .map(Message::Recon)
                    .map_err(|e| DecodeError::Malformed {
                        command,
                        err: e.to_string(),
                    })
            }
            cmd::INV => {
                decode_inv(command, payload).map(|(ids, other)| Message::Inv { ids, other })
            }
            cmd::GETDATA => {
                decode_inv(command, payload).map(|(ids, other)| Message::GetData { ids, other })
            }
            cmd::NOTFOUND => {
                decode_inv(command, payload).map(|(ids, other)| Message::NotFound { ids, other })
            }
            cmd::BUMP => Packet::decode(payload)
                .map(|p| Message::Bump(Box::new(p)))
                .map_err(|e| DecodeError::Malformed {
                    command,
                    err: e.to_string(),
                }),
            cmd::ADDR => {
                check_count(command, payload, MAX_ADDR)?;
                Ok(Message::Addr(full(command, payload)?))
            }
            cmd::ADDRV2 => {
                check_count(command, payload, MAX_ADDR)?;
                Ok(Message::AddrV2(full(command, payload)?))
            }
            other => Err(DecodeError::Unhandled(other)),
        }
    }

    pub fn command(&self) -> Command {
        match self {
            Message::Version(_) => cmd::VERSION,
            Message::Verack => cmd::VERACK,
            Message::Feature { .. } => cmd::FEATURE,
            Message::Ping(_) => cmd::PING,
            Message::Pong(_) => cmd::PONG,
            Message::Inv { .. } => cmd::INV,
            Message::GetData { .. } => cmd::GETDATA,
            Message::NotFound { .. } => cmd::NOTFOUND,
            Message::Bump(_) => cmd::BUMP,
            Message::Addr(_) => cmd::ADDR,
            Message::AddrV2(_) => cmd::ADDRV2,
            Message::GetAddr => cmd::GETADDR,
            Message::SendAddrV2 => cmd::SENDADDRV2,
            Message::Floor(_) => cmd::BUMPFLOOR,
            Message::Recon(_) => cmd::BUMPRECON,
        }
    }

    /// Encode the payload. Inventory messages carry only BuMP entries (`other` is not sent).
    pub fn encode(&self) -> Outgoing {
        let payload: Vec<u8> = match self {
            Message::Version(v) => serialize(v),
            Message::Verack | Message::GetAddr | Message::SendAddrV2 => Vec::new(),
            Message::Feature { id, data } => {
                let mut out = serialize(id);
                out.extend(serialize(data));
                out
            }
            Message::Ping(n) | Message::Pong(n) | Message::Floor(n) => n.to_le_bytes().to_vec(),
            Message::Inv { ids, .. }
            | Message::GetData { ids, .. }
            | Message::NotFound { ids, .. } => encode_inv(ids),
            Message::Bump(p) => p.encode().to_vec(),
            Message::Recon(r) => recon::encode(r),
            Message::Addr(a) => serialize(a),
            Message::AddrV2(a) => serialize(a),
        };
        Outgoing::new(self.command(), Bytes::from(payload))
    }
}

/// Frame a `bump` message straight from a packet's encoded bytes and its id (checked against
/// them by whoever read them) into `dst` (a writer's buffer): the same bytes as the codec
/// makes of `Message::Bump(p)`, without decoding the packet and encoding it again, without a
/// copy in between, and with the checksum taken from the id (the id *is* the payload's
/// SHA256d, docs/protocol.md §1 and §5.1).
pub fn frame_packet(magic: [u8; 4], bytes: &[u8; PACKET_LEN], id: &PacketId, dst: &mut BytesMut) {
    let sum = namecoin::wire::checksum_of(&id.0);
    namecoin::wire::encode_message_summed(magic, cmd::BUMP, bytes, sum, dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::BODY_LEN;
    use crate::tag::Tag;
    use proptest::prelude::*;

    fn round_trip(m: Message) {
        let out = m.encode();
        assert!(
            out.payload.len() <= max_payload(&out.command).unwrap(),
            "{:?} over its cap",
            out.command
        );
        assert_eq!(Message::decode(out.command, &out.payload).unwrap(), m);
    }

    #[test]
    fn fixed_messages_round_trip() {
        round_trip(Message::Verack);
        round_trip(Message::GetAddr);
        round_trip(Message::SendAddrV2);
        round_trip(Message::Ping(7));
        round_trip(Message::Floor(123_456));
        round_trip(Message::Recon(vec![recon::Range {
            upper: recon::Bound::END,
            mode: recon::Mode::Fingerprint([7; 16]),
        }]));
        assert!(matches!(
            Message::decode(cmd::BUMPFLOOR, &[1, 2, 3]),
            Err(DecodeError::Malformed { .. })
        ));
        round_trip(Message::Pong(u64::MAX));
        round_trip(Message::Feature {
            id: FEATURE_ID.into(),
            data: vec![1],
        });
        round_trip(Message::Bump(Box::new(Packet {
            tag: Tag([3; 20]),
            expires: 9,
            nonce: 0,
            body: Box::new([4; BODY_LEN]),
        })));
        let addr = Address::new(
            &"127.0.0.7:8338".parse().unwrap(),
            bitcoin::p2p::ServiceFlags::from(NODE_BUMP),
        );
        round_trip(Message::Addr(vec![(1_700_000_000, addr)]));
        let ids: Vec<PacketId> = (0..MAX_INV as u32)
            .map(|i| PacketId([(i % 251) as u8; 32]))
            .collect();
        round_trip(Message::Inv { ids, other: 0 });
    }

    proptest! {
        /// The shortcut from stored bytes frames exactly what encoding the decoded packet does,
        /// checksum included.
        #[test]
        fn a_packet_from_its_bytes_frames_like_the_decoded_packet(tag in any::<[u8; 20]>(), expires in any::<u32>(), nonce in any::<u64>(), fill in any::<u8>()) {
            let p = Packet { tag: Tag(tag), expires, nonce, body: Box::new([fill; BODY_LEN]) };
            let bytes = p.encode();
            let (mut a, mut b) = (bytes::BytesMut::new(), bytes::BytesMut::new());
            let mut codec = namecoin::wire::MessageCodec::new([1, 2, 3, 4], max_payload as fn(&Command) -> Option<usize>);
            tokio_util::codec::Encoder::encode(&mut codec, Message::Bump(Box::new(p.clone())).encode(), &mut a).unwrap();
            b.extend_from_slice(b"already here");
            frame_packet([1, 2, 3, 4], &bytes, &p.id(), &mut b);
            prop_assert_eq!(&b[..12], b"already here");
            prop_assert_eq!(&a[..], &b[12..]);
        }
    }

    #[test]
    fn inventory_limits_and_foreign_types() {
        // 50,001 entries: refused before reading them.
        let mut big = Vec::new();
        VarInt(MAX_INV as u64 + 1)
            .consensus_encode(&mut big)
            .unwrap();
        assert!(matches!(
            Message::decode(cmd::INV, &big),
            Err(DecodeError::TooMany { .. })
        ));
        // A block inv next to a BuMP inv: the block entry is counted, not returned.
        let mut p = Vec::new();
        VarInt(2).consensus_encode(&mut p).unwrap();
        Inventory::Unknown {
            inv_type: INV_BUMP,
            hash: [1; 32],
        }
        .consensus_encode(&mut p)
        .unwrap();
        Inventory::Block(bitcoin::BlockHash::from_byte_array([2; 32]))
            .consensus_encode(&mut p)
            .unwrap();
        match Message::decode(cmd::INV, &p).unwrap() {
            Message::Inv { ids, other } => assert_eq!((ids, other), (vec![PacketId([1; 32])], 1)),
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            Message::decode(cmd::PING, &[1, 2, 3]),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            Message::decode(cmd::VERACK, &[0]),
            Err(DecodeError::Trailing { .. })
        ));
        assert!(matches!(
            Message::decode(cmd::BUMP, &[0; 1023]),
            Err(DecodeError::Malformed { .. })
        ));
    }

    use bitcoin::hashes::Hash;

    proptest! {
        #[test]
        fn decoders_never_panic(which in 0usize..14, payload in proptest::collection::vec(any::<u8>(), 0..400)) {
            let cmds = [cmd::VERSION, cmd::VERACK, cmd::FEATURE, cmd::PING, cmd::PONG, cmd::INV, cmd::GETDATA,
                cmd::NOTFOUND, cmd::BUMP, cmd::ADDR, cmd::ADDRV2, cmd::GETADDR, cmd::BUMPFLOOR, cmd::BUMPRECON];
            let _ = Message::decode(cmds[which], &payload);
        }

        #[test]
        fn inv_round_trips(ids in proptest::collection::vec(any::<[u8; 32]>(), 0..300)) {
            let ids: Vec<PacketId> = ids.into_iter().map(PacketId).collect();
            round_trip(Message::GetData { ids: ids.clone(), other: 0 });
            round_trip(Message::NotFound { ids, other: 0 });
        }
    }
}
