//! Typed side tables: the small persistent maps other parts of the node keep beside the
//! packets (the mix pool, the replay cache, the loop ledger, postage credit), in the store's
//! one sled database so that [`super::Store::durable`] covers them too.
//!
//! A table is named and typed once, by a [`TableSpec`]; keys and values go through [`Codec`]
//! (one encode, one decode each), so no caller handles raw sled trees or byte slices. Every
//! write counts toward the store's next group-commit flush by itself. Entries that do not
//! decode (a damaged or foreign entry) are skipped by [`Table::iter`] and read as absent by
//! [`Table::get`]; the caller never sees half-parsed bytes.

use super::StoreError;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a key or value is laid out in a table.
pub trait Codec: Sized {
    fn encode(&self) -> Vec<u8>;
    /// `None` when the bytes are not a valid encoding.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl<const N: usize> Codec for [u8; N] {
    fn encode(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
}

/// Big-endian, so keys sort numerically.
impl Codec for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl Codec for u32 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// A table's name (its sled tree is `ext/<NAME>`) and types.
pub trait TableSpec {
    const NAME: &'static str;
    type Key: Codec;
    type Value: Codec;
}

/// One typed table; cheap to clone.
pub struct Table<S: TableSpec> {
    tree: sled::Tree,
    written: Arc<AtomicU64>,
    _spec: PhantomData<fn() -> S>,
}

impl<S: TableSpec> Clone for Table<S> {
    fn clone(&self) -> Self {
        Table {
            tree: self.tree.clone(),
            written: self.written.clone(),
            _spec: PhantomData,
        }
    }
}

impl<S: TableSpec> Table<S> {
    pub(super) fn new(tree: sled::Tree, written: Arc<AtomicU64>) -> Self {
        Table {
            tree,
            written,
            _spec: PhantomData,
        }
    }

    fn wrote(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self, key: &S::Key) -> Result<Option<S::Value>, StoreError> {
        Ok(self
            .tree
            .get(key.encode())?
            .and_then(|v| S::Value::decode(&v)))
    }

    pub fn contains(&self, key: &S::Key) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key.encode())?)
    }

    pub fn insert(&self, key: &S::Key, value: &S::Value) -> Result<(), StoreError> {
        self.tree.insert(key.encode(), value.encode())?;
        self.wrote();
        Ok(())
    }

    pub fn remove(&self, key: &S::Key) -> Result<(), StoreError> {
        self.tree.remove(key.encode())?;
        self.wrote();
        Ok(())
    }

    /// Entries in key order; undecodable ones are skipped.
    pub fn iter(&self) -> impl Iterator<Item = Result<(S::Key, S::Value), StoreError>> + '_ {
        self.tree.iter().filter_map(|r| match r {
            Err(e) => Some(Err(e.into())),
            Ok((k, v)) => Some(Ok((S::Key::decode(&k)?, S::Value::decode(&v)?))),
        })
    }

    /// Entries, counting undecodable ones too.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    struct Credits;
    impl TableSpec for Credits {
        const NAME: &'static str = "test-credits";
        type Key = [u8; 4];
        type Value = u64;
    }

    #[test]
    fn typed_entries_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            let t = store.table::<Credits>().unwrap();
            t.insert(&[1, 2, 3, 4], &500).unwrap();
            t.insert(&[0, 0, 0, 9], &7).unwrap();
            assert_eq!(t.get(&[1, 2, 3, 4]).unwrap(), Some(500));
            t.remove(&[0, 0, 0, 9]).unwrap();
            assert!(!t.contains(&[0, 0, 0, 9]).unwrap());
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let t = store.table::<Credits>().unwrap();
        let all: Vec<_> = t.iter().map(|r| r.unwrap()).collect();
        assert_eq!(all, vec![([1, 2, 3, 4], 500)]);
    }
}
