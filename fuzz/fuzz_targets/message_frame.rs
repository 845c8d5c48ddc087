//! Any sequence of bodies: frame decoding and reassembly must not panic, and every complete
//! message is no longer than its parts allow.
#![no_main]
use bump::message::{Assembler, PartHeader, PART_DATA_LEN};
use bump::packet::{Packet, BODY_LEN};
use bump::tag::Tag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = Assembler::new();
    for (seq, chunk) in data.chunks(BODY_LEN).enumerate() {
        let mut body = Box::new([0u8; BODY_LEN]);
        body[..chunk.len()].copy_from_slice(chunk);
        if let Ok(f) = PartHeader::decode(&body) {
            assert!(f.index < f.count);
        }
        a.push(seq as u64, &Packet { tag: Tag([0; 20]), expires: 0, nonce: 0, body });
    }
    let (done, _) = a.finish();
    for m in done {
        assert!(m.data.len() <= m.parts as usize * PART_DATA_LEN);
    }
});
