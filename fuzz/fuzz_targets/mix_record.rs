//! Any text as a Namecoin mix record value: decoding must not panic.
#![no_main]
use bump::names::record::MixRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for net in [namecoin::Network::Mainnet, namecoin::Network::Regtest] {
            let _ = MixRecord::decode(s, net);
        }
    }
});
