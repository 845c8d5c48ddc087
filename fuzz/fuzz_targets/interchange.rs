//! Any text: interchange parsing must not panic, and what parses round-trips through JSON.
#![no_main]
use bump::packet::{parse_interchange, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(packets) = parse_interchange(text) {
            for p in packets {
                let s = serde_json::to_string(&p.to_json()).unwrap();
                assert_eq!(Packet::from_json_str(&s).unwrap(), p);
            }
        }
    }
});
