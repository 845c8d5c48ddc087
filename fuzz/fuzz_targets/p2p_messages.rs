//! Any byte stream from a peer: the Namecoin framing codec and every BuMP message decoder must
//! not panic, and every decoded message re-encodes to a payload that decodes to the same thing.
#![no_main]
use bump::p2p::message::{max_payload, Message};
use libfuzzer_sys::fuzz_target;
use namecoin::wire::{Command, Frame, MessageCodec};
use tokio_util::codec::Decoder;

type Policy = fn(&Command) -> Option<usize>;

fuzz_target!(|data: &[u8]| {
    let mut codec = MessageCodec::new([0xfa, 0xbf, 0xb5, 0xda], max_payload as Policy);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        if let Frame::Message { command, payload, .. } = frame {
            if let Ok(m) = Message::decode(command, &payload) {
                // Foreign inventory entries are counted, not re-sent: compare without them.
                let m = match m {
                    Message::Inv { ids, .. } => Message::Inv { ids, other: 0 },
                    Message::GetData { ids, .. } => Message::GetData { ids, other: 0 },
                    Message::NotFound { ids, .. } => Message::NotFound { ids, other: 0 },
                    m => m,
                };
                let out = m.encode();
                assert_eq!(Message::decode(out.command, &out.payload).ok(), Some(m));
            }
        }
    }
    // Decoders straight on the raw bytes, for every handled command.
    for c in ["version", "verack", "feature", "ping", "pong", "inv", "getdata", "notfound", "bump", "addr", "addrv2", "getaddr", "sendaddrv2", "bumpfloor"] {
        let _ = Message::decode(Command::new(c), data);
    }
});
