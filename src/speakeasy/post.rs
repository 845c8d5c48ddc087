//! The items of a Speak Easy network as bytes (docs/speakeasy.md §3): what goes inside a
//! sealed envelope (protocol.md §8.2, content type [`CONTENT_TYPE`]) addressed to a
//! compartment's key. The author is the envelope's signer and the time its timestamp, both
//! inside the ciphertext. One encode ([`Item::encode`]) and one decode ([`Item::decode`]).
//!
//! ```text
//! item = version 1 (u8) ‖ kind (u8) ‖ network id (16) ‖ compartment id (16)
//!        ‖ epoch (u32 BE) ‖ item id (16) ‖ fields of the kind
//! kind 1, post: board (u8 length ‖ UTF-8, 1..=64) ‖ root id (16) ‖ parent id (16)
//!        ‖ title (u16 BE length ‖ UTF-8, ≤ 200) ‖ text (u32 BE length ‖ UTF-8, ≤ 65,536)
//!        root = parent = 16 zero bytes for the first post of a thread
//! kind 2, compartment (sealed to the parent's key; the place is the parent):
//!        id (16) ‖ epoch (u32 BE) ‖ name (u8 length ‖ name, 1..=64, [A-Za-z0-9_-])
//! kind 3, member (a member introduces itself in the compartment it is cleared at):
//!        display name (u8 length ‖ UTF-8, 1..=64)
//! kind 4, re-key (sealed to the parent's key of the compartment re-keyed):
//!        compartment id (16) ‖ new epoch (u32 BE) ‖ n (u8, ≤ 64) ‖ n × removed member (32, x-only key)
//! kind 6, attachment (a file in a thread, sealed like a post): board (u8 length ‖ UTF-8) ‖ root
//!        (16) ‖ parent (16) ‖ file name (u8 length ‖ UTF-8, 1..=128, no '/', '\\' or control)
//!        ‖ data (u32 BE length ‖ bytes, ≤ 262,144)
//! kind 5, private message (in a direct envelope to the recipient and the sender; compartment
//!        and epoch zero): recipient (32, x-only key) ‖ text (u32 BE length ‖ UTF-8, 1..=65,536)
//! ```

use super::tree::CompartmentId;

/// The envelope content type of Speak Easy items.
pub const CONTENT_TYPE: u8 = 0x53;
pub const VERSION: u8 = 1;
pub const KIND_POST: u8 = 1;
pub const KIND_COMPARTMENT: u8 = 2;
pub const KIND_MEMBER: u8 = 3;
pub const KIND_REKEY: u8 = 4;
pub const KIND_DIRECT: u8 = 5;
pub const KIND_ATTACHMENT: u8 = 6;
pub const MAX_FILE_NAME: usize = 128;
pub const MAX_FILE: usize = 256 * 1024;
pub const MAX_DISPLAY: usize = 64;
pub const MAX_REMOVED: usize = 64;
pub const MAX_BOARD: usize = 64;
pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 65_536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ItemError {
    #[error("item truncated")]
    Truncated,
    #[error("unknown item version {0}")]
    Version(u8),
    #[error("unknown item kind {0}")]
    Kind(u8),
    #[error("{0} is not UTF-8 or is too long")]
    Field(&'static str),
    #[error("bytes after the item")]
    Trailing,
}

/// A post's id, or a thread's (its first post's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub [u8; 16]);

impl ItemId {
    pub const NONE: ItemId = ItemId([0; 16]);

    pub fn random() -> ItemId {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        ItemId(b)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Where an item belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub network: [u8; 16],
    pub compartment: CompartmentId,
    pub epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub board: String,
    /// The thread's first post; [`ItemId::NONE`] for a first post.
    pub root: ItemId,
    /// The post replied to; [`ItemId::NONE`] for a first post.
    pub parent: ItemId,
    pub title: String,
    pub text: String,
}

/// A compartment created under the item's compartment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCompartment {
    pub id: CompartmentId,
    pub epoch: u32,
    pub name: String,
}

/// A compartment moved to a new epoch, and the members removed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub compartment: CompartmentId,
    pub epoch: u32,
    pub removed: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Post(Post),
    Compartment(NewCompartment),
    /// The author's display name, in the compartment it is cleared at.
    Member(String),
    Rekey(Rekey),
    /// A private message to one member (sealed to it and to the author).
    Direct {
        to: [u8; 32],
        text: String,
    },
    Attachment(Attachment),
}

