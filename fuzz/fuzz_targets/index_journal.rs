//! Any bytes as index journal records (store format 6): decoding must not panic, and a record
//! that decodes encodes back to the same 81 bytes. Each chunk is tried as it is (the CRC
//! almost never holds) and with its CRC made to hold, so the fields are decoded too.
#![no_main]
use bump::store::journal::{decode, encode, RECORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(RECORD_LEN) {
        let mut r = [0u8; RECORD_LEN];
        r.copy_from_slice(chunk);
        let mut fixed = r;
        let crc = crc32fast::hash(&fixed[..RECORD_LEN - 4]);
        fixed[RECORD_LEN - 4..].copy_from_slice(&crc.to_be_bytes());
        for r in [r, fixed] {
            if let Some((kind, held)) = decode(&r) {
                assert_eq!(encode(kind, &held), r);
            }
        }
        // With the CRC right, only the kind byte can refuse a record.
        assert_eq!(decode(&fixed).is_some(), matches!(fixed[0], 1 | 2));
    }
});
