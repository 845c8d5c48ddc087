//! The node's one clock: wall time as unix seconds (packet expiry, bans, chain records) and
//! unix milliseconds (Tau delays, loop round trips). Every module asks here, so a test clock
//! or a change of resolution has one place to go.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Current unix time in seconds, saturated into a u32 (the packet's `expires` width).
pub fn unix_now() -> u32 {
    since_epoch().as_secs().min(u32::MAX as u64) as u32
}

/// Current unix time in seconds as a u64 (ban deadlines, peer table times).
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Current unix time in milliseconds (Tau delays are held to the millisecond).
pub fn unix_ms() -> u64 {
    since_epoch().as_millis() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_three_readings_agree() {
        let (s, l, ms) = (super::unix_now(), super::unix_secs(), super::unix_ms());
        assert!(s as u64 <= l && l <= s as u64 + 1);
        assert!(ms / 1000 >= s as u64 && ms / 1000 <= l + 1);
    }
}
