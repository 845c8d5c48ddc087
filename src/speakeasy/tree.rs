//! The clearance tree of one Speak Easy network (docs/speakeasy.md §2): compartments, their
//! epochs, and the keys derived down the tree. A member cleared at compartment C holds C's
//! key at its current epoch and derives every key below it; nothing above or beside C can be
//! derived from it.
//!
//! ```text
//! K_root           = 32 random bytes, new ones at each root epoch
//! K_child(epoch e) = HKDF(K_parent, "bump/se/child/1" ‖ child id (16) ‖ e as u32 BE)
//! ```
//!
//! A compartment's posts are sealed as group messages (protocol.md §8) under
//! `GroupKey(K_C)`, so its tags rotate daily and change with every epoch of C or of a
//! compartment above it.

use crate::sealed::keys::{hkdf32, GroupKey};
use std::collections::BTreeMap;

/// Longest compartment name, in bytes.
pub const MAX_NAME: usize = 64;
/// Deepest tree (root = depth 0).
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("no compartment {0}")]
    Unknown(String),
    #[error("a compartment named {0:?} is already under that parent")]
    Duplicate(String),
    #[error("compartment names are 1 to {MAX_NAME} bytes of letters, digits, '-' or '_'")]
    BadName,
    #[error("the tree is at most {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("not cleared for {0}: it is not at or below the member's clearance")]
    NotCleared(String),
    #[error("the clearance key is of epoch {have}, the compartment is at epoch {now}: ask for the new keys")]
    Stale { have: u32, now: u32 },
}

/// A compartment's id: 16 random bytes, fixed for its life (its name can be shown, not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompartmentId(pub [u8; 16]);

impl CompartmentId {
    pub fn random() -> CompartmentId {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        CompartmentId(b)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compartment {
    pub id: CompartmentId,
    pub name: String,
    pub parent: Option<CompartmentId>,
    /// Moves on at each removal of a member cleared at or below this compartment (or above:
    /// a parent's new epoch changes every key below it by derivation).
    pub epoch: u32,
}

/// The compartments of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: CompartmentId,
    nodes: BTreeMap<CompartmentId, Compartment>,
}

pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key of `child` at `epoch` from its parent's key.
pub fn child_key(parent_key: &[u8; 32], child: &CompartmentId, epoch: u32) -> [u8; 32] {
    let mut info = b"bump/se/child/1".to_vec();
    info.extend_from_slice(&child.0);
    info.extend_from_slice(&epoch.to_be_bytes());
    hkdf32(parent_key, &info)
}

impl Tree {
    /// A tree with only its root, named `name`.
    pub fn new(root: CompartmentId, name: &str) -> Result<Tree, TreeError> {
        if !valid_name(name) {
            return Err(TreeError::BadName);
        }
        let c = Compartment {
            id: root,
            name: name.to_string(),
            parent: None,
            epoch: 0,
        };
        Ok(Tree {
            root,
            nodes: BTreeMap::from([(root, c)]),
        })
    }

    pub fn root(&self) -> CompartmentId {
        self.root
    }

    pub fn get(&self, id: &CompartmentId) -> Result<&Compartment, TreeError> {
        self.nodes
            .get(id)
            .ok_or_else(|| TreeError::Unknown(id.to_hex()))
    }

    /// The compartment reached by names from the root, e.g. `["ops", "cell-a"]`.
    pub fn find(&self, names: &[&str]) -> Option<CompartmentId> {
        let mut at = self.root;
        for n in names {
            at = self
                .children(&at)
                .into_iter()
                .find(|c| self.nodes.get(c).is_some_and(|x| x.name == *n))?;
        }
        Some(at)
    }

    /// Add a compartment `name` (with id `id`) under `parent`.
    pub fn add(
        &mut self,
        parent: CompartmentId,
        id: CompartmentId,
        name: &str,
    ) -> Result<CompartmentId, TreeError> {
        if !valid_name(name) {
            return Err(TreeError::BadName);
        }
        self.get(&parent)?;
        if self.path(&parent)?.len() >= MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        if self
            .children(&parent)
            .iter()
            .any(|c| self.nodes.get(c).is_some_and(|x| x.name == name))
            || self.nodes.contains_key(&id)
        {
            return Err(TreeError::Duplicate(name.to_string()));
        }
        self.nodes.insert(
            id,
            Compartment {
                id,
                name: name.to_string(),
                parent: Some(parent),
                epoch: 0,
            },
        );
        Ok(id)
    }

    pub fn children(&self, id: &CompartmentId) -> Vec<CompartmentId> {
        self.nodes
            .values()
            .filter(|c| c.parent == Some(*id))
            .map(|c| c.id)
            .collect()
    }

