//! Sealing a Speak Easy item for its compartment and opening what arrives (docs/speakeasy.md
//! §3): an item is the body of a signed group envelope under the compartment's current key,
//! carried in sealed parts (protocol.md §8.4) under the key's day tag.

use super::post::{Item, ItemError, CONTENT_TYPE};
use super::tree::{Clearance, Tree, TreeError};
use crate::sealed::envelope::{self, OpenError, Opener, Plain, Seal, SealError};
use crate::sealed::keys::{GroupKey, Identity, PublicId};
use crate::sealed::parts::SealedSend;
use crate::sealed::tags;

#[derive(Debug, thiserror::Error)]
pub enum SeError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Item(#[from] ItemError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the item names epoch {item} of its compartment, whose key here is of epoch {key}")]
    Epoch { item: u32, key: u32 },
    #[error("an unsigned envelope: every Speak Easy item is signed by its author")]
    Unsigned,
    #[error("not a Speak Easy item (content type {0})")]
    ContentType(u8),
}

/// Seal `item` (its place names the compartment) with the author's pseudonym, for sending at
/// `now`: the envelope and its tag.
pub fn seal_item(
    tree: &Tree,
    clearance: &Clearance,
    item: &Item,
    author: &Identity,
    now: u32,
) -> Result<SealedSend, SeError> {
    let c = &item.place.compartment;
    let key = clearance.key_for(tree, c)?;
    let epoch = tree.get(c)?.epoch;
    if item.place.epoch != epoch {
        return Err(SeError::Epoch {
            item: item.place.epoch,
            key: epoch,
        });
    }
    let plain = Plain {
        timestamp: now as u64,
        content_type: CONTENT_TYPE,
        body: item.encode()?,
    };
    let env = envelope::seal(&Seal::Group(&key), &plain, Some(author))?;
    Ok(SealedSend::group(
        &key,
        tags::group_tag(&key, tags::slot(now)),
        env,
    ))
}

/// Seal a private message item (kind 5) to its recipient and to the author (so the author's
/// other sessions see it too): the envelope and its content key (for the sealed parts).
pub fn seal_direct(
    item: &Item,
    to: &PublicId,
    author: &Identity,
    now: u32,
) -> Result<(Vec<u8>, [u8; 32]), SeError> {
    let plain = Plain {
        timestamp: now as u64,
        content_type: CONTENT_TYPE,
        body: item.encode()?,
    };
    let me = author.public();
    let to: Vec<PublicId> = if *to == me { vec![me] } else { vec![*to, me] };
    let r = envelope::SealRandom::fresh();
    let env = envelope::seal_with(&Seal::Direct(&to), &plain, Some(author), &r)?;
    Ok((env, r.content_key))
}

/// An item opened: who wrote it (the signer) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub item: Item,
    pub author: PublicId,
    pub time: u64,
}

/// Open an envelope that arrived under `key`'s tags.
pub fn open_item(key: &GroupKey, env: &[u8]) -> Result<Opened, SeError> {
    opened_item(envelope::open(env, &Opener::Group(key))?)
}

