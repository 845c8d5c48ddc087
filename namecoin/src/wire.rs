//! P2P message framing on the Namecoin network (the Bitcoin wire format with Namecoin's magic).
//!
//! Every message is a 24-byte header and a payload:
//!
//! | offset | size | field    | encoding |
//! |--------|------|----------|----------|
//! | 0      | 4    | magic    | network magic bytes |
//! | 4      | 12   | command  | ASCII, NUL padded |
//! | 16     | 4    | length   | u32 LE, payload bytes |
//! | 20     | 4    | checksum | first 4 bytes of SHA256d(payload) |
//!
//! [`MessageCodec`] is a tokio-util codec. It checks magic and length in the header *before*
//! reserving any buffer: a payload over the global cap (32 MiB, Namecoin's limit) or over the
//! caller's cap for that command is an error; payloads of commands the caller does not want
//! (e.g. `headers`, `block` from a coin peer) are discarded as they stream in, never buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub const HEADER_LEN: usize = 24;
/// Namecoin's maximum P2P message size.
pub const MAX_MESSAGE_LEN: usize = 32 * 1024 * 1024;

/// A 12-byte command name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command([u8; 12]);

impl Command {
    /// A command from ASCII text of at most 12 bytes.
    pub const fn new(name: &str) -> Command {
        let b = name.as_bytes();
        assert!(b.len() <= 12);
        let mut out = [0u8; 12];
        let mut i = 0;
        while i < b.len() {
            out[i] = b[i];
            i += 1;
        }
        Command(out)
    }

    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The name without NUL padding (lossy for non-ASCII).
    pub fn name(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(12);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }

    /// Well-formed: printable ASCII, then only NULs.
    pub fn is_well_formed(&self) -> bool {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(12);
        self.0[..end].iter().all(|&b| (0x20..0x7f).contains(&b))
            && self.0[end..].iter().all(|&b| b == 0)
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// First four bytes of SHA256d.
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    checksum_of(&digest(payload))
}

/// SHA256d of a payload, in the byte order the checksum takes its first four bytes from.
/// Computed with the `sha2` crate, which is about a sixth faster than `bitcoin_hashes` on
/// 1 KB payloads (both use the CPU's SHA instructions); it is the same hash (tested).
pub fn digest(payload: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(sha2::Sha256::digest(payload)).into()
}

/// The checksum a payload whose [`digest`] is known gets: its first four bytes.
pub fn checksum_of(digest: &[u8; 32]) -> [u8; 4] {
    [digest[0], digest[1], digest[2], digest[3]]
}

/// One framed message as the codec yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A message whose payload was read and checksum-verified. `digest` is the payload's
    /// whole SHA256d (the checksum is its first four bytes), kept so that a caller whose
    /// payload id is that same hash (a BuMP packet) does not compute it again.
    Message {
        command: Command,
        payload: Bytes,
        digest: [u8; 32],
    },
    /// A message of a command the policy does not want; its payload was discarded unread.
    Skipped { command: Command, len: usize },
    /// A message whose checksum did not match; the stream is still in sync.
    BadChecksum { command: Command, len: usize },
    /// A message of a command the policy verifies later
    /// ([`CommandPolicy::verify_later`]): its payload and the header's checksum, not yet
    /// compared. [`Frame::verify`] makes it a `Message` or a `BadChecksum`.
    Unverified {
        command: Command,
        payload: Bytes,
        sum: [u8; 4],
    },
}

impl Frame {
    /// Check an [`Frame::Unverified`] frame's checksum (hashing its payload); other frames
    /// are returned as they are.
    pub fn verify(self) -> Frame {
        match self {
            Frame::Unverified {
                command,
                payload,
                sum,
            } => {
                let digest = digest(&payload);
                if checksum_of(&digest) != sum {
                    Frame::BadChecksum {
                        command,
                        len: payload.len(),
                    }
                } else {
                    Frame::Message {
                        command,
                        payload,
                        digest,
                    }
                }
            }
            f => f,
        }
    }
}

