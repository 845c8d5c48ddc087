//! Messages: how a file of any size becomes packets and how packets become the file again.
//!
//! Each packet body starts with a frame header, then the data, then random padding:
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 1    | frame version, 1                        |
//! | 1      | 16   | message id, random                      |
//! | 17     | 2    | part index, u16 LE, 0-based             |
//! | 19     | 2    | part count, u16 LE, ≥ 1                 |
//! | 21     | 2    | data length in this part, u16 LE, ≤ 977 |
//! | 23     | len  | data                                    |
//! | 23+len | rest | random padding                          |
//!
//! Reassembly groups parts by message id; the first part seen for an index wins and parts whose
//! count disagrees with the first part seen are ignored. A message is complete when every index
//! is present; complete messages are ordered by the arrival of the part that completed them.

use crate::packet::{Packet, BODY_LEN};
use crate::tag::Tag;
use rand::RngCore;
use std::collections::HashMap;

pub const FRAME_VERSION: u8 = 1;
pub const FRAME_HEADER_LEN: usize = 23;
/// Data bytes carried by one packet.
pub const PART_DATA_LEN: usize = BODY_LEN - FRAME_HEADER_LEN;
/// Most parts a message can have (part count is a u16).
pub const MAX_PARTS: usize = u16::MAX as usize;
/// Largest message the frame format can express.
pub const MAX_FRAMEABLE: usize = MAX_PARTS * PART_DATA_LEN;
/// Default limit on a message's size: 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Random 16-byte message id, shared by all parts of a message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

crate::hex_id!(MessageId, 16);

impl MessageId {
    pub fn from_hex(s: &str) -> Option<MessageId> {
        MessageId::from_hex_bytes(s)
    }
}

/// The frame header found at the start of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartHeader {
    pub msg_id: MessageId,
    pub index: u16,
    pub count: u16,
    pub len: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a message frame: {0}")]
    BadFrame(&'static str),
}

impl PartHeader {
    /// Read the frame at the start of a body; the data is `body[23..23+len]`.
    pub fn decode(body: &[u8; BODY_LEN]) -> Result<PartHeader, MessageError> {
        if body[0] != FRAME_VERSION {
            return Err(MessageError::BadFrame("unknown frame version"));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[1..17]);
        let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
        let (index, count, len) = (u16_at(17), u16_at(19), u16_at(21));
        if count == 0 {
            return Err(MessageError::BadFrame("part count is zero"));
        }
        if index >= count {
            return Err(MessageError::BadFrame("part index not below part count"));
        }
        if len as usize > PART_DATA_LEN {
            return Err(MessageError::BadFrame("data length exceeds the body"));
        }
        Ok(PartHeader {
            msg_id: MessageId(id),
            index,
            count,
            len,
        })
    }

    /// Write the frame header into the start of a body.
    pub fn encode_into(&self, body: &mut [u8; BODY_LEN]) {
        body[0] = FRAME_VERSION;
        body[1..17].copy_from_slice(&self.msg_id.0);
        body[17..19].copy_from_slice(&self.index.to_le_bytes());
        body[19..21].copy_from_slice(&self.count.to_le_bytes());
        body[21..23].copy_from_slice(&self.len.to_le_bytes());
    }

    /// The data slice of a body carrying this frame.
    pub fn data<'a>(&self, body: &'a [u8; BODY_LEN]) -> &'a [u8] {
        &body[FRAME_HEADER_LEN..FRAME_HEADER_LEN + self.len as usize]
    }
}

/// Number of packets a message of `size` bytes needs (an empty message still takes one).
pub fn parts_needed(size: usize) -> usize {
    size.div_ceil(PART_DATA_LEN).max(1)
}

/// Split `data` into framed packets under `tag` expiring at `expires`. `limit` is the caller's
/// size limit (never above [`MAX_FRAMEABLE`]). An empty message is one packet with no data.
pub fn split(
    data: &[u8],
    tag: Tag,
    expires: u32,
    limit: usize,
    rng: &mut impl RngCore,
) -> Result<(MessageId, Vec<Packet>), MessageError> {
    let limit = limit.min(MAX_FRAMEABLE);
    if data.len() > limit {
        return Err(MessageError::TooLarge {
            size: data.len(),
            limit,
        });
    }
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let msg_id = MessageId(id);
    let count = parts_needed(data.len());
    let mut packets = Vec::with_capacity(count);
    for index in 0..count {
        let chunk = data.chunks(PART_DATA_LEN).nth(index).unwrap_or(&[]);
        let mut body = Box::new([0u8; BODY_LEN]);
        // Padding first, then overwrite header and data: the tail stays random.
        rng.fill_bytes(&mut body[..]);
        let frame = PartHeader {
            msg_id,
            index: index as u16,
            count: count as u16,
            len: chunk.len() as u16,
        };
        frame.encode_into(&mut body);
        body[FRAME_HEADER_LEN..FRAME_HEADER_LEN + chunk.len()].copy_from_slice(chunk);
        packets.push(Packet {
            tag,
            expires,
            nonce: 0,
            body,
        });
    }
    Ok((msg_id, packets))
}

/// A reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteMessage {
    pub id: MessageId,
    pub data: Vec<u8>,
    pub parts: u16,
    /// Arrival sequence number of the part that completed the message.
    pub completed_seq: u64,
}

/// A message with parts still missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMessage {
    pub id: MessageId,
    pub have: u16,
    pub count: u16,
    pub first_seq: u64,
}

struct Pending {
    count: u16,
    have: u16,
    first_seq: u64,
    parts: Vec<Option<Vec<u8>>>,
}

