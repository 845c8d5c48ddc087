//! Keys of sealed messages (docs/protocol.md §8): identities (secp256k1, BIP340 x-only) and
//! their printable strings, group keys (random or from a passphrase by argon2id), and the
//! keys derived from them by HKDF-SHA256.
//!
//! Printable strings are bech32m (checksummed, so a typo is caught): `bumpid1…` a public
//! identity (32-byte x-only key), `bumpsec1…` an identity's secret key, `bumpgrp1…` a group
//! invite (version 1 ‖ 32-byte group key).

use bech32::{Bech32m, Hrp};
use secp256k1::{Keypair, Secp256k1, SecretKey, XOnlyPublicKey};

pub const HRP_ID: &str = "bumpid";
pub const HRP_SECRET: &str = "bumpsec";
pub const HRP_GROUP: &str = "bumpgrp";

/// argon2id parameters for passphrase groups: 19 MiB, 2 passes, 1 lane (OWASP's minimum for
/// argon2id), fixed salt, so that two people with one passphrase derive one key.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_SALT: &[u8] = b"bump/group/passphrase/1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "not a valid {what} string (a typo? the checksum does not match or the text is cut): {why}"
    )]
    BadString { what: &'static str, why: String },
    #[error("this is a {found} string, not a {want} string")]
    WrongKind { want: &'static str, found: String },
    #[error("the key inside is not a valid secp256k1 key")]
    BadKey,
    #[error("unsupported {what} version {version}")]
    Version { what: &'static str, version: u8 },
    #[error("passphrase key derivation failed: {0}")]
    Argon2(String),
}

fn encode(hrp: &str, data: &[u8]) -> String {
    let hrp = Hrp::parse(hrp).unwrap_or_else(|_| unreachable!("constant HRPs are valid"));
    bech32::encode::<Bech32m>(hrp, data).unwrap_or_default()
}

fn decode(want_hrp: &str, what: &'static str, s: &str) -> Result<Vec<u8>, KeyError> {
    let (hrp, data) = bech32::decode(s.trim()).map_err(|e| KeyError::BadString {
        what,
        why: e.to_string(),
    })?;
    if hrp.as_str() != want_hrp {
        return Err(KeyError::WrongKind {
            want: what,
            found: hrp.to_string(),
        });
    }
    Ok(data)
}

/// A public identity: a BIP340 x-only key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicId(pub XOnlyPublicKey);

impl PublicId {
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.serialize()
    }

    pub fn from_bytes(b: &[u8; 32]) -> Result<PublicId, KeyError> {
        XOnlyPublicKey::from_slice(b)
            .map(PublicId)
            .map_err(|_| KeyError::BadKey)
    }

    /// The printable form, `bumpid1…`.
    pub fn to_string_id(&self) -> String {
        encode(HRP_ID, &self.to_bytes())
    }

    pub fn parse(s: &str) -> Result<PublicId, KeyError> {
        let data = decode(HRP_ID, "identity", s)?;
        let b: [u8; 32] = data.as_slice().try_into().map_err(|_| KeyError::BadKey)?;
        PublicId::from_bytes(&b)
    }
}

/// An identity's key pair. The secret is normalised so that its public key has even y: the
/// x-only key then serves both BIP340 signatures and ECDH.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public().to_string_id())
    }
}

impl Identity {
    pub fn generate() -> Identity {
        Identity::from_secret(SecretKey::new(&mut rand::rngs::OsRng))
    }

    pub fn from_secret(sk: SecretKey) -> Identity {
        let secp = Secp256k1::new();
        let kp = Keypair::from_secret_key(&secp, &sk);
        let (_, parity) = kp.x_only_public_key();
        let sk = if parity == secp256k1::Parity::Odd {
            sk.negate()
        } else {
            sk
        };
        Identity {
            keypair: Keypair::from_secret_key(&secp, &sk),
        }
    }

    pub fn from_secret_bytes(b: &[u8; 32]) -> Result<Identity, KeyError> {
        SecretKey::from_slice(b)
            .map(Identity::from_secret)
            .map_err(|_| KeyError::BadKey)
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.keypair.secret_key().secret_bytes()
    }

    pub fn public(&self) -> PublicId {
        PublicId(self.keypair.x_only_public_key().0)
    }

    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// `bumpsec1…`: the secret, for `bump id export`.
    pub fn to_secret_string(&self) -> String {
        encode(HRP_SECRET, &self.secret_bytes())
    }

