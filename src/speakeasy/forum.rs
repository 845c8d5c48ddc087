//! One member's view of a Speak Easy network (docs/speakeasy.md §5): its keys (pseudonym,
//! tree, clearance — the part that is saved), and what the member has opened from the bus —
//! posts threaded by root and parent, members, compartments, re-keys. Items arrive in any
//! order and any number of times: a post is kept once (first seen wins), a reply before its
//! parent waits under a placeholder, a compartment before its parent is kept until the
//! parent is known. No I/O here: the bus feeds [`Forum::ingest`], the pages read it.

use super::grant::Grant;
use super::post::{Body, Item, ItemId};
use super::seal::Opened;
use super::tree::{Clearance, CompartmentId, Tree, TreeError};
use crate::sealed::keys::{GroupKey, Identity, PublicId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Items of compartments not (yet) in the tree kept at most, per network.
pub const MAX_ORPHANS: usize = 4096;
/// Posts kept at most per network (those beyond are not taken in).
pub const MAX_POSTS: usize = 1_000_000;
/// Attachment bytes kept in memory at most per network.
pub const MAX_FILE_BYTES: usize = 256 << 20;

/// The saved part of a network: who the member is and what it holds.
#[derive(Clone)]
pub struct Keys {
    pub network: [u8; 16],
    pub name: String,
    /// The member's pseudonym in this network (one per network, so networks do not link).
    pub me: Identity,
    pub my_name: String,
    pub tree: Tree,
    pub clearance: Clearance,
    /// Keys of earlier epochs, to keep reading what was posted under them.
    pub past: Vec<(CompartmentId, u32, [u8; 32])>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("network", &hex::encode(self.network))
            .field("name", &self.name)
            .field("clearance", &self.clearance)
            .finish()
    }
}

impl Keys {
    /// Every key this member reads with: each compartment at or below its clearance at its
    /// current epoch, then the past keys.
    pub fn read_keys(&self) -> Vec<(CompartmentId, u32, GroupKey)> {
        let mut out = vec![];
        for c in self.tree.subtree(&self.clearance.at) {
            if let (Ok(k), Ok(n)) = (self.clearance.key_for(&self.tree, &c), self.tree.get(&c)) {
                out.push((c, n.epoch, k));
            }
        }
        for (c, e, k) in &self.past {
            out.push((*c, *e, GroupKey(*k)));
        }
        out
    }

    /// Whether this member may write in `c` (at or below its clearance).
    pub fn cleared_for(&self, c: &CompartmentId) -> bool {
        self.tree.within(c, &self.clearance.at)
    }

    /// Apply a grant from the bus or an invite: a new clearance (re-key) and what it says of
    /// the tree. The keys replaced are kept as past keys. Returns whether anything changed.
    pub fn apply_grant(&mut self, g: &Grant) -> bool {
        if g.network != self.network {
            return false;
        }
        let same = g.clearance == self.clearance;
        let newer = g.clearance.at != self.clearance.at || g.clearance.epoch > self.clearance.epoch;
        let mut changed = self.tree.merge(&g.tree);
        if !same && newer {
            for (c, e, k) in self.read_keys() {
                if !self.past.iter().any(|(pc, pe, _)| *pc == c && *pe == e) {
                    self.past.push((c, e, k.0));
                }
            }
            self.clearance = g.clearance.clone();
            changed = true;
        }
        changed
    }
}

/// A post as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostView {
    pub id: ItemId,
    pub compartment: CompartmentId,
    pub epoch: u32,
    pub board: String,
    pub root: ItemId,
    pub parent: ItemId,
    pub title: String,
    pub text: String,
    pub author: PublicId,
    /// The author's (sealed) timestamp.
    pub time: u64,
    /// Arrival order here.
    pub arrival: u64,
    /// An attachment: its file name and size (the bytes are in [`Forum::file`]).
    pub file: Option<(String, usize)>,
}

impl PostView {
    /// The thread this post belongs to.
    pub fn thread(&self) -> ItemId {
        if self.root == ItemId::NONE {
            self.id
        } else {
            self.root
        }
    }
}

