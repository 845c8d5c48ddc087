//! Any bytes: decode must not panic, and a decoded packet re-encodes to the same bytes.
#![no_main]
use bump::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        assert_eq!(&p.encode()[..], data);
    }
});