/// An opened envelope as a signed item.
pub fn opened_item(o: envelope::Opened) -> Result<Opened, SeError> {
    if o.plain.content_type != CONTENT_TYPE {
        return Err(SeError::ContentType(o.plain.content_type));
    }
    let author = o.signer.ok_or(SeError::Unsigned)?;
    Ok(Opened {
        item: Item::decode(&o.plain.body)?,
        author,
        time: o.plain.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::split_framed;
    use crate::packet::Packet;
    use crate::sealed::parts::PartReader;
    use crate::speakeasy::post::{Body, ItemId, Place, Post};
    use crate::speakeasy::tree::CompartmentId;

    fn post(tree: &Tree, c: CompartmentId, text: &str) -> Item {
        Item {
            place: Place {
                network: [1; 16],
                compartment: c,
                epoch: tree.get(&c).unwrap().epoch,
            },
            id: ItemId::random(),
            body: Body::Post(Post {
                board: "general".into(),
                root: ItemId::NONE,
                parent: ItemId::NONE,
                title: String::new(),
                text: text.into(),
            }),
        }
    }

    fn packets(s: &SealedSend) -> Vec<Packet> {
        split_framed(
            &s.carried,
            &s.framer,
            s.tag,
            1_000_000,
            1 << 20,
            &mut rand::rngs::OsRng,
        )
        .unwrap()
        .1
    }

    /// What a member cleared at `me` reads of `sent`: the texts that open with the keys it
    /// can derive for every compartment it is cleared for.
    fn reads(tree: &Tree, me: &Clearance, sent: &[Vec<Packet>], now: u32) -> Vec<String> {
        let mut out = Vec::new();
        for c in tree.subtree(&me.at) {
            let Ok(key) = me.key_for(tree, &c) else {
                continue;
            };
            let tag = tags::group_tag(&key, tags::slot(now));
            let mut r = PartReader::group(&key);
            for (i, p) in sent.iter().flatten().filter(|p| p.tag == tag).enumerate() {
                for env in r.push(i as u64, p) {
                    if let Ok(o) = open_item(&key, &env) {
                        let Body::Post(p) = o.item.body else { continue };
                        out.push(p.text);
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn clearance_decides_who_reads_and_a_removed_member_reads_nothing_after() {
        let now = 1_800_000_000;
        let ids = [1u8, 2, 3].map(|i| CompartmentId([i; 16]));
        let [all, ops, cell_a] = ids;
        let mut tree = Tree::new(all, "all").unwrap();
        tree.add(all, ops, "ops").unwrap();
        tree.add(ops, cell_a, "cell-a").unwrap();
        let admin = Clearance {
            at: all,
            epoch: 0,
            key: [9; 32],
        };
        let bob = admin.narrow(&tree, &ops).unwrap();
        let carol = admin.narrow(&tree, &cell_a).unwrap();
        let (bob_id, carol_id) = (Identity::generate(), Identity::generate());
        let mut sent = vec![
            packets(
                &seal_item(&tree, &bob, &post(&tree, ops, "bob in ops"), &bob_id, now).unwrap(),
            ),
            packets(
                &seal_item(
                    &tree,
                    &carol,
                    &post(&tree, cell_a, "carol in cell-a"),
                    &carol_id,
                    now,
                )
                .unwrap(),
            ),
        ];
        // Carol cannot even seal for ops.
        assert!(matches!(
            seal_item(&tree, &carol, &post(&tree, ops, "x"), &carol_id, now),
            Err(SeError::Tree(TreeError::NotCleared(_)))
        ));
        assert_eq!(reads(&tree, &carol, &sent, now), ["carol in cell-a"]);
        assert_eq!(
            reads(&tree, &bob, &sent, now),
            ["bob in ops", "carol in cell-a"]
        );
        // The admin removes Carol: cell-a moves on; Bob (cleared above) posts in cell-a.
        let carol_tree = tree.clone();
        tree.next_epoch(&cell_a).unwrap();
        let bob_new = admin.narrow(&tree, &ops).unwrap();
        sent.push(packets(
            &seal_item(
                &tree,
                &bob_new,
                &post(&tree, cell_a, "after carol"),
                &bob_id,
                now,
            )
            .unwrap(),
        ));
        assert!(reads(&tree, &bob_new, &sent, now).contains(&"after carol".to_string()));
        // Carol, with her old key and the tree as she knew it, never opens the new post; with
        // the tree's new epoch her key is refused outright.
        assert_eq!(reads(&carol_tree, &carol, &sent, now), ["carol in cell-a"]);
        assert!(matches!(
            carol.key_for(&tree, &cell_a),
            Err(TreeError::Stale { .. })
        ));
        // The plaintext is in no packet.
        for p in sent.iter().flatten() {
            assert!(!p.body.windows(11).any(|w| w == b"after carol"));
        }
    }

    #[test]
    fn an_item_for_an_old_epoch_or_unsigned_is_refused() {
        let now = 1_800_000_000;
        let root = CompartmentId([1; 16]);
        let mut tree = Tree::new(root, "all").unwrap();
        let admin = Clearance {
            at: root,
            epoch: 0,
            key: [9; 32],
        };
        let old = post(&tree, root, "x");
        let me = Identity::generate();
        let s = seal_item(&tree, &admin, &old, &me, now).unwrap();
        let key = admin.key_for(&tree, &root).unwrap();
        assert_eq!(open_item(&key, &s.carried).unwrap().author, me.public());
        // An unsigned envelope with an item inside is not shown as anyone's.
        let plain = Plain {
            timestamp: 1,
            content_type: CONTENT_TYPE,
            body: old.encode().unwrap(),
        };
        let env = envelope::seal(&Seal::Group(&key), &plain, None).unwrap();
        assert!(matches!(open_item(&key, &env), Err(SeError::Unsigned)));
        // The root's epoch moves on: the item still names epoch 0.
        tree.next_epoch(&root).unwrap();
        let fresh = Clearance {
            at: root,
            epoch: 1,
            key: [10; 32],
        };
        assert!(matches!(
            seal_item(&tree, &fresh, &old, &me, now),
            Err(SeError::Epoch { item: 0, key: 1 })
        ));
    }
}