/// A member as known from its own introduction (or from the grant that invited it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub at: CompartmentId,
    pub removed: bool,
}

/// A private message as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmView {
    pub id: ItemId,
    pub from: PublicId,
    pub to: PublicId,
    pub text: String,
    pub time: u64,
}

/// One line of a thread as shown: a post, or a placeholder for a parent not yet arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Post { post: &'a PostView, depth: usize },
    Missing { id: ItemId, depth: usize },
}

/// A thread in a board listing.
#[derive(Debug, Clone)]
pub struct ThreadRow<'a> {
    pub root: ItemId,
    /// The first post, when it has arrived.
    pub first: Option<&'a PostView>,
    pub posts: usize,
    pub unread: usize,
    pub last: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    New,
    Duplicate,
    /// Of another network, or about a compartment this member cannot place.
    Ignored,
}

#[derive(Default)]
pub struct Forum {
    posts: HashMap<ItemId, PostView>,
    by_thread: HashMap<ItemId, Vec<ItemId>>,
    pub members: BTreeMap<PublicId, MemberView>,
    unread: HashSet<ItemId>,
    orphans: Vec<Opened>,
    arrivals: u64,
    /// Private messages by the other member of the conversation, oldest first.
    pub dms: BTreeMap<PublicId, Vec<DmView>>,
    dm_ids: HashSet<ItemId>,
    pub dm_unread: HashSet<ItemId>,
    files: HashMap<ItemId, Vec<u8>>,
    file_bytes: usize,
    /// Bumped on every change (the pages' live updates wait for it).
    pub version: u64,
}

impl Forum {
    pub fn post(&self, id: &ItemId) -> Option<&PostView> {
        self.posts.get(id)
    }

    /// An attachment's bytes.
    pub fn file(&self, id: &ItemId) -> Option<&[u8]> {
        self.files.get(id).map(|v| v.as_slice())
    }

    pub fn post_count(&self) -> usize {
        self.posts.len()
    }

    /// Take in one opened item. Items about compartments not yet known wait (bounded) and are
    /// retried whenever the tree grows.
    pub fn ingest(&mut self, keys: &mut Keys, o: Opened) -> Ingested {
        let r = self.ingest_one(keys, o);
        if r == Ingested::New {
            self.version += 1;
            // The tree may have grown: retry what waited for it.
            let waiting = std::mem::take(&mut self.orphans);
            for o in waiting {
                self.ingest_one(keys, o);
            }
        }
        r
    }

    /// Take in an item that arrived in one of our inboxes: a private message to or from us.
    pub fn ingest_direct(&mut self, keys: &Keys, o: Opened) -> Ingested {
        let Body::Direct { to, text } = &o.item.body else {
            return Ingested::Ignored;
        };
        if o.item.place.network != keys.network {
            return Ingested::Ignored;
        }
        let Ok(to) = PublicId::from_bytes(to) else {
            return Ingested::Ignored;
        };
        let me = keys.me.public();
        let other = if o.author == me {
            to
        } else if to == me {
            o.author
        } else {
            return Ingested::Ignored;
        };
        if !self.dm_ids.insert(o.item.id) {
            return Ingested::Duplicate;
        }
        if o.author != me {
            self.dm_unread.insert(o.item.id);
        }
        let v = self.dms.entry(other).or_default();
        v.push(DmView {
            id: o.item.id,
            from: o.author,
            to,
            text: text.clone(),
            time: o.time,
        });
        // Stable: messages of one second stay in arrival order.
        v.sort_by_key(|m| m.time);
        self.version += 1;
        Ingested::New
    }

    /// Mark a conversation read.
    pub fn mark_dms_read(&mut self, other: &PublicId) {
        for m in self.dms.get(other).into_iter().flatten() {
            self.dm_unread.remove(&m.id);
        }
    }

