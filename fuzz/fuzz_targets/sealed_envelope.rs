//! Any bytes as a sealed envelope: opening with a group key or an identity must not panic,
//! and nothing opens without the key (a random envelope authenticating would be a break).
#![no_main]
use bump::sealed::envelope::{open, Opener};
use bump::sealed::keys::{GroupKey, Identity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let g = GroupKey([7; 32]);
    let id = Identity::from_secret_bytes(&[9; 32]).unwrap();
    assert!(open(data, &Opener::Group(&g)).is_err());
    assert!(open(data, &Opener::Identity(&id)).is_err());
});
