//! Any bytes as a `bumprecon` payload: decode must not panic, a decoded message re-encodes to
//! one that decodes the same, and answering it against a small store must not panic.
#![no_main]
use bump::p2p::recon::{decode, encode, respond, Item, Snapshot};
use bump::packet::PacketId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode(data) {
        assert_eq!(decode(&encode(&r)).ok().as_ref(), Some(&r));
        let snap = Snapshot::new(
            (0..100u8)
                .map(|i| Item {
                    expires: 1000 + i as u32 % 7,
                    id: PacketId([i; 32]),
                })
                .collect(),
        );
        let _ = respond(&snap, &r);
    }
});