/// Errors that end a connection: after them the byte stream cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("wrong network magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("malformed command name {0:02x?}")]
    BadCommand([u8; 12]),
    #[error("{command} payload of {len} bytes is over the limit of {max}")]
    Oversize {
        command: Command,
        len: usize,
        max: usize,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What a reader wants of each command: `Some(max)` to receive payloads up to `max` bytes,
/// `None` to have them skipped.
pub trait CommandPolicy {
    fn max_payload(&self, command: &Command) -> Option<usize>;

    /// Whether payloads of `command` are handed on as [`Frame::Unverified`], their checksum
    /// left for the reader to check (so that it can hash them off the reading task). No by
    /// default.
    fn verify_later(&self, _command: &Command) -> bool {
        false
    }
}

impl<F: Fn(&Command) -> Option<usize>> CommandPolicy for F {
    fn max_payload(&self, command: &Command) -> Option<usize> {
        self(command)
    }
}

enum State {
    Header,
    Payload {
        command: Command,
        len: usize,
        sum: [u8; 4],
    },
    Skip {
        command: Command,
        len: usize,
        left: usize,
    },
}

/// tokio-util codec for Namecoin P2P messages.
pub struct MessageCodec<P> {
    magic: [u8; 4],
    policy: P,
    state: State,
}

impl<P: CommandPolicy> MessageCodec<P> {
    pub fn new(magic: [u8; 4], policy: P) -> Self {
        MessageCodec {
            magic,
            policy,
            state: State::Header,
        }
    }
}

/// Encode one message (header + payload) into `dst`.
pub fn encode_message(magic: [u8; 4], command: Command, payload: &[u8], dst: &mut BytesMut) {
    encode_message_summed(magic, command, payload, checksum(payload), dst)
}

/// [`encode_message`] with the checksum already known (see [`Outgoing::with_digest`]).
pub fn encode_message_summed(
    magic: [u8; 4],
    command: Command,
    payload: &[u8],
    sum: [u8; 4],
    dst: &mut BytesMut,
) {
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&magic);
    dst.put_slice(command.as_bytes());
    dst.put_u32_le(payload.len() as u32);
    dst.put_slice(&sum);
    dst.put_slice(payload);
}

impl<P: CommandPolicy> Decoder for MessageCodec<P> {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        loop {
            match &mut self.state {
                State::Header => {
                    if src.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let mut magic = [0u8; 4];
                    magic.copy_from_slice(&src[..4]);
                    if magic != self.magic {
                        return Err(WireError::BadMagic(magic));
                    }
                    let mut cmd = [0u8; 12];
                    cmd.copy_from_slice(&src[4..16]);
                    let command = Command(cmd);
                    if !command.is_well_formed() {
                        return Err(WireError::BadCommand(cmd));
                    }
                    let len = u32::from_le_bytes([src[16], src[17], src[18], src[19]]) as usize;
                    let sum = [src[20], src[21], src[22], src[23]];
                    if len > MAX_MESSAGE_LEN {
                        return Err(WireError::Oversize {
                            command,
                            len,
                            max: MAX_MESSAGE_LEN,
                        });
                    }
                    src.advance(HEADER_LEN);
                    match self.policy.max_payload(&command) {
                        Some(max) if len > max => {
                            return Err(WireError::Oversize { command, len, max })
                        }
                        Some(_) => {
                            src.reserve(len.saturating_sub(src.len()));
                            self.state = State::Payload { command, len, sum };
                        }
                        None => {
                            self.state = State::Skip {
                                command,
                                len,
                                left: len,
                            }
                        }
                    }
                }
                State::Payload { command, len, sum } => {
                    if src.len() < *len {
                        return Ok(None);
                    }
                    let payload = src.split_to(*len).freeze();
                    let (command, sum) = (*command, *sum);
                    self.state = State::Header;
                    let frame = Frame::Unverified {
                        command,
                        payload,
                        sum,
                    };
                    if self.policy.verify_later(&command) {
                        return Ok(Some(frame));
                    }
                    return Ok(Some(frame.verify()));
                }
                State::Skip { command, len, left } => {
                    let n = (*left).min(src.len());
                    src.advance(n);
                    *left -= n;
                    if *left > 0 {
                        return Ok(None);
                    }
                    let frame = Frame::Skipped {
                        command: *command,
                        len: *len,
                    };
                    self.state = State::Header;
                    return Ok(Some(frame));
                }
            }
        }
    }
}

/// An outgoing message: command and encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub command: Command,
    pub payload: Bytes,
    /// The checksum, when the sender already knows the payload's SHA256d; `None`: computed
    /// when encoded.
    sum: Option<[u8; 4]>,
}

impl Outgoing {
    pub fn new(command: Command, payload: Bytes) -> Outgoing {
        Outgoing {
            command,
            payload,
            sum: None,
        }
    }

    /// A message whose payload's SHA256d the caller has just computed or checked (a BuMP
    /// packet read back from disk and verified against its id): the header's checksum is
    /// taken from it instead of hashing the payload a second time.
    pub fn with_digest(command: Command, payload: Bytes, digest: &[u8; 32]) -> Outgoing {
        debug_assert_eq!(checksum(&payload), checksum_of(digest));
        Outgoing {
            command,
            payload,
            sum: Some(checksum_of(digest)),
        }
    }
}

