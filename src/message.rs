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
    #[error("a part has no room for data")]
    NoRoom,
    #[error("sealing a part failed")]
    Seal,
}

impl PartHeader {
    /// Read the frame at the start of a body; the data is `body[23..23+len]`.
    pub fn decode(body: &[u8; BODY_LEN]) -> Result<PartHeader, MessageError> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&body[..FRAME_HEADER_LEN]);
        PartHeader::from_bytes(&h, PART_DATA_LEN)
    }

    /// Read a frame header whose data may be at most `max_len` bytes.
    pub fn from_bytes(
        body: &[u8; FRAME_HEADER_LEN],
        max_len: usize,
    ) -> Result<PartHeader, MessageError> {
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
        if len as usize > max_len {
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
        body[..FRAME_HEADER_LEN].copy_from_slice(&self.to_bytes());
    }

    /// The 23 header bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0] = FRAME_VERSION;
        h[1..17].copy_from_slice(&self.msg_id.0);
        h[17..19].copy_from_slice(&self.index.to_le_bytes());
        h[19..21].copy_from_slice(&self.count.to_le_bytes());
        h[21..23].copy_from_slice(&self.len.to_le_bytes());
        h
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

/// How a part's frame and data become the bytes its packet's body starts with: in the clear
/// ([`ClearFramer`], §3) or sealed inside the ciphertext (`crate::sealed::parts`, §8.4).
/// The rest of a body is random padding.
pub trait Framer: Send + Sync + std::fmt::Debug {
    /// Bytes part `index` needs beside its data.
    fn overhead(&self, index: usize) -> usize;
    /// The framed bytes of one part: exactly `overhead(header.index) + data.len()` bytes.
    fn frame(
        &self,
        header: &PartHeader,
        data: &[u8],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<u8>, MessageError>;
}

/// The clear frame of §3: the 23-byte header, then the data.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClearFramer;

impl Framer for ClearFramer {
    fn overhead(&self, _: usize) -> usize {
        FRAME_HEADER_LEN
    }

    fn frame(
        &self,
        header: &PartHeader,
        data: &[u8],
        _: &mut dyn RngCore,
    ) -> Result<Vec<u8>, MessageError> {
        let mut v = header.to_bytes().to_vec();
        v.extend_from_slice(data);
        Ok(v)
    }
}

/// The data bytes of each part when framed bytes may take `cap` bytes per part: the first
/// part always, more while data remains. `None` when a part has no room for data.
fn part_sizes(size: usize, framer: &dyn Framer, cap: usize) -> Option<Vec<usize>> {
    let mut sizes = Vec::new();
    let mut left = size;
    loop {
        let room = cap.checked_sub(framer.overhead(sizes.len()))?;
        if room == 0 && left > 0 {
            return None;
        }
        let n = room.min(left);
        sizes.push(n);
        left -= n;
        if left == 0 || sizes.len() > MAX_PARTS {
            return Some(sizes);
        }
    }
}

/// How many parts `size` bytes take (`None`: no room for data).
pub fn count_parts(size: usize, framer: &dyn Framer, cap: usize) -> Option<usize> {
    part_sizes(size, framer, cap).map(|s| s.len())
}

/// Split `data` into framed parts of at most `cap` bytes each under a fresh message id.
/// `limit` is the caller's size limit. An empty message is one part with no data.
pub fn frame_parts(
    data: &[u8],
    framer: &dyn Framer,
    cap: usize,
    limit: usize,
    rng: &mut dyn RngCore,
) -> Result<(MessageId, Vec<Vec<u8>>), MessageError> {
    let sizes = part_sizes(data.len(), framer, cap).ok_or(MessageError::NoRoom)?;
    let limit = limit.min(MAX_PARTS * cap.saturating_sub(framer.overhead(1)).max(1));
    if data.len() > limit || sizes.len() > MAX_PARTS {
        return Err(MessageError::TooLarge {
            size: data.len(),
            limit,
        });
    }
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let msg_id = MessageId(id);
    let count = sizes.len() as u16;
    let mut at = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for (index, n) in sizes.into_iter().enumerate() {
        let header = PartHeader {
            msg_id,
            index: index as u16,
            count,
            len: n as u16,
        };
        out.push(framer.frame(&header, &data[at..at + n], rng)?);
        at += n;
    }
    Ok((msg_id, out))
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
    split_framed(data, &ClearFramer, tag, expires, limit, rng)
}

/// [`split`] with any framing: each body is the framed part, then random padding.
pub fn split_framed(
    data: &[u8],
    framer: &dyn Framer,
    tag: Tag,
    expires: u32,
    limit: usize,
    rng: &mut impl RngCore,
) -> Result<(MessageId, Vec<Packet>), MessageError> {
    let (msg_id, parts) = frame_parts(data, framer, BODY_LEN, limit.min(MAX_FRAMEABLE), rng)?;
    let packets = parts
        .into_iter()
        .map(|framed| {
            let mut body = Box::new([0u8; BODY_LEN]);
            rng.fill_bytes(&mut body[..]);
            body[..framed.len()].copy_from_slice(&framed);
            Packet {
                tag,
                expires,
                nonce: 0,
                body,
            }
        })
        .collect();
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
        self.push_part(seq, frame, frame.data(&packet.body))
    }

    /// Feed one part already taken out of its frame (a sealed part, §8.4).
    pub fn push_part(
        &mut self,
        seq: u64,
        frame: PartHeader,
        data: &[u8],
    ) -> Option<&CompleteMessage> {
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
        *slot = Some(data.to_vec());
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
