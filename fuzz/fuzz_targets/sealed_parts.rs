//! Any bytes as packets under a group's or an inbox's tag (protocol.md §8.4): the part readers
//! must not panic, and nothing opens without the key.
#![no_main]
use bump::packet::{Packet, BODY_LEN};
use bump::sealed::keys::{GroupKey, Identity};
use bump::sealed::parts::{open_unit, PartReader};
use bump::tag::Tag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let g = GroupKey([7; 32]);
    let id = Identity::from_secret_bytes(&[9; 32]).unwrap();
    assert!(open_unit(&[3; 32], &Tag([1; 20]), data).is_none());
    let (mut gr, mut ir) = (PartReader::group(&g), PartReader::identity(&id));
    for (i, chunk) in data.chunks(BODY_LEN).enumerate() {
        let mut body = Box::new([0u8; BODY_LEN]);
        body[..chunk.len()].copy_from_slice(chunk);
        let p = Packet {
            tag: Tag([1; 20]),
            expires: 0,
            nonce: 0,
            body,
        };
        assert!(gr.push(i as u64, &p).is_empty());
        assert!(ir.push(i as u64, &p).is_empty());
    }
});
