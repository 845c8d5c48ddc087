//! Tags: the 20-byte labels that group packets, and the mapping from human tags to tags.
//!
//! A tag is written as 40 hex digits (either case is accepted, lower case is printed). Any other
//! string is a *human tag* such as `#mynakedlife4all`; its tag is HASH160 of its UTF-8 bytes,
//! i.e. RIPEMD160(SHA256(bytes)), the same hash Bitcoin uses for addresses.

use bitcoin::hashes::{hash160, Hash};
use std::str::FromStr;

/// Length of a tag in bytes.
pub const TAG_LEN: usize = 20;

/// A 20-byte packet tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub [u8; TAG_LEN]);

/// Why a string is not a usable tag argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag must be 40 hex digits, got {0:?}")]
    NotHex(String),
    #[error("empty tag: give 40 hex digits or a human tag such as '#news'")]
    Empty,
}

impl Tag {
    /// Parse exactly 40 hex digits (upper or lower case).
    pub fn from_hex(s: &str) -> Result<Tag, TagError> {
        Tag::from_hex_bytes(s).ok_or_else(|| TagError::NotHex(s.to_string()))
    }

    /// The tag of a human tag: HASH160 of its UTF-8 bytes.
    pub fn from_human(s: &str) -> Tag {
        Tag(hash160::Hash::hash(s.as_bytes()).to_byte_array())
    }

    /// Interpret a command-line tag argument: 40 hex digits are a tag as written, anything else
    /// is a human tag and is hashed.
    pub fn from_arg(s: &str) -> Result<Tag, TagError> {
        if s.is_empty() {
            return Err(TagError::Empty);
        }
        match Tag::from_hex(s) {
            Ok(t) => Ok(t),
            Err(_) => Ok(Tag::from_human(s)),
        }
    }

    pub fn as_bytes(&self) -> &[u8; TAG_LEN] {
        &self.0
    }
}

crate::hex_id!(Tag, TAG_LEN);

impl FromStr for Tag {
    type Err = TagError;
    /// Strict: only 40 hex digits. Use [`Tag::from_arg`] for user input that may be a human tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_tag_is_hash160() {
        // HASH160("") is a well-known constant (RIPEMD160 of SHA256 of the empty string).
        assert_eq!(
            Tag::from_human("").to_hex(),
            "b472a266d0bd89c13706a4132ccfb16f7c3b9fcb"
        );
        let t = Tag::from_arg("#mynakedlife4all").unwrap();
        assert_eq!(t, Tag::from_human("#mynakedlife4all"));
        assert_ne!(t, Tag::from_human("#mynakedlife4All"));
    }

    #[test]
    fn hex_tags_accept_both_cases() {
        let lower = "00112233445566778899aabbccddeeff00112233";
        let a = Tag::from_arg(lower).unwrap();
        let b = Tag::from_arg(&lower.to_uppercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), lower);
        // 39 or 41 digits are human tags, not hex tags.
        assert_eq!(
            Tag::from_arg(&lower[..39]).unwrap(),
            Tag::from_human(&lower[..39])
        );
        assert!(Tag::from_hex(&lower[..39]).is_err());
        assert!(Tag::from_hex("zz112233445566778899aabbccddeeff00112233").is_err());
        assert_eq!(Tag::from_arg(""), Err(TagError::Empty));
    }
}
