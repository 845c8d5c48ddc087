//! Any bytes as a Speak Easy item (docs/speakeasy.md §3): decoding must not panic, and what
//! decodes encodes back to the same bytes.
#![no_main]
use bump::speakeasy::post::Item;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = Item::decode(data) {
        assert_eq!(item.encode().unwrap(), data);
    }
});
