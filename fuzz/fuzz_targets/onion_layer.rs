//! Any bytes as hop instructions, and as a relay packet peeled by a fixed mix key: decoding and
//! peeling must not panic; decoded instructions re-encode to something that decodes the same.
#![no_main]
use bump::onion::layer::{peel, HopInstructions};
use bump::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = HopInstructions::decode(data) {
        let again = HopInstructions::decode(&h.encode()).expect("own encoding decodes");
        assert_eq!(again, h);
    }
    if let Ok(p) = Packet::decode(data) {
        let key = secp256k1::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let _ = peel(&key, &p, &mut rand::rngs::OsRng);
    }
});
