//! One macro for the fixed-size byte identifiers printed as hex (tags, packet ids, message
//! ids): `to_hex`, `from_hex_bytes` (exact length, either case), `Display` as bare hex and
//! `Debug` as `Name(hex)`.

/// Give a `struct Name(pub [u8; N])` its hex methods and formatting.
#[macro_export]
macro_rules! hex_id {
    ($name:ident, $len:expr) => {
        impl $name {
            /// Lower-case hex of the bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Exactly `2 * len` hex digits, upper or lower case.
            pub fn from_hex_bytes(s: &str) -> Option<$name> {
                let mut out = [0u8; $len];
                if s.len() != 2 * $len {
                    return None;
                }
                hex::decode_to_slice(s, &mut out).ok()?;
                Some($name(out))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }
    };
}