    fn ingest_one(&mut self, keys: &mut Keys, o: Opened) -> Ingested {
        if o.item.place.network != keys.network {
            return Ingested::Ignored;
        }
        let place = o.item.place;
        if keys.tree.get(&place.compartment).is_err() {
            if self.orphans.len() < MAX_ORPHANS {
                self.orphans.push(o);
            }
            return Ingested::Ignored;
        }
        match &o.item.body {
            // Private messages come through the inbox only (`ingest_direct`).
            Body::Direct { .. } => Ingested::Ignored,
            Body::Post(_) | Body::Attachment(_) => {
                if self.posts.contains_key(&o.item.id) || self.posts.len() >= MAX_POSTS {
                    return Ingested::Duplicate;
                }
                let (board, root, parent, title, text, file) = match &o.item.body {
                    Body::Post(p) => (
                        &p.board,
                        p.root,
                        p.parent,
                        p.title.clone(),
                        p.text.clone(),
                        None,
                    ),
                    Body::Attachment(a) => {
                        if self.file_bytes + a.data.len() > MAX_FILE_BYTES {
                            return Ingested::Ignored;
                        }
                        self.file_bytes += a.data.len();
                        self.files.insert(o.item.id, a.data.clone());
                        (
                            &a.board,
                            a.root,
                            a.parent,
                            String::new(),
                            String::new(),
                            Some((a.name.clone(), a.data.len())),
                        )
                    }
                    _ => return Ingested::Ignored,
                };
                self.arrivals += 1;
                let v = PostView {
                    id: o.item.id,
                    compartment: place.compartment,
                    epoch: place.epoch,
                    board: board.clone(),
                    root,
                    parent,
                    title,
                    text,
                    author: o.author,
                    time: o.time,
                    arrival: self.arrivals,
                    file,
                };
                if o.author != keys.me.public() {
                    self.unread.insert(v.id);
                }
                self.by_thread.entry(v.thread()).or_default().push(v.id);
                self.posts.insert(v.id, v);
                Ingested::New
            }
            Body::Compartment(c) => match keys.tree.add(place.compartment, c.id, &c.name) {
                Ok(_) => {
                    let _ = keys.tree.set_epoch(&c.id, c.epoch);
                    Ingested::New
                }
                Err(TreeError::Duplicate(_)) => Ingested::Duplicate,
                Err(_) => Ingested::Ignored,
            },
            Body::Member(name) => {
                // Members introduce themselves where they are cleared and again in each
                // compartment below where they post (so readers there know their name): the
                // highest compartment seen is where they are cleared, as far as we know.
                let mut m = MemberView {
                    name: name.clone(),
                    at: place.compartment,
                    removed: false,
                };
                match self.members.get(&o.author) {
                    Some(have) if have.removed || *have == m => Ingested::Duplicate,
                    Some(have) => {
                        if keys.tree.within(&place.compartment, &have.at) {
                            m.at = have.at;
                        }
                        if *have == m {
                            return Ingested::Duplicate;
                        }
                        self.members.insert(o.author, m);
                        Ingested::New
                    }
                    None => {
                        self.members.insert(o.author, m);
                        Ingested::New
                    }
                }
            }
            Body::Rekey(r) => {
                // Sealed under the parent's key: the re-keyed compartment is a child of the
                // item's compartment.
                let is_child = keys
                    .tree
                    .get(&r.compartment)
                    .is_ok_and(|c| c.parent == Some(place.compartment));
                if !is_child {
                    return Ingested::Ignored;
                }
                let before = keys.tree.get(&r.compartment).map(|c| c.epoch).unwrap_or(0);
                if r.epoch > before {
                    for (c, e, k) in keys.read_keys() {
                        if keys.tree.within(&c, &r.compartment)
                            && !keys.past.iter().any(|(pc, pe, _)| *pc == c && *pe == e)
                        {
                            keys.past.push((c, e, k.0));
                        }
                    }
                    let _ = keys.tree.set_epoch(&r.compartment, r.epoch);
                }
                let mut changed = r.epoch > before;
                for m in &r.removed {
                    if let Ok(id) = PublicId::from_bytes(m) {
                        if let Some(v) = self.members.get_mut(&id) {
                            changed |= !v.removed;
                            v.removed = true;
                        } else {
                            self.members.insert(
                                id,
                                MemberView {
                                    name: String::new(),
                                    at: r.compartment,
                                    removed: true,
                                },
                            );
                            changed = true;
                        }
                    }
                }
                if changed {
                    Ingested::New
                } else {
                    Ingested::Duplicate
                }
            }
        }
    }

