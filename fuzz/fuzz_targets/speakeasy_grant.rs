//! Any bytes as a Speak Easy grant (docs/speakeasy.md §4) and as an invite string: decoding
//! must not panic, and a decoded grant encodes to bytes that decode to the same grant (the
//! compartment list may come in another valid order; the encoding is parents first, by id).
#![no_main]
use bump::speakeasy::grant::{from_string, Grant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Grant::decode(data) {
        let again = g.encode().unwrap();
        assert_eq!(Grant::decode(&again).unwrap(), g);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = from_string(s);
    }
});