    /// The compartments from the root down to `id`, both included.
    pub fn path(&self, id: &CompartmentId) -> Result<Vec<CompartmentId>, TreeError> {
        let mut out = vec![*id];
        let mut at = self.get(id)?;
        while let Some(p) = at.parent {
            if out.len() > MAX_DEPTH {
                return Err(TreeError::TooDeep);
            }
            out.push(p);
            at = self.get(&p)?;
        }
        out.reverse();
        Ok(out)
    }

    /// Whether `c` is `clearance` or below it.
    pub fn within(&self, c: &CompartmentId, clearance: &CompartmentId) -> bool {
        self.path(c).is_ok_and(|p| p.contains(clearance))
    }

    /// `c` and everything below it.
    pub fn subtree(&self, c: &CompartmentId) -> Vec<CompartmentId> {
        self.nodes
            .keys()
            .filter(|x| self.within(x, c))
            .copied()
            .collect()
    }

    /// Move `c` to its next epoch (a removal); returns the new epoch. Every key at and below
    /// `c` changes.
    pub fn next_epoch(&mut self, c: &CompartmentId) -> Result<u32, TreeError> {
        let n = self
            .nodes
            .get_mut(c)
            .ok_or_else(|| TreeError::Unknown(c.to_hex()))?;
        n.epoch += 1;
        Ok(n.epoch)
    }

    /// Every compartment, each parent before its children (the root first).
    pub fn in_order(&self) -> Vec<&Compartment> {
        let mut out = vec![];
        let mut queue = std::collections::VecDeque::from([self.root]);
        while let Some(id) = queue.pop_front() {
            if let Some(c) = self.nodes.get(&id) {
                out.push(c);
                queue.extend(self.children(&id));
            }
        }
        out
    }

    /// A tree from compartments listed parents first, the root first (a grant's).
    pub fn from_nodes(nodes: &[Compartment]) -> Result<Tree, TreeError> {
        let Some((root, rest)) = nodes.split_first() else {
            return Err(TreeError::Unknown("root".into()));
        };
        if root.parent.is_some() {
            return Err(TreeError::Unknown("root".into()));
        }
        let mut t = Tree::new(root.id, &root.name)?;
        t.set_epoch(&root.id, root.epoch)?;
        for c in rest {
            let parent = c
                .parent
                .ok_or_else(|| TreeError::Duplicate(c.name.clone()))?;
            t.add(parent, c.id, &c.name)?;
            t.set_epoch(&c.id, c.epoch)?;
        }
        Ok(t)
    }

    /// What a member cleared at `c` may know: the path from the root to `c` and `c`'s
    /// subtree, nothing beside.
    pub fn visible_from(&self, c: &CompartmentId) -> Result<Tree, TreeError> {
        let path = self.path(c)?;
        let keep: Vec<Compartment> = self
            .in_order()
            .into_iter()
            .filter(|x| path.contains(&x.id) || self.within(&x.id, c))
            .cloned()
            .collect();
        Tree::from_nodes(&keep)
    }

    /// Add what a grant or an item says about the tree: compartments not yet known (their
    /// parent known), epochs that moved forward. Returns whether anything changed.
    pub fn merge(&mut self, other: &Tree) -> bool {
        let mut changed = false;
        for c in other.in_order() {
            match self.nodes.get(&c.id) {
                Some(have) => {
                    if c.epoch > have.epoch {
                        changed |= self.set_epoch(&c.id, c.epoch).is_ok();
                    }
                }
                None => {
                    if let Some(p) = c.parent {
                        if self.add(p, c.id, &c.name).is_ok() {
                            let _ = self.set_epoch(&c.id, c.epoch);
                            changed = true;
                        }
                    }
                }
            }
        }
        changed
    }

    /// Set a compartment's epoch as learned from a re-key (never backwards).
    pub fn set_epoch(&mut self, c: &CompartmentId, epoch: u32) -> Result<(), TreeError> {
        let n = self
            .nodes
            .get_mut(c)
            .ok_or_else(|| TreeError::Unknown(c.to_hex()))?;
        n.epoch = n.epoch.max(epoch);
        Ok(())
    }
}

/// What a member holds: the key of the compartment it is cleared at, at that compartment's
/// epoch when the key was given.
#[derive(Clone, PartialEq, Eq)]
pub struct Clearance {
    pub at: CompartmentId,
    pub epoch: u32,
    pub key: [u8; 32],
}

impl std::fmt::Debug for Clearance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "Clearance({} @ {})", self.at.to_hex(), self.epoch)
    }
}

impl Clearance {
    /// The sealing key of compartment `c` now: derived down from the clearance, refused for
    /// anything not at or below it, or when the clearance's own epoch has moved on.
    pub fn key_for(&self, tree: &Tree, c: &CompartmentId) -> Result<GroupKey, TreeError> {
        let now = tree.get(&self.at)?.epoch;
        if now != self.epoch {
            return Err(TreeError::Stale {
                have: self.epoch,
                now,
            });
        }
        let path = tree.path(c)?;
        let Some(from) = path.iter().position(|x| *x == self.at) else {
            return Err(TreeError::NotCleared(tree.get(c)?.name.clone()));
        };
        let mut key = self.key;
        for id in &path[from + 1..] {
            key = child_key(&key, id, tree.get(id)?.epoch);
        }
        Ok(GroupKey(key))
    }