    /// A member's display name, or a short form of its key.
    pub fn name_of(&self, id: &PublicId) -> String {
        match self.members.get(id) {
            Some(m) if !m.name.is_empty() => m.name.clone(),
            _ => short_id(id),
        }
    }

    /// The boards of a compartment, by name, with their unread counts.
    pub fn boards(&self, c: &CompartmentId) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for p in self.posts.values().filter(|p| p.compartment == *c) {
            *out.entry(p.board.clone()).or_default() += self.unread.contains(&p.id) as usize;
        }
        out
    }

    pub fn unread_in(&self, c: &CompartmentId) -> usize {
        self.unread
            .iter()
            .filter(|id| self.posts.get(id).is_some_and(|p| p.compartment == *c))
            .count()
    }

    /// The threads of a board, most recently active first.
    pub fn threads(&self, c: &CompartmentId, board: &str) -> Vec<ThreadRow<'_>> {
        let mut rows: Vec<ThreadRow> = self
            .by_thread
            .iter()
            .filter_map(|(root, ids)| {
                let posts: Vec<&PostView> = ids.iter().filter_map(|i| self.posts.get(i)).collect();
                let any = posts.first()?;
                if any.compartment != *c || any.board != board {
                    return None;
                }
                Some(ThreadRow {
                    root: *root,
                    first: self.posts.get(root),
                    posts: posts.len(),
                    unread: posts.iter().filter(|p| self.unread.contains(&p.id)).count(),
                    last: posts.iter().map(|p| p.time).max().unwrap_or(0),
                })
            })
            .collect();
        rows.sort_by(|a, b| b.last.cmp(&a.last).then(a.root.cmp(&b.root)));
        rows
    }

    /// A thread in reading order: each post followed by its replies (oldest first), a
    /// placeholder where a parent has not arrived.
    pub fn thread(&self, root: &ItemId) -> Vec<Line<'_>> {
        let ids = self.by_thread.get(root).cloned().unwrap_or_default();
        let mut children: BTreeMap<ItemId, Vec<&PostView>> = BTreeMap::new();
        let mut missing: Vec<ItemId> = vec![];
        for p in ids.iter().filter_map(|i| self.posts.get(i)) {
            if p.id == *root {
                continue;
            }
            // A reply's parent must be in the same thread; otherwise it hangs off the root.
            let parent = if p.parent == ItemId::NONE {
                *root
            } else {
                p.parent
            };
            if parent != *root
                && self.posts.get(&parent).is_none_or(|x| x.thread() != *root)
                && !missing.contains(&parent)
            {
                missing.push(parent);
            }
            children.entry(parent).or_default().push(p);
        }
        for v in children.values_mut() {
            v.sort_by(|a, b| a.time.cmp(&b.time).then(a.arrival.cmp(&b.arrival)));
        }
        let mut out = vec![];
        match self.posts.get(root) {
            Some(p) => out.push(Line::Post { post: p, depth: 0 }),
            None => out.push(Line::Missing {
                id: *root,
                depth: 0,
            }),
        }
        let mut seen = HashSet::new();
        self.walk(root, 1, &children, &mut out, &mut seen);
        for m in missing {
            if m == *root || seen.contains(&m) {
                continue;
            }
            out.push(Line::Missing { id: m, depth: 1 });
            self.walk(&m, 2, &children, &mut out, &mut seen);
        }
        out
    }

    fn walk<'a>(
        &'a self,
        at: &ItemId,
        depth: usize,
        children: &BTreeMap<ItemId, Vec<&'a PostView>>,
        out: &mut Vec<Line<'a>>,
        seen: &mut HashSet<ItemId>,
    ) {
        if !seen.insert(*at) || depth > 64 {
            return;
        }
        for p in children.get(at).into_iter().flatten() {
            out.push(Line::Post { post: p, depth });
            self.walk(&p.id, depth + 1, children, out, seen);
        }
    }

    /// Mark a thread read.
    pub fn mark_read(&mut self, root: &ItemId) {
        for id in self.by_thread.get(root).into_iter().flatten() {
            self.unread.remove(id);
        }
    }

    /// Posts whose title or text contains `q` (case-insensitive), newest first.
    pub fn search(&self, q: &str, limit: usize) -> Vec<&PostView> {
        let q = q.to_lowercase();
        let mut hits: Vec<&PostView> = self
            .posts
            .values()
            .filter(|p| p.text.to_lowercase().contains(&q) || p.title.to_lowercase().contains(&q))
            .collect();
        hits.sort_by_key(|p| std::cmp::Reverse(p.time));
        hits.truncate(limit);
        hits
    }
}