/// Collects packets of one tag in arrival order and yields complete messages.
#[derive(Default)]
pub struct Assembler {
    pending: HashMap<MessageId, Pending>,
    done: HashMap<MessageId, ()>,
    complete: Vec<CompleteMessage>,
    /// Packets that carried no valid frame (e.g. onion packets under a mix tag).
    pub unframed: usize,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one packet that arrived with sequence number `seq`. Returns the message it
    /// completed, if any (also kept for [`Assembler::finish`]).
    pub fn push(&mut self, seq: u64, packet: &Packet) -> Option<&CompleteMessage> {
        let frame = match PartHeader::decode(&packet.body) {
            Ok(f) => f,
            Err(_) => {
                self.unframed += 1;
                return None;
            }
        };
        if self.done.contains_key(&frame.msg_id) {
            return None;
        }
        let p = self.pending.entry(frame.msg_id).or_insert_with(|| Pending {
            count: frame.count,
            have: 0,
            first_seq: seq,
            parts: vec![None; frame.count as usize],
        });
        if p.count != frame.count {
            return None;
        }
        let slot = &mut p.parts[frame.index as usize];
        if slot.is_some() {
            return None;
        }
        *slot = Some(frame.data(&packet.body).to_vec());
        p.have += 1;
        if p.have < p.count {
            return None;
        }
        let p = self.pending.remove(&frame.msg_id)?;
        let data: Vec<u8> = p.parts.into_iter().flatten().flatten().collect();
        self.done.insert(frame.msg_id, ());
        self.complete.push(CompleteMessage {
            id: frame.msg_id,
            data,
            parts: p.count,
            completed_seq: seq,
        });
        self.complete.last()
    }

    /// Complete messages in completion order, and partial ones ordered by first arrival.
    pub fn finish(self) -> (Vec<CompleteMessage>, Vec<PartialMessage>) {
        let mut partial: Vec<PartialMessage> = self
            .pending
            .into_iter()
            .map(|(id, p)| PartialMessage {
                id,
                have: p.have,
                count: p.count,
                first_seq: p.first_seq,
            })
            .collect();
        partial.sort_by_key(|p| p.first_seq);
        (self.complete, partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    fn assemble(packets: &[Packet]) -> (Vec<CompleteMessage>, Vec<PartialMessage>) {
        let mut a = Assembler::new();
        for (i, p) in packets.iter().enumerate() {
            a.push(i as u64, p);
        }
        a.finish()
    }

    proptest! {
        #[test]
        fn split_then_assemble_in_any_order(data in proptest::collection::vec(any::<u8>(), 0..6000), seed in any::<u64>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (id, mut packets) = split(&data, Tag([9; 20]), 100, DEFAULT_MAX_MESSAGE, &mut rng).unwrap();
            prop_assert_eq!(packets.len(), parts_needed(data.len()));
            packets.shuffle(&mut rng);
            let (done, partial) = assemble(&packets);
            prop_assert!(partial.is_empty());
            prop_assert_eq!(done.len(), 1);
            prop_assert_eq!(done[0].id, id);
            prop_assert_eq!(&done[0].data, &data);
        }

        #[test]
        fn frame_round_trip(id in any::<[u8;16]>(), count in 1u16.., idx in any::<u16>(), len in 0u16..=(PART_DATA_LEN as u16)) {
            let f = PartHeader { msg_id: MessageId(id), index: idx % count, count, len };
            let mut body = [0u8; BODY_LEN];
            f.encode_into(&mut body);
            prop_assert_eq!(PartHeader::decode(&body).unwrap(), f);
        }

        #[test]
        fn frame_decode_never_panics(body in proptest::collection::vec(any::<u8>(), BODY_LEN)) {
            let mut b = [0u8; BODY_LEN];
            b.copy_from_slice(&body);
            if let Ok(f) = PartHeader::decode(&b) {
                prop_assert!(f.index < f.count);
                prop_assert!(f.data(&b).len() <= PART_DATA_LEN);
            }
        }
    }

    #[test]
    fn missing_part_stays_partial_and_limits_hold() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let data = vec![5u8; 3 * PART_DATA_LEN + 1];
        let (_, packets) = split(&data, Tag([1; 20]), 1, DEFAULT_MAX_MESSAGE, &mut rng).unwrap();
        assert_eq!(packets.len(), 4);
        let (done, partial) = assemble(&packets[..3]);
        assert!(done.is_empty());
        assert_eq!((partial[0].have, partial[0].count), (3, 4));
        assert_eq!(
            split(&data, Tag([1; 20]), 1, 100, &mut rng).unwrap_err(),
            MessageError::TooLarge {
                size: data.len(),
                limit: 100
            }
        );
    }

    #[test]
    fn empty_message_is_one_packet_and_padding_is_random() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (_, packets) = split(&[], Tag([1; 20]), 1, 10, &mut rng).unwrap();
        assert_eq!(packets.len(), 1);
        let (done, _) = assemble(&packets);
        assert_eq!(done[0].data, Vec::<u8>::new());
        // The padding after the header is not all zeros.
        assert!(packets[0].body[FRAME_HEADER_LEN..].iter().any(|&b| b != 0));
    }

    #[test]
    fn duplicates_and_conflicting_counts_are_ignored() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let data = vec![7u8; 2 * PART_DATA_LEN];
        let (_, packets) = split(&data, Tag([1; 20]), 1, DEFAULT_MAX_MESSAGE, &mut rng).unwrap();
        // A forged part 1 claiming a count of 3 must not disturb the message.
        let mut forged = packets[1].clone();
        forged.body[19..21].copy_from_slice(&3u16.to_le_bytes());
        let seq = vec![
            packets[0].clone(),
            forged,
            packets[0].clone(),
            packets[1].clone(),
        ];
        let (done, partial) = assemble(&seq);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].data, data);
        assert_eq!(done[0].completed_seq, 3);
        assert!(partial.is_empty());
    }
}
