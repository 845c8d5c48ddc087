//! Sealed messages (docs/protocol.md §8): messages encrypted and optionally signed inside,
//! addressed to a group or to identities, under tags that rotate so an observer cannot link
//! them. A sealed message is an ordinary BuMP message whose bytes are an [`envelope`]; plain
//! tags and the gpg pipeline are unchanged.
//!
//! - [`keys`]: identities, group keys, printable strings, HKDF;
//! - [`envelope`]: the byte format, seal and open;
//! - [`parts`]: the packets of a sealed message, their frames inside the ciphertext;
//! - [`tags`]: day-slot group tags and inbox buckets;
//! - [`keyring`]: the identities and groups kept in the datadir;
//! - [`poly1305`]: the one-shot MAC of the key-slot checks.

pub mod book;
pub mod envelope;
pub mod keyring;
pub mod keys;
pub mod parts;
pub mod poly1305;
pub mod tags;