/// The first 8 hex digits of a key, as shown where no name is known.
pub fn short_id(id: &PublicId) -> String {
    hex::encode(&id.to_bytes()[..4])
}

/// A new item of this member's in compartment `c` (at its current epoch).
pub fn item(keys: &Keys, c: CompartmentId, body: Body) -> Result<Item, TreeError> {
    Ok(Item {
        place: super::post::Place {
            network: keys.network,
            compartment: c,
            epoch: keys.tree.get(&c)?.epoch,
        },
        id: ItemId::random(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speakeasy::post::{Place, Post, Rekey};

    fn keys() -> (Keys, [CompartmentId; 3]) {
        let ids = [
            CompartmentId([1; 16]),
            CompartmentId([2; 16]),
            CompartmentId([3; 16]),
        ];
        let mut t = Tree::new(ids[0], "all").unwrap();
        t.add(ids[0], ids[1], "ops").unwrap();
        let k = Keys {
            network: [9; 16],
            name: "net".into(),
            me: Identity::generate(),
            my_name: "admin".into(),
            tree: t,
            clearance: Clearance {
                at: ids[0],
                epoch: 0,
                key: [7; 32],
            },
            past: vec![],
        };
        (k, ids)
    }

    fn post(c: CompartmentId, id: u8, root: u8, parent: u8, time: u64, who: PublicId) -> Opened {
        let n = |b: u8| {
            if b == 0 {
                ItemId::NONE
            } else {
                ItemId([b; 16])
            }
        };
        Opened {
            item: Item {
                place: Place {
                    network: [9; 16],
                    compartment: c,
                    epoch: 0,
                },
                id: ItemId([id; 16]),
                body: Body::Post(Post {
                    board: "general".into(),
                    root: n(root),
                    parent: n(parent),
                    title: format!("t{id}"),
                    text: format!("text {id}"),
                }),
            },
            author: who,
            time,
        }
    }

    fn shape(f: &Forum, root: u8) -> Vec<(String, usize)> {
        f.thread(&ItemId([root; 16]))
            .iter()
            .map(|l| match l {
                Line::Post { post, depth } => (post.title.clone(), *depth),
                Line::Missing { id, depth } => (format!("missing {}", id.0[0]), *depth),
            })
            .collect()
    }

    #[test]
    fn replies_before_their_parents_wait_under_a_placeholder_and_duplicates_show_once() {
        let (mut k, [_, ops, _]) = keys();
        let bob = Identity::generate().public();
        let mut f = Forum::default();
        // 1 is the root; 2 replies to 1; 3 replies to 2. They arrive 3, 2, 1, 3 again.
        assert_eq!(f.ingest(&mut k, post(ops, 3, 1, 2, 30, bob)), Ingested::New);
        assert_eq!(
            shape(&f, 1),
            vec![
                ("missing 1".into(), 0),
                ("missing 2".into(), 1),
                ("t3".into(), 2)
            ]
        );
        f.ingest(&mut k, post(ops, 2, 1, 1, 20, bob));
        f.ingest(&mut k, post(ops, 1, 0, 0, 10, bob));
        assert_eq!(
            f.ingest(&mut k, post(ops, 3, 1, 2, 30, bob)),
            Ingested::Duplicate
        );
        assert_eq!(
            shape(&f, 1),
            vec![("t1".into(), 0), ("t2".into(), 1), ("t3".into(), 2)]
        );
        let rows = f.threads(&ops, "general");
        assert_eq!((rows.len(), rows[0].posts, rows[0].unread), (1, 3, 3));
        f.mark_read(&ItemId([1; 16]));
        assert_eq!(f.threads(&ops, "general")[0].unread, 0);
        assert_eq!(f.search("TEXT 2", 10).len(), 1);
    }

    #[test]
    fn private_messages_are_kept_per_conversation_once_and_only_ours() {
        let (k, _) = keys();
        let mut f = Forum::default();
        let (bob, eve) = (Identity::generate().public(), Identity::generate().public());
        let me = k.me.public();
        let dm = |id: u8, from: PublicId, to: PublicId, time: u64| Opened {
            item: Item {
                place: Place {
                    network: [9; 16],
                    compartment: CompartmentId([0; 16]),
                    epoch: 0,
                },
                id: ItemId([id; 16]),
                body: Body::Direct {
                    to: to.to_bytes(),
                    text: format!("m{id}"),
                },
            },
            author: from,
            time,
        };
        assert_eq!(f.ingest_direct(&k, dm(1, bob, me, 5)), Ingested::New);
        assert_eq!(f.ingest_direct(&k, dm(2, me, bob, 5)), Ingested::New);
        assert_eq!(f.ingest_direct(&k, dm(1, bob, me, 5)), Ingested::Duplicate);
        // Between two others: not ours to show.
        assert_eq!(f.ingest_direct(&k, dm(3, bob, eve, 6)), Ingested::Ignored);
        let conv: Vec<&str> = f.dms[&bob].iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            conv,
            ["m1", "m2"],
            "one conversation, arrival order within a second"
        );
        assert_eq!(f.dm_unread.len(), 1, "our own message is not unread");
        f.mark_dms_read(&bob);
        assert!(f.dm_unread.is_empty());
        // A private message under a compartment key is not taken as one.
        let mut k2 = k.clone();
        assert_eq!(f.ingest(&mut k2, dm(4, bob, me, 7)), Ingested::Ignored);
    }

    #[test]
    fn a_compartment_announced_after_its_posts_takes_them_in() {
        let (mut k, [_, ops, cell]) = keys();
        let mut f = Forum::default();
        let who = Identity::generate().public();
        assert_eq!(
            f.ingest(&mut k, post(cell, 1, 0, 0, 1, who)),
            Ingested::Ignored
        );
        let announce = Opened {
            item: Item {
                place: Place {
                    network: [9; 16],
                    compartment: ops,
                    epoch: 0,
                },
                id: ItemId([5; 16]),
                body: Body::Compartment(crate::speakeasy::post::NewCompartment {
                    id: cell,
                    epoch: 0,
                    name: "cell-a".into(),
                }),
            },
            author: who,
            time: 2,
        };
        assert_eq!(f.ingest(&mut k, announce), Ingested::New);
        assert!(
            f.post(&ItemId([1; 16])).is_some(),
            "the waiting post came in"
        );
        // A re-key of cell-a, sealed under ops: the epoch moves, the old key is kept.
        let before = k.clearance.key_for(&k.tree, &cell).unwrap();
        let rekey = Opened {
            item: Item {
                place: Place {
                    network: [9; 16],
                    compartment: ops,
                    epoch: 0,
                },
                id: ItemId([6; 16]),
                body: Body::Rekey(Rekey {
                    compartment: cell,
                    epoch: 1,
                    removed: vec![who.to_bytes()],
                }),
            },
            author: who,
            time: 3,
        };
        assert_eq!(f.ingest(&mut k, rekey), Ingested::New);
        assert_eq!(k.tree.get(&cell).unwrap().epoch, 1);
        assert_ne!(k.clearance.key_for(&k.tree, &cell).unwrap(), before);
        assert!(k
            .past
            .iter()
            .any(|(c, e, key)| *c == cell && *e == 0 && *key == before.0));
        assert!(f.members[&who].removed);
        // Another network's item is ignored.
        let mut other = post(ops, 8, 0, 0, 1, who);
        other.item.place.network = [1; 16];
        assert_eq!(f.ingest(&mut k, other), Ingested::Ignored);
    }
}