/// A file attached to a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub board: String,
    pub root: ItemId,
    pub parent: ItemId,
    pub name: String,
    pub data: Vec<u8>,
}

/// Whether `n` is a file name we keep: 1..=128 bytes, no path separator, no control
/// character, not `.` or `..`.
pub fn valid_file_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_FILE_NAME
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub place: Place,
    pub id: ItemId,
    pub body: Body,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ItemError> {
        if self.b.len() < n {
            return Err(ItemError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ItemError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Board, root and parent: where a post or attachment sits.
    fn thread_place(&mut self) -> Result<(String, ItemId, ItemId), ItemError> {
        let [n] = self.array::<1>()?;
        let board = self.text(n as usize, MAX_BOARD, "board")?;
        if board.is_empty() {
            return Err(ItemError::Field("board"));
        }
        Ok((board, ItemId(self.array()?), ItemId(self.array()?)))
    }

    fn text(&mut self, len: usize, max: usize, what: &'static str) -> Result<String, ItemError> {
        if len > max {
            return Err(ItemError::Field(what));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| ItemError::Field(what))
    }
}

fn check(s: &str, min: usize, max: usize, what: &'static str) -> Result<(), ItemError> {
    if s.len() < min || s.len() > max {
        return Err(ItemError::Field(what));
    }
    Ok(())
}

impl Item {
    /// The bytes of the item; refused when a field is out of its bounds.
    pub fn encode(&self) -> Result<Vec<u8>, ItemError> {
        let mut v = vec![VERSION];
        v.push(match &self.body {
            Body::Post(_) => KIND_POST,
            Body::Compartment(_) => KIND_COMPARTMENT,
            Body::Member(_) => KIND_MEMBER,
            Body::Rekey(_) => KIND_REKEY,
            Body::Direct { .. } => KIND_DIRECT,
            Body::Attachment(_) => KIND_ATTACHMENT,
        });
        v.extend_from_slice(&self.place.network);
        v.extend_from_slice(&self.place.compartment.0);
        v.extend_from_slice(&self.place.epoch.to_be_bytes());
        v.extend_from_slice(&self.id.0);
        match &self.body {
            Body::Post(p) => {
                check(&p.board, 1, MAX_BOARD, "board")?;
                check(&p.title, 0, MAX_TITLE, "title")?;
                check(&p.text, 0, MAX_TEXT, "text")?;
                v.push(p.board.len() as u8);
                v.extend_from_slice(p.board.as_bytes());
                v.extend_from_slice(&p.root.0);
                v.extend_from_slice(&p.parent.0);
                v.extend_from_slice(&(p.title.len() as u16).to_be_bytes());
                v.extend_from_slice(p.title.as_bytes());
                v.extend_from_slice(&(p.text.len() as u32).to_be_bytes());
                v.extend_from_slice(p.text.as_bytes());
            }
            Body::Compartment(c) => {
                if !super::tree::valid_name(&c.name) {
                    return Err(ItemError::Field("compartment name"));
                }
                v.extend_from_slice(&c.id.0);
                v.extend_from_slice(&c.epoch.to_be_bytes());
                v.push(c.name.len() as u8);
                v.extend_from_slice(c.name.as_bytes());
            }
            Body::Member(name) => {
                check(name, 1, MAX_DISPLAY, "display name")?;
                v.push(name.len() as u8);
                v.extend_from_slice(name.as_bytes());
            }
            Body::Rekey(r) => {
                if r.removed.len() > MAX_REMOVED {
                    return Err(ItemError::Field("removed members"));
                }
                v.extend_from_slice(&r.compartment.0);
                v.extend_from_slice(&r.epoch.to_be_bytes());
                v.push(r.removed.len() as u8);
                for m in &r.removed {
                    v.extend_from_slice(m);
                }
            }
            Body::Attachment(a) => {
                check(&a.board, 1, MAX_BOARD, "board")?;
                if !valid_file_name(&a.name) {
                    return Err(ItemError::Field("file name"));
                }
                if a.data.len() > MAX_FILE {
                    return Err(ItemError::Field("file"));
                }
                v.push(a.board.len() as u8);
                v.extend_from_slice(a.board.as_bytes());
                v.extend_from_slice(&a.root.0);
                v.extend_from_slice(&a.parent.0);
                v.push(a.name.len() as u8);
                v.extend_from_slice(a.name.as_bytes());
                v.extend_from_slice(&(a.data.len() as u32).to_be_bytes());
                v.extend_from_slice(&a.data);
            }
            Body::Direct { to, text } => {
                check(text, 1, MAX_TEXT, "text")?;
                v.extend_from_slice(to);
                v.extend_from_slice(&(text.len() as u32).to_be_bytes());
                v.extend_from_slice(text.as_bytes());
            }
        }
        Ok(v)
    }

    pub fn decode(b: &[u8]) -> Result<Item, ItemError> {
        let mut r = Reader { b };
        let [version, kind] = r.array::<2>()?;
        if version != VERSION {
            return Err(ItemError::Version(version));
        }
        let place = Place {
            network: r.array()?,
            compartment: CompartmentId(r.array()?),
            epoch: u32::from_be_bytes(r.array()?),
        };
        let id = ItemId(r.array()?);
        let body = match kind {
            KIND_POST => {
                let (board, root, parent) = r.thread_place()?;
                let n = u16::from_be_bytes(r.array()?) as usize;
                let title = r.text(n, MAX_TITLE, "title")?;
                let n = u32::from_be_bytes(r.array()?) as usize;
                let text = r.text(n, MAX_TEXT, "text")?;
                Body::Post(Post {
                    board,
                    root,
                    parent,
                    title,
                    text,
                })
            }
            KIND_COMPARTMENT => {
                let id = CompartmentId(r.array()?);
                let epoch = u32::from_be_bytes(r.array()?);
                let [n] = r.array::<1>()?;
                let name = r.text(n as usize, super::tree::MAX_NAME, "compartment name")?;
                if !super::tree::valid_name(&name) {
                    return Err(ItemError::Field("compartment name"));
                }
                Body::Compartment(NewCompartment { id, epoch, name })
            }
            KIND_MEMBER => {
                let [n] = r.array::<1>()?;
                let name = r.text(n as usize, MAX_DISPLAY, "display name")?;
                if name.is_empty() {
                    return Err(ItemError::Field("display name"));
                }
                Body::Member(name)
            }
            KIND_REKEY => {
                let compartment = CompartmentId(r.array()?);
                let epoch = u32::from_be_bytes(r.array()?);
                let [n] = r.array::<1>()?;
                if n as usize > MAX_REMOVED {
                    return Err(ItemError::Field("removed members"));
                }
                let mut removed = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    removed.push(r.array()?);
                }
                Body::Rekey(Rekey {
                    compartment,
                    epoch,
                    removed,
                })
            }
            KIND_ATTACHMENT => {
                let (board, root, parent) = r.thread_place()?;
                let [n] = r.array::<1>()?;
                let name = r.text(n as usize, MAX_FILE_NAME, "file name")?;
                if !valid_file_name(&name) {
                    return Err(ItemError::Field("file name"));
                }
                let n = u32::from_be_bytes(r.array()?) as usize;
                if n > MAX_FILE {
                    return Err(ItemError::Field("file"));
                }
                let data = r.take(n)?.to_vec();
                Body::Attachment(Attachment {
                    board,
                    root,
                    parent,
                    name,
                    data,
                })
            }
            KIND_DIRECT => {
                let to = r.array()?;
                let n = u32::from_be_bytes(r.array()?) as usize;
                let text = r.text(n, MAX_TEXT, "text")?;
                if text.is_empty() {
                    return Err(ItemError::Field("text"));
                }
                Body::Direct { to, text }
            }
            k => return Err(ItemError::Kind(k)),
        };
        if !r.b.is_empty() {
            return Err(ItemError::Trailing);
        }
        Ok(Item { place, id, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(board: String, title: String, text: String, reply: bool) -> Item {
        Item {
            place: Place {
                network: [1; 16],
                compartment: CompartmentId([2; 16]),
                epoch: 3,
            },
            id: ItemId([4; 16]),
            body: Body::Post(Post {
                board,
                root: if reply { ItemId([5; 16]) } else { ItemId::NONE },
                parent: if reply { ItemId([6; 16]) } else { ItemId::NONE },
                title,
                text,
            }),
        }
    }

    proptest! {
        #[test]
        fn a_post_round_trips(board in "[a-z]{1,64}", title in "\\PC{0,50}", text in "\\PC{0,300}", reply: bool) {
            let it = item(board, title, text, reply);
            let b = it.encode().unwrap();
            prop_assert_eq!(Item::decode(&b).unwrap(), it);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Item::decode(&b);
        }
    }

    #[test]
    fn membership_items_round_trip() {
        let place = Place {
            network: [1; 16],
            compartment: CompartmentId([2; 16]),
            epoch: 0,
        };
        for body in [
            Body::Compartment(NewCompartment {
                id: CompartmentId([3; 16]),
                epoch: 2,
                name: "cell-a".into(),
            }),
            Body::Member("Bob <b>".into()),
            Body::Rekey(Rekey {
                compartment: CompartmentId([3; 16]),
                epoch: 3,
                removed: vec![[9; 32], [8; 32]],
            }),
            Body::Direct {
                to: [7; 32],
                text: "meet at <noon>".into(),
            },
            Body::Attachment(Attachment {
                board: "general".into(),
                root: ItemId([5; 16]),
                parent: ItemId([5; 16]),
                name: "plan <v2>.pdf".into(),
                data: vec![0, 1, 2, 255],
            }),
        ] {
            let it = Item {
                place,
                id: ItemId([4; 16]),
                body,
            };
            assert_eq!(Item::decode(&it.encode().unwrap()).unwrap(), it);
        }
        let bad = Item {
            place,
            id: ItemId([4; 16]),
            body: Body::Compartment(NewCompartment {
                id: CompartmentId([3; 16]),
                epoch: 0,
                name: "a b".into(),
            }),
        };
        assert_eq!(bad.encode(), Err(ItemError::Field("compartment name")));
        for name in ["", "..", "a/b", "a\\b", "a\nb"] {
            let it = Item {
                place,
                id: ItemId([4; 16]),
                body: Body::Attachment(Attachment {
                    board: "b".into(),
                    root: ItemId::NONE,
                    parent: ItemId::NONE,
                    name: name.into(),
                    data: vec![],
                }),
            };
            assert_eq!(it.encode(), Err(ItemError::Field("file name")), "{name:?}");
        }
    }

    #[test]
    fn hostile_items_are_refused_with_a_reason() {
        let good = item(
            "general".into(),
            "t".into(),
            "<script>alert(1)</script>".into(),
            false,
        );
        let b = good.encode().unwrap();
        assert_eq!(
            Item::decode(&b).unwrap(),
            good,
            "markup is data, kept as is"
        );
        assert_eq!(Item::decode(&b[..b.len() - 1]), Err(ItemError::Truncated));
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(Item::decode(&extra), Err(ItemError::Trailing));
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(Item::decode(&v2), Err(ItemError::Version(2)));
        let mut k = b.clone();
        k[1] = 9;
        assert_eq!(Item::decode(&k), Err(ItemError::Kind(9)));
        // Not UTF-8 in the board name.
        let mut bad = b.clone();
        bad[2 + 16 + 16 + 4 + 16 + 1] = 0xff;
        assert_eq!(Item::decode(&bad), Err(ItemError::Field("board")));
        assert_eq!(
            item(String::new(), String::new(), String::new(), false).encode(),
            Err(ItemError::Field("board"))
        );
        assert_eq!(
            item("b".into(), "x".repeat(MAX_TITLE + 1), String::new(), false).encode(),
            Err(ItemError::Field("title"))
        );
    }
}
