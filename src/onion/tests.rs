//! BOLT #4 test vectors (lightning/bolts `bolt04/onion-test.json`, the 1366-byte onion from
//! session key 0x41.., associated data 0x42.., five hops, and the per-hop shared secrets of
//! `bolt04/onion-error-test.json`), plus BuMP's own properties.

use super::*;

const SESSION_KEY: [u8; 32] = [0x41; 32];
const ASSOC: [u8; 32] = [0x42; 32];
/// Hop i's secret key is 32 bytes of 0x41 + i.
const HOP_SECRET_BYTES: [u8; 5] = [0x41, 0x42, 0x43, 0x44, 0x45];
const PUBKEYS: [&str; 5] = [
    "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619",
    "0324653eac434488002cc06bbfb7f10fe18991e35f9fe4302dbea6d2353dc0ab1c",
    "027f31ebc5462c1fdce1b737ecff52d37d75dea43ce11c74d25aa297165faa2007",
    "032c0b7cf95324a07d05398b240174dc0c2be444d96b159aa6c7f7b1e668680991",
    "02edabbd16b41c8371b92ef2f04c1185b4f03b6dcd52ba9b78d9d7c89c8f221145",
];
/// Payloads as in the vector, with their BigSize length prefix.
const PAYLOADS: [&str; 5] = [
    "1202023a98040205dc06080000000000000001",
    concat!(
        "52020236b00402057806080000000000000002fd02013c0102030405060708090a0b0c0d0e0f010203040506",
        "0708090a0b0c0d0e0f0102030405060708090a0b0c0d0e0f0102030405060708090a0b0c0d0e0f",
    ),
    "12020230d4040204e206080000000000000003",
    "1202022710040203e806080000000000000004",
    concat!(
        "fd011002022710040203e8082224a33562c54507a9334e79f0dc4f17d407e6d7c61f0e2f3d0d38599502f617",
        "042710fd012de02a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
        "2a2a2a2a2a2a2a2a2a2a2a",
    ),
];
const SHARED_SECRETS: [&str; 5] = [
    "53eb63ea8a3fec3b3cd433b85cd62a4b145e1dda09391b348c4e1cd36a03ea66",
    "a6519e98832a0b179f62123b3567c106db99ee37bef036e783263602f3488fae",
    "3a6b412548762f0dbccce5c7ae7bb8147d1caf9b5471c34120b30bc9c04891cc",
    "21e13c2d7cfe7e18836df50872466117a295783ab8aab0e7ecc8c725503ad02d",
    "b5756b9b542727dbafc6765a49488b023a725d631af688fc031217e90770c328",
];
const ONION_PARTS: &[&str] = &[
    "0002eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619f7f3416a5aa36dc7eeb3ec6d421e",
    "9615471ab870a33ac07fa5d5a51df0a8823aabe3fea3f90d387529d4f72837f9e687230371ccd8d263072206dbed0234",
    "f6505e21e282abd8c0e4f5b9ff8042800bbab065036eadd0149b37f27dde664725a49866e052e809d2b0198ab9610faa",
    "656bbf4ec516763a59f8f42c171b179166ba38958d4f51b39b3e98706e2d14a2dafd6a5df808093abfca5aeaaca16ede",
    "d5db7d21fb0294dd1a163edf0fb445d5c8d7d688d6dd9c541762bf5a5123bf9939d957fe648416e88f1b0928bfa03498",
    "2b22548e1a4d922690eecf546275afb233acf4323974680779f1a964cfe687456035cc0fba8a5428430b390f0057b6d1",
    "fe9a8875bfa89693eeb838ce59f09d207a503ee6f6299c92d6361bc335fcbf9b5cd44747aadce2ce6069cfdc3d671dae",
    "f9f8ae590cf93d957c9e873e9a1bc62d9640dc8fc39c14902d49a1c80239b6c5b7fd91d05878cbf5ffc7db2569f47c43",
    "d6c0d27c438abff276e87364deb8858a37e5a62c446af95d8b786eaf0b5fcf78d98b41496794f8dcaac4eef34b2acfb9",
    "4c7e8c32a9e9866a8fa0b6f2a06f00a1ccde569f97eec05c803ba7500acc96691d8898d73d8e6a47b8f43c3d5de74458",
    "d20eda61474c426359677001fbd75a74d7d5db6cb4feb83122f133206203e4e2d293f838bf8c8b3a29acb321315100b8",
    "7e80e0edb272ee80fda944e3fb6084ed4d7f7c7d21c69d9da43d31a90b70693f9b0cc3eac74c11ab8ff655905688916c",
    "fa4ef0bd04135f2e50b7c689a21d04e8e981e74c6058188b9b1f9dfc3eec6838e9ffbcf22ce738d8a177c19318dffef0",
    "90cee67e12de1a3e2a39f61247547ba5257489cbc11d7d91ed34617fcc42f7a9da2e3cf31a94a210a1018143173913c3",
    "8f60e62b24bf0d7518f38b5bab3e6a1f8aeb35e31d6442c8abb5178efc892d2e787d79c6ad9e2fc271792983fa9955ac",
    "4d1d84a36c024071bc6e431b625519d556af38185601f70e29035ea6a09c8b676c9d88cf7e05e0f17098b584c4168735",
    "940263f940033a220f40be4c85344128b14beb9e75696db37014107801a59b13e89cd9d2258c169d523be6d31552c44c",
    "82ff4bb18ec9f099f3bf0e5b1bb2ba9a87d7e26f98d294927b600b5529c47e04d98956677cbcee8fa2b60f49776d8b8c",
    "367465b7c626da53700684fb6c918ead0eab8360e4f60edd25b4f43816a75ecf70f909301825b512469f8389d7940231",
    "1d8aecb7b3ef8599e79485a4388d87744d899f7c47ee644361e17040a7958c8911be6f463ab6a9b2afacd688ec55ef51",
    "7b38f1339efc54487232798bb25522ff4572ff68567fe830f92f7b8113efce3e98c3fffbaedce4fd8b50e41da97c0c08",
    "e423a72689cc68e68f752a5e3a9003e64e35c957ca2e1c48bb6f64b05f56b70b575ad2f278d57850a7ad568c24a4d32a",
    "3d74b29f03dc125488bc7c637da582357f40b0a52d16b3b40bb2c2315d03360bc24209e20972c200566bcf3bbe5c5b0a",
    "edd83132a8a4d5b4242ba370b6d67d9b67eb01052d132c7866b9cb502e44796d9d356e4e3cb47cc527322cd24976fe7c",
    "9257a2864151a38e568ef7a79f10d6ef27cc04ce382347a2488b1f404fdbf407fe1ca1c9d0d5649e34800e25e18951c9",
    "8cae9f43555eef65fee1ea8f15828807366c3b612cd5753bf9fb8fced08855f742cddd6f765f74254f03186683d646e6",
    "f09ac2805586c7cf11998357cafc5df3f285329366f475130c928b2dceba4aa383758e7a9d20705c4bb9db619e2992f6",
    "08a1ba65db254bb389468741d0502e2588aeb54390ac600c19af5c8e61383fc1bebe0029e4474051e4ef908828db9cca",
    "13277ef65db3fd47ccc2179126aaefb627719f421e20",
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn vector() -> (SecretKey, Vec<PublicKey>, Vec<Vec<u8>>, Vec<u8>) {
    let session = SecretKey::from_slice(&SESSION_KEY).unwrap();
    let hops = PUBKEYS
        .iter()
        .map(|k| PublicKey::from_slice(&h(k)).unwrap())
        .collect();
    let payloads = PAYLOADS
        .iter()
        .map(|p| {
            let raw = h(p);
            let (len, n) = read_bigsize(&raw).unwrap();
            assert_eq!(raw.len(), n + len as usize);
            raw[n..].to_vec()
        })
        .collect();
    (session, hops, payloads, h(&ONION_PARTS.concat()))
}

#[test]
fn bolt04_onion_is_reproduced_byte_for_byte() {
    let (session, hops, payloads, want) = vector();
    assert_eq!(want.len(), 1366);
    let got = create(&session, &hops, &payloads, &ASSOC, LIGHTNING_AREA).unwrap();
    assert_eq!(hex::encode(&got), hex::encode(&want));
}

#[test]
fn bolt04_shared_secrets_match() {
    let (session, hops, _, _) = vector();
    let secp = Secp256k1::new();
    let mut eph = session;
    for (i, hop) in hops.iter().enumerate() {
        let (ss, blinding) = hop_keys(&PublicKey::from_secret_key(&secp, &eph), hop, &eph);
        assert_eq!(hex::encode(ss), SHARED_SECRETS[i], "hop {i}");
        eph = eph.mul_tweak(&blinding).unwrap();
    }
}

#[test]
fn bolt04_onion_peels_hop_by_hop() {
    let (_, _, payloads, onion) = vector();
    let mut current = onion;
    for i in 0..5 {
        let key = SecretKey::from_slice(&[HOP_SECRET_BYTES[i]; 32]).unwrap();
        let peeled = peel(&key, &current, &ASSOC, LIGHTNING_AREA).unwrap();
        assert_eq!(peeled.payload, payloads[i], "hop {i} payload");
        assert_eq!(hex::encode(peeled.shared_secret), SHARED_SECRETS[i]);
        match peeled.next {
            Some(next) => {
                assert!(i < 4, "hop {i} must be the last");
                current = next;
            }
            None => assert_eq!(i, 4, "only the last hop has no next layer"),
        }
    }
}

#[test]
fn any_flipped_bit_or_changed_associated_data_fails_the_hmac() {
    let (_, _, _, onion) = vector();
    let key = SecretKey::from_slice(&[0x41; 32]).unwrap();
    for pos in [34, 100, 700, 1333, 1340, 1365] {
        let mut bad = onion.clone();
        bad[pos] ^= 1;
        assert_eq!(
            peel(&key, &bad, &ASSOC, LIGHTNING_AREA),
            Err(OnionError::Hmac),
            "byte {pos}"
        );
    }
    let mut bad_key = onion.clone();
    bad_key[5] ^= 1;
    assert!(peel(&key, &bad_key, &ASSOC, LIGHTNING_AREA).is_err());
    assert_eq!(
        peel(&key, &onion, &[0x43; 32], LIGHTNING_AREA),
        Err(OnionError::Hmac)
    );
    let wrong_hop = SecretKey::from_slice(&[0x42; 32]).unwrap();
    assert_eq!(
        peel(&wrong_hop, &onion, &ASSOC, LIGHTNING_AREA),
        Err(OnionError::Hmac)
    );
    assert!(matches!(
        peel(&key, &onion[1..], &ASSOC, LIGHTNING_AREA),
        Err(OnionError::WrongLength { .. })
    ));
}

#[test]
fn small_areas_round_trip_and_refuse_oversize_routes() {
    let secp = Secp256k1::new();
    let keys: Vec<SecretKey> = (1..=5u8)
        .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
        .collect();
    let hops: Vec<PublicKey> = keys
        .iter()
        .map(|k| PublicKey::from_secret_key(&secp, k))
        .collect();
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 40 + i * 10]).collect();
    let area = 934;
    let session = SecretKey::from_slice(&[9; 32]).unwrap();
    let onion = create(&session, &hops, &payloads, b"tag+expires", area).unwrap();
    assert_eq!(onion.len(), area + OVERHEAD);
    let mut cur = onion;
    for i in 0..5 {
        let p = peel(&keys[i], &cur, b"tag+expires", area).unwrap();
        assert_eq!(p.payload, payloads[i]);
        if let Some(n) = p.next {
            assert_eq!(n.len(), area + OVERHEAD, "every layer has the same size");
            cur = n;
        }
    }
    let big = vec![vec![0u8; 900]; 2];
    assert!(matches!(
        create(&session, &hops[..2], &big, b"", area),
        Err(OnionError::TooLarge { .. })
    ));
    assert_eq!(
        create(&session, &hops, &payloads[..2], b"", area),
        Err(OnionError::HopCount)
    );
}

#[test]
fn bigsize_is_minimal() {
    for n in [
        0u64,
        0xfc,
        0xfd,
        0xffff,
        0x10000,
        0xffff_ffff,
        0x1_0000_0000,
    ] {
        let mut v = Vec::new();
        bigsize(n, &mut v);
        assert_eq!(read_bigsize(&v), Some((n, v.len())));
    }
    assert_eq!(read_bigsize(&[0xfd, 0x00, 0x10]), None, "non-minimal");
    assert_eq!(read_bigsize(&[0xfe, 0, 0, 0]), None, "truncated");
}