impl<P> Encoder<Outgoing> for MessageCodec<P> {
    type Error = WireError;
    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), WireError> {
        let sum = item.sum.unwrap_or_else(|| checksum(&item.payload));
        encode_message_summed(self.magic, item.command, &item.payload, sum, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];

    fn all(_: &Command) -> Option<usize> {
        Some(MAX_MESSAGE_LEN)
    }

    proptest! {
        #[test]
        fn digest_is_bitcoins_sha256d(payload in proptest::collection::vec(any::<u8>(), 0..3000)) {
            use bitcoin::hashes::{sha256d, Hash};
            prop_assert_eq!(digest(&payload), sha256d::Hash::hash(&payload).to_byte_array());
        }
    }

    fn decode_all<P: CommandPolicy>(
        codec: &mut MessageCodec<P>,
        bytes: &[u8],
        step: usize,
    ) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn round_trip_in_any_chunking(payload in proptest::collection::vec(any::<u8>(), 0..3000), step in 1usize..200) {
            let mut buf = BytesMut::new();
            encode_message(MAGIC, Command::new("bump"), &payload, &mut buf);
            encode_message(MAGIC, Command::new("ping"), &[1, 2, 3, 4, 5, 6, 7, 8], &mut buf);
            let frames = decode_all(&mut MessageCodec::new(MAGIC, all), &buf, step);
            prop_assert_eq!(frames.len(), 2);
            let digest = super::digest(&payload);
            prop_assert_eq!(&frames[0], &Frame::Message { command: Command::new("bump"), payload: Bytes::from(payload.clone()), digest });
            // A precomputed digest gives the same bytes as hashing when encoded.
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            let mut codec = MessageCodec::new(MAGIC, all);
            codec.encode(Outgoing::new(Command::new("bump"), Bytes::from(payload.clone())), &mut a).unwrap();
            codec.encode(Outgoing::with_digest(Command::new("bump"), Bytes::from(payload), &digest), &mut b).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut codec = MessageCodec::new(MAGIC, all);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = codec.decode(&mut buf);
        }
    }

    #[test]
    fn payloads_verified_later_come_unverified_and_verify_to_the_same_frames() {
        struct Later;
        impl CommandPolicy for Later {
            fn max_payload(&self, _: &Command) -> Option<usize> {
                Some(100)
            }
            fn verify_later(&self, c: &Command) -> bool {
                c.name() == "bump"
            }
        }
        let mut buf = BytesMut::new();
        encode_message(MAGIC, Command::new("bump"), &[3; 40], &mut buf);
        encode_message(MAGIC, Command::new("bump"), &[4; 40], &mut buf);
        encode_message(MAGIC, Command::new("ping"), &[0; 8], &mut buf);
        let second = HEADER_LEN + 40 + 20; // the second bump's checksum
        buf[second] ^= 1;
        let frames = decode_all(&mut MessageCodec::new(MAGIC, Later), &buf, 17);
        assert!(
            matches!(&frames[0], Frame::Unverified { command, .. } if command.name() == "bump")
        );
        assert!(matches!(&frames[1], Frame::Unverified { .. }));
        // Not deferred: checked by the codec as before.
        assert!(matches!(&frames[2], Frame::Message { command, .. } if command.name() == "ping"));
        let payload = Bytes::from_static(&[3; 40]);
        assert_eq!(
            frames[0].clone().verify(),
            Frame::Message {
                command: Command::new("bump"),
                digest: digest(&payload),
                payload,
            }
        );
        assert_eq!(
            frames[1].clone().verify(),
            Frame::BadChecksum {
                command: Command::new("bump"),
                len: 40
            }
        );
    }

    #[test]
    fn skips_unwanted_and_flags_bad_checksums() {
        let mut buf = BytesMut::new();
        encode_message(MAGIC, Command::new("headers"), &vec![7u8; 5000], &mut buf);
        encode_message(MAGIC, Command::new("ping"), &[0; 8], &mut buf);
        let n = buf.len();
        buf[n - 9] ^= 1; // corrupt the ping checksum
        let policy = |c: &Command| {
            if c.name() == "headers" {
                None
            } else {
                Some(100)
            }
        };
        let frames = decode_all(&mut MessageCodec::new(MAGIC, policy), &buf, 333);
        assert_eq!(
            frames[0],
            Frame::Skipped {
                command: Command::new("headers"),
                len: 5000
            }
        );
        assert_eq!(
            frames[1],
            Frame::BadChecksum {
                command: Command::new("ping"),
                len: 8
            }
        );
    }

    #[test]
    fn oversize_and_bad_magic_fail_before_buffering() {
        let mut hdr = BytesMut::new();
        hdr.put_slice(&MAGIC);
        hdr.put_slice(Command::new("bump").as_bytes());
        hdr.put_u32_le(2000);
        hdr.put_slice(&[0; 4]);
        let policy = |_: &Command| Some(1024);
        let mut codec = MessageCodec::new(MAGIC, policy);
        assert!(matches!(
            codec.decode(&mut hdr.clone()),
            Err(WireError::Oversize {
                len: 2000,
                max: 1024,
                ..
            })
        ));
        let mut huge = hdr.clone();
        huge[16..20].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_le_bytes());
        let mut codec = MessageCodec::new(MAGIC, all);
        assert!(matches!(
            codec.decode(&mut huge),
            Err(WireError::Oversize { .. })
        ));
        assert!(
            huge.capacity() < 1 << 20,
            "no buffer reserved for an oversize payload"
        );
        let mut wrong = hdr.clone();
        wrong[0] = 0xf9;
        assert!(matches!(
            MessageCodec::new(MAGIC, all).decode(&mut wrong),
            Err(WireError::BadMagic(_))
        ));
        let mut badcmd = hdr;
        badcmd[4] = 0x01;
        assert!(matches!(
            MessageCodec::new(MAGIC, all).decode(&mut badcmd),
            Err(WireError::BadCommand(_))
        ));
    }
}