    pub fn parse_secret(s: &str) -> Result<Identity, KeyError> {
        let data = decode(HRP_SECRET, "identity secret", s)?;
        let b: [u8; 32] = data.as_slice().try_into().map_err(|_| KeyError::BadKey)?;
        Identity::from_secret_bytes(&b)
    }
}

/// HKDF-SHA256 of `ikm` with no salt, expanded for `info` to 32 bytes.
pub fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, ikm);
    let mut out = [0u8; 32];
    // 32 bytes is always within HKDF-SHA256's 8160-byte limit.
    let _ = hk.expand(info, &mut out);
    out
}

/// A group's key, and the keys derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey(pub [u8; 32]);

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupKey({})", hex::encode(self.id()))
    }
}

impl GroupKey {
    pub fn generate() -> GroupKey {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
        GroupKey(k)
    }

    /// The key two people who share `passphrase` both derive (argon2id, fixed salt/params).
    pub fn from_passphrase(passphrase: &str) -> Result<GroupKey, KeyError> {
        Ok(GroupKey(GroupKey::argon2id(passphrase, ARGON2_SALT)?))
    }

    /// A key from a passphrase and a salt of its own (the keyring at rest: same argon2id
    /// parameters as passphrase groups, a random salt per write).
    pub fn argon2id(passphrase: &str, salt: &[u8]) -> Result<[u8; 32], KeyError> {
        let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(32))
            .map_err(|e| KeyError::Argon2(e.to_string()))?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut k = [0u8; 32];
        a.hash_password_into(passphrase.as_bytes(), salt, &mut k)
            .map_err(|e| KeyError::Argon2(e.to_string()))?;
        Ok(k)
    }

    /// The public, non-secret id of the group (16 bytes), bound into signatures.
    pub fn id(&self) -> [u8; 16] {
        let full = hkdf32(&self.0, b"bump/gid/1");
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    pub fn tag_key(&self) -> [u8; 32] {
        hkdf32(&self.0, b"bump/tag/1")
    }

    pub fn enc_key(&self) -> [u8; 32] {
        hkdf32(&self.0, b"bump/enc/1")
    }

    /// `bumpgrp1…`: version 1 ‖ the key.
    pub fn to_invite(&self) -> String {
        let mut data = vec![1u8];
        data.extend_from_slice(&self.0);
        encode(HRP_GROUP, &data)
    }

    pub fn parse_invite(s: &str) -> Result<GroupKey, KeyError> {
        let data = decode(HRP_GROUP, "group invite", s)?;
        match data.first() {
            Some(1) if data.len() == 33 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&data[1..]);
                Ok(GroupKey(k))
            }
            Some(1) => Err(KeyError::BadKey),
            Some(v) => Err(KeyError::Version {
                what: "group invite",
                version: *v,
            }),
            None => Err(KeyError::BadKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_strings_round_trip_and_catch_typos() {
        let id = Identity::generate();
        let s = id.public().to_string_id();
        assert!(s.starts_with("bumpid1"));
        assert_eq!(PublicId::parse(&s).unwrap(), id.public());
        // One character changed: the checksum catches it.
        let mut bad: Vec<char> = s.chars().collect();
        let i = bad.len() - 3;
        bad[i] = if bad[i] == 'q' { 'p' } else { 'q' };
        let bad: String = bad.into_iter().collect();
        assert!(matches!(
            PublicId::parse(&bad),
            Err(KeyError::BadString { .. })
        ));
        let sec = id.to_secret_string();
        assert_eq!(Identity::parse_secret(&sec).unwrap().public(), id.public());
        assert!(matches!(
            PublicId::parse(&sec),
            Err(KeyError::WrongKind { .. })
        ));
    }

    #[test]
    fn secrets_are_normalised_to_even_y() {
        for _ in 0..8 {
            let id = Identity::generate();
            let (_, parity) = id.keypair().x_only_public_key();
            assert_eq!(parity, secp256k1::Parity::Even);
        }
    }

    #[test]
    fn invites_round_trip_and_passphrases_meet() {
        let g = GroupKey::generate();
        assert_eq!(GroupKey::parse_invite(&g.to_invite()).unwrap(), g);
        let a = GroupKey::from_passphrase("correct horse battery staple").unwrap();
        let b = GroupKey::from_passphrase("correct horse battery staple").unwrap();
        let c = GroupKey::from_passphrase("correct horse battery stapler").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a.tag_key(), a.enc_key());
    }

    #[test]
    fn hkdf_matches_rfc_5869_case_3() {
        // RFC 5869 A.3: IKM = 22 × 0x0b, no salt, no info, L = 42; first 32 bytes.
        let okm = hkdf32(&[0x0b; 22], b"");
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        );
    }
}
