//! A one-shot Poly1305 (RFC 8439 §2.5) for the short inputs of inbox trial decryption: the
//! key slots of a direct envelope are checked with eight 48-byte MACs under one key, for
//! every envelope in an inbox bucket. The `poly1305` crate is right for long inputs, but its
//! AVX2 backend has a set-up and finalisation cost that made these eight MACs take about 5 µs
//! per envelope (measured beside ECDH in benches/sealed.rs, ~12 % of a trial); this is the
//! constant-time 26-bit-limb form of poly1305-donna, tested against the crate and the RFC.
//! The AEADs (XChaCha20-Poly1305 bodies) keep using the crates.

const MASK: u32 = 0x3ff_ffff;

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The Poly1305 tag of `msg` under the one-time `key` (r ‖ s).
pub fn tag(key: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    // r, clamped, in five 26-bit limbs.
    let r0 = le32(&key[0..]) & 0x3ff_ffff;
    let r1 = (le32(&key[3..]) >> 2) & 0x3ff_ff03;
    let r2 = (le32(&key[6..]) >> 4) & 0x3ff_c0ff;
    let r3 = (le32(&key[9..]) >> 6) & 0x3f0_3fff;
    let r4 = (le32(&key[12..]) >> 8) & 0x00f_ffff;
    let (r0, r1, r2, r3, r4) = (r0 as u64, r1 as u64, r2 as u64, r3 as u64, r4 as u64);
    let (s1, s2, s3, s4) = (r1 * 5, r2 * 5, r3 * 5, r4 * 5);
    let (mut h0, mut h1, mut h2, mut h3, mut h4) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for chunk in msg.chunks(16) {
        let mut block = [0u8; 16];
        block[..chunk.len()].copy_from_slice(chunk);
        // A full block gets the 2^128 bit; a short one a 1 byte after its end instead.
        let hibit = if chunk.len() == 16 {
            1 << 24
        } else {
            block[chunk.len()] = 1;
            0
        };
        h0 += le32(&block[0..]) & MASK;
        h1 += (le32(&block[3..]) >> 2) & MASK;
        h2 += (le32(&block[6..]) >> 4) & MASK;
        h3 += (le32(&block[9..]) >> 6) & MASK;
        h4 += (le32(&block[12..]) >> 8) | hibit;
        let (a0, a1, a2, a3, a4) = (h0 as u64, h1 as u64, h2 as u64, h3 as u64, h4 as u64);
        let d0 = a0 * r0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
        let mut d1 = a0 * r1 + a1 * r0 + a2 * s4 + a3 * s3 + a4 * s2;
        let mut d2 = a0 * r2 + a1 * r1 + a2 * r0 + a3 * s4 + a4 * s3;
        let mut d3 = a0 * r3 + a1 * r2 + a2 * r1 + a3 * r0 + a4 * s4;
        let mut d4 = a0 * r4 + a1 * r3 + a2 * r2 + a3 * r1 + a4 * r0;
        h0 = d0 as u32 & MASK;
        d1 += d0 >> 26;
        h1 = d1 as u32 & MASK;
        d2 += d1 >> 26;
        h2 = d2 as u32 & MASK;
        d3 += d2 >> 26;
        h3 = d3 as u32 & MASK;
        d4 += d3 >> 26;
        h4 = d4 as u32 & MASK;
        h0 += (d4 >> 26) as u32 * 5;
        h1 += h0 >> 26;
        h0 &= MASK;
    }
    // Carry fully, then reduce mod 2^130 - 5 without branches.
    let mut c = h1 >> 26;
    h1 &= MASK;
    h2 += c;
    c = h2 >> 26;
    h2 &= MASK;
    h3 += c;
    c = h3 >> 26;
    h3 &= MASK;
    h4 += c;
    c = h4 >> 26;
    h4 &= MASK;
    h0 += c * 5;
    c = h0 >> 26;
    h0 &= MASK;
    h1 += c;

    let mut g0 = h0 + 5;
    c = g0 >> 26;
    g0 &= MASK;
    let mut g1 = h1 + c;
    c = g1 >> 26;
    g1 &= MASK;
    let mut g2 = h2 + c;
    c = g2 >> 26;
    g2 &= MASK;
    let mut g3 = h3 + c;
    c = g3 >> 26;
    g3 &= MASK;
    let g4 = (h4 + c).wrapping_sub(1 << 26);
    // g4's top bit is set when h < p: keep h; else take g = h - p.
    let take_g = (g4 >> 31).wrapping_sub(1);
    let keep_h = !take_g;
    h0 = (h0 & keep_h) | (g0 & take_g);
    h1 = (h1 & keep_h) | (g1 & take_g);
    h2 = (h2 & keep_h) | (g2 & take_g);
    h3 = (h3 & keep_h) | (g3 & take_g);
    h4 = (h4 & keep_h) | (g4 & take_g);

    // h mod 2^128, plus s.
    let w0 = h0 | (h1 << 26);
    let w1 = (h1 >> 6) | (h2 << 20);
    let w2 = (h2 >> 12) | (h3 << 14);
    let w3 = (h3 >> 18) | (h4 << 8);
    let mut out = [0u8; 16];
    let mut f = 0u64;
    for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
        f = w as u64 + le32(&key[16 + 4 * i..]) as u64 + (f >> 32);
        out[4 * i..4 * i + 4].copy_from_slice(&(f as u32).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use poly1305::universal_hash::KeyInit;
    use proptest::prelude::*;

    #[test]
    fn rfc8439_vector() {
        // RFC 8439 §2.5.2.
        let key: [u8; 32] =
            hex::decode("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
                .unwrap()
                .try_into()
                .unwrap();
        let msg = b"Cryptographic Forum Research Group";
        assert_eq!(
            hex::encode(tag(&key, msg)),
            "a8061dc1305136c6c22b8baf0c0127a9"
        );
    }

    #[test]
    fn edge_keys_and_lengths_match_the_crate() {
        // All-ones keys push every limb and the final reduction to their limits.
        for key in [[0u8; 32], [0xff; 32]] {
            for len in [0, 1, 15, 16, 17, 32, 48, 64, 200] {
                for fill in [0u8, 0xff] {
                    let msg = vec![fill; len];
                    let want = poly1305::Poly1305::new(&key.into()).compute_unpadded(&msg);
                    assert_eq!(tag(&key, &msg)[..], want[..], "key {key:?} len {len}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_poly1305_crate(key in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            let want = poly1305::Poly1305::new(&key.into()).compute_unpadded(&msg);
            prop_assert_eq!(&tag(&key, &msg)[..], &want[..]);
        }
    }
}