    /// The clearance one level or more down, at `c` (what an invite at `c` carries).
    pub fn narrow(&self, tree: &Tree, c: &CompartmentId) -> Result<Clearance, TreeError> {
        Ok(Clearance {
            at: *c,
            epoch: tree.get(c)?.epoch,
            key: self.key_for(tree, c)?.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// all > ops > {cell-a, cell-b}
    fn tree() -> (Tree, [CompartmentId; 4]) {
        let ids = [
            CompartmentId([1; 16]),
            CompartmentId([2; 16]),
            CompartmentId([3; 16]),
            CompartmentId([4; 16]),
        ];
        let mut t = Tree::new(ids[0], "all").unwrap();
        t.add(ids[0], ids[1], "ops").unwrap();
        t.add(ids[1], ids[2], "cell-a").unwrap();
        t.add(ids[1], ids[3], "cell-b").unwrap();
        (t, ids)
    }

    #[test]
    fn cleared_at_c_reads_c_and_below_never_above_or_beside() {
        let (t, [all, ops, a, b]) = tree();
        let admin = Clearance {
            at: all,
            epoch: 0,
            key: [7; 32],
        };
        let bob = admin.narrow(&t, &ops).unwrap();
        let carol = admin.narrow(&t, &a).unwrap();
        // Bob derives cell-a's and cell-b's keys, the same ones the admin uses.
        for c in [ops, a, b] {
            assert_eq!(bob.key_for(&t, &c).unwrap(), admin.key_for(&t, &c).unwrap());
        }
        assert_eq!(
            carol.key_for(&t, &a).unwrap(),
            admin.key_for(&t, &a).unwrap()
        );
        // Carol: nothing above or beside.
        for c in [all, ops, b] {
            assert!(matches!(
                carol.key_for(&t, &c),
                Err(TreeError::NotCleared(_))
            ));
        }
        assert!(matches!(
            bob.key_for(&t, &all),
            Err(TreeError::NotCleared(_))
        ));
        // All keys differ.
        let keys: std::collections::HashSet<[u8; 32]> = [all, ops, a, b]
            .iter()
            .map(|c| admin.key_for(&t, c).unwrap().0)
            .collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(t.find(&["ops", "cell-b"]), Some(b));
        assert_eq!(t.subtree(&ops).len(), 3);
    }

    #[test]
    fn a_new_epoch_changes_the_subtree_keys_and_the_old_key_no_longer_derives_them() {
        let (mut t, [all, ops, a, _b]) = tree();
        let admin = Clearance {
            at: all,
            epoch: 0,
            key: [7; 32],
        };
        let carol_old = admin.narrow(&t, &a).unwrap();
        let old_a = admin.key_for(&t, &a).unwrap();
        let old_ops = admin.key_for(&t, &ops).unwrap();
        // The admin (cleared above) moves cell-a on: Carol's key is stale, the new key is
        // neither her old one nor anything derived from it.
        assert_eq!(t.next_epoch(&a).unwrap(), 1);
        let new_a = admin.key_for(&t, &a).unwrap();
        assert_ne!(new_a, old_a);
        assert!(matches!(
            carol_old.key_for(&t, &a),
            Err(TreeError::Stale { have: 0, now: 1 })
        ));
        for e in 0..64 {
            assert_ne!(child_key(&carol_old.key, &a, e), new_a.0);
        }
        // ops' key did not change; a new ops epoch changes cell-a's key again.
        assert_eq!(admin.key_for(&t, &ops).unwrap(), old_ops);
        t.next_epoch(&ops).unwrap();
        assert_ne!(admin.key_for(&t, &a).unwrap(), new_a);
    }

    #[test]
    fn names_are_checked_and_unique_among_siblings() {
        let (mut t, [all, ops, ..]) = tree();
        assert_eq!(
            t.add(all, CompartmentId([9; 16]), "ops"),
            Err(TreeError::Duplicate("ops".into()))
        );
        assert_eq!(
            t.add(all, CompartmentId([9; 16]), "<script>"),
            Err(TreeError::BadName)
        );
        assert!(
            t.add(ops, CompartmentId([9; 16]), "ops").is_ok(),
            "a name may repeat lower down"
        );
        let mut at = CompartmentId([9; 16]);
        let mut err = None;
        for i in 0..MAX_DEPTH {
            match t.add(at, CompartmentId([100 + i as u8; 16]), "deep") {
                Ok(id) => at = id,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(TreeError::TooDeep));
    }
}
