//! The packet index in memory: which packets the store holds, where their bytes are, and the
//! orders the store needs — by id, by tag in arrival order, by score (eviction) and by expiry
//! (the sweeper). [`super::Store`] owns one behind a lock; [`super::journal`] makes it durable
//! and the segment files can always rebuild it.
//!
//! Layout, chosen for memory (about 100 bytes per packet, issue #13):
//!
//! - a slab of 64-byte [`Slot`]s (id, arrival seq, expiry, interned tag, record number in the
//!   hour's segment file, and the tag's doubly linked arrival list), freed slots reused;
//! - an id table of slot numbers (hashbrown's `HashTable<u32>`, keyed by a randomly seeded
//!   hash of the id's first 8 bytes ([`PacketId::prefix`]), so ground ids cannot pile up in
//!   one bucket): about 6–11 bytes a packet;
//! - the tags: each distinct tag once, with the head, tail and length of its list;
//! - two lazy heaps, (score, slot, seq) for eviction and (expires, slot) for the sweeper:
//!   entries whose slot was freed or reused are skipped when they surface and dropped when a
//!   heap holds twice as many entries as there are packets.
//!
//! Nothing here touches the disk; every method is O(1) or O(log n) but the few marked O(n).

use crate::packet::PacketId;
use crate::tag::Tag;
use hashbrown::HashTable;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

/// "No slot" in the tag lists.
const NIL: u32 = u32::MAX;

/// One held packet, as the store and the journal see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub id: PacketId,
    /// Arrival sequence number, from 1.
    pub seq: u64,
    pub expires: u32,
    pub tag: Tag,
    /// Record number in the segment of hour `expires / 3600` (byte offset / 1024).
    pub record: u32,
    /// Work per TTL when it arrived ([`crate::pow::score`]): the eviction order.
    pub score: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    id: [u8; 32],
    /// 0: the slot is free.
    seq: u64,
    expires: u32,
    tag: u32,
    record: u32,
    prev: u32,
    next: u32,
    /// The bytes on disk were hashed to the id in this run (on arrival, on a rebuild, or on a
    /// first read): later reads need not hash them again. Fits the slot's padding.
    checked: bool,
}

struct TagList {
    tag: Tag,
    head: u32,
    tail: u32,
    len: u32,
}

pub struct Index {
    slots: Vec<Slot>,
    free: Vec<u32>,
    ids: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    tag_of: HashMap<Tag, u32>,
    tags: Vec<TagList>,
    free_tags: Vec<u32>,
    /// Min-heap of (score, slot, low 32 bits of seq).
    values: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Min-heap of (expires, slot).
    expiries: BinaryHeap<Reverse<(u32, u32)>>,
    len: usize,
    max_seq: u64,
}

fn id_hash(hasher: &hashbrown::DefaultHashBuilder, id: &[u8; 32]) -> u64 {
    hasher.hash_one(PacketId(*id).prefix())
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            tag_of: HashMap::new(),
            tags: Vec::new(),
            free_tags: Vec::new(),
            values: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            len: 0,
            max_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The highest arrival seq ever indexed (the next insert uses a higher one).
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// Never hand out a seq at or below `seq` (kept in the index files' headers).
    pub fn note_seq(&mut self, seq: u64) {
        self.max_seq = self.max_seq.max(seq);
    }

    /// The table's hash of an id: its [`PacketId::prefix`] through the seeded hasher. Every
    /// probe and the table's rehash go through here.
    fn hash(&self, id: &[u8; 32]) -> u64 {
        id_hash(&self.hasher, id)
    }

    fn slot_of(&self, id: &PacketId) -> Option<u32> {
        let slots = &self.slots;
        self.ids
            .find(self.hash(&id.0), |&s| slots[s as usize].id == id.0)
            .copied()
    }

    pub fn contains(&self, id: &PacketId) -> bool {
        self.slot_of(id).is_some()
    }

    /// (seq, expires, record) of a held packet.
    pub fn get(&self, id: &PacketId) -> Option<(u64, u32, u32)> {
        let s = &self.slots[self.slot_of(id)? as usize];
        Some((s.seq, s.expires, s.record))
    }

    /// (slot, expires, record, checked) of a held packet: what a read needs.
    pub fn locate(&self, id: &PacketId) -> Option<(u32, u32, u32, bool)> {
        let n = self.slot_of(id)?;
        let s = &self.slots[n as usize];
        Some((n, s.expires, s.record, s.checked))
    }

    /// Note that the bytes of `id`, in `slot`, were read and hash to it.
    pub fn mark_checked(&mut self, slot: u32, id: &PacketId) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.seq != 0 && s.id == id.0 {
                s.checked = true;
            }
        }
    }

    /// Index a packet; `checked`: its bytes on disk were hashed to its id in this run.
    /// `false` (and nothing changes) if its id is already held.
    pub fn insert(&mut self, h: Held, checked: bool) -> bool {
        if self.contains(&h.id) {
            return false;
        }
        let tag = self.intern(h.tag);
        let slot = Slot {
            id: h.id.0,
            seq: h.seq.max(1),
            expires: h.expires,
            tag,
            record: h.record,
            prev: self.tags[tag as usize].tail,
            next: NIL,
            checked,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = slot;
                n
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let list = &mut self.tags[tag as usize];
        match list.tail {
            NIL => list.head = n,
            t => self.slots[t as usize].next = n,
        }
        let list = &mut self.tags[tag as usize];
        list.tail = n;
        list.len += 1;
        let hash = self.hash(&h.id.0);
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.ids
            .insert_unique(hash, n, |&s| id_hash(hasher, &slots[s as usize].id));
        self.values.push(Reverse((h.score, n, slot.seq as u32)));
        self.expiries.push(Reverse((h.expires, n)));
        self.len += 1;
        self.max_seq = self.max_seq.max(slot.seq);
        true
    }

    fn intern(&mut self, tag: Tag) -> u32 {
        if let Some(&t) = self.tag_of.get(&tag) {
            return t;
        }
        let list = TagList {
            tag,
            head: NIL,
            tail: NIL,
            len: 0,
        };
        let t = match self.free_tags.pop() {
            Some(t) => {
                self.tags[t as usize] = list;
                t
            }
            None => {
                self.tags.push(list);
                (self.tags.len() - 1) as u32
            }
        };
        self.tag_of.insert(tag, t);
        t
    }

    /// Forget a held packet; returns what it was (score: 0, the index does not keep it
    /// per packet).
    pub fn remove(&mut self, id: &PacketId) -> Option<Held> {
        let n = self.slot_of(id)?;
        Some(self.remove_slot(n))
    }

    fn remove_slot(&mut self, n: u32) -> Held {
        let s = self.slots[n as usize];
        let hash = self.hash(&s.id);
        let slots = &self.slots;
        if let Ok(e) = self.ids.find_entry(hash, |&x| slots[x as usize].id == s.id) {
            e.remove();
        }
        match s.prev {
            NIL => self.tags[s.tag as usize].head = s.next,
            p => self.slots[p as usize].next = s.next,
        }
        match s.next {
            NIL => self.tags[s.tag as usize].tail = s.prev,
            x => self.slots[x as usize].prev = s.prev,
        }
        let list = &mut self.tags[s.tag as usize];
        list.len -= 1;
        let tag = list.tag;
        if list.len == 0 {
            self.tag_of.remove(&tag);
            self.free_tags.push(s.tag);
        }
        self.slots[n as usize].seq = 0;
        self.free.push(n);
        self.len -= 1;
        self.tidy();
        Held {
            id: PacketId(s.id),
            seq: s.seq,
            expires: s.expires,
            tag,
            record: s.record,
            score: 0,
        }
    }

    fn value_live(&self, slot: u32, seq_lo: u32) -> bool {
        let s = &self.slots[slot as usize];
        s.seq != 0 && s.seq as u32 == seq_lo
    }

    /// Drop heap entries of removed packets once they outnumber the packets (O(n), amortised).
    fn tidy(&mut self) {
        if self.values.len() > 2 * self.len + 1024 {
            let old = std::mem::take(&mut self.values).into_vec();
            self.values = old
                .into_iter()
                .filter(|Reverse((_, slot, seq))| self.value_live(*slot, *seq))
                .collect();
        }
        if self.expiries.len() > 2 * self.len + 1024 {
            let old = std::mem::take(&mut self.expiries).into_vec();
            self.expiries = old
                .into_iter()
                .filter(|Reverse((expires, slot))| {
                    let s = &self.slots[*slot as usize];
                    s.seq != 0 && s.expires == *expires
                })
                .collect();
        }
    }

    /// The cheapest packet held: its score and id.
    pub fn lowest(&mut self) -> Option<(u64, PacketId)> {
        while let Some(&Reverse((score, slot, seq))) = self.values.peek() {
            if self.value_live(slot, seq) {
                return Some((score, PacketId(self.slots[slot as usize].id)));
            }
            self.values.pop();
        }
        None
    }

    /// The score of the `m`-th cheapest packet (1-based). O(n).
    pub fn nth_lowest_score(&self, m: usize) -> Option<u64> {
        let mut scores: Vec<u64> = self
            .values
            .iter()
            .filter(|Reverse((_, slot, seq))| self.value_live(*slot, *seq))
            .map(|Reverse((score, _, _))| *score)
            .collect();
        if m == 0 || m > scores.len() {
            return None;
        }
        let (_, nth, _) = scores.select_nth_unstable(m - 1);
        Some(*nth)
    }

    /// The earliest expiry held.
    pub fn earliest_expiry(&mut self) -> Option<u32> {
        while let Some(&Reverse((expires, slot))) = self.expiries.peek() {
            let s = &self.slots[slot as usize];
            if s.seq != 0 && s.expires == expires {
                return Some(expires);
            }
            self.expiries.pop();
        }
        None
    }

    /// Remove every packet with `expires <= now`; returns them.
    pub fn sweep(&mut self, now: u32) -> Vec<Held> {
        let mut out = Vec::new();
        while let Some(&Reverse((expires, slot))) = self.expiries.peek() {
            if expires > now {
                break;
            }
            self.expiries.pop();
            let s = &self.slots[slot as usize];
            if s.seq != 0 && s.expires <= now {
                out.push(self.remove_slot(slot));
            }
        }
        out
    }

    /// Packets of `tag` with seq > `after`, in arrival order, at most `limit`: (seq, id,
    /// expires, record), and whether the limit cut the list short. Walks back from the newest,
    /// so a reader that follows a tag pays for what is new.
    pub fn tag_after(
        &self,
        tag: &Tag,
        after: u64,
        limit: usize,
    ) -> (Vec<(u64, PacketId, u32, u32)>, bool) {
        let Some(&t) = self.tag_of.get(tag) else {
            return (Vec::new(), false);
        };
        let list = &self.tags[t as usize];
        // The first slot with seq > after: walk back from the tail.
        let mut first = NIL;
        let mut at = list.tail;
        while at != NIL && self.slots[at as usize].seq > after {
            first = at;
            at = self.slots[at as usize].prev;
        }
        let mut out = Vec::new();
        let mut at = first;
        while at != NIL {
            if out.len() >= limit {
                return (out, true);
            }
            let s = &self.slots[at as usize];
            out.push((s.seq, PacketId(s.id), s.expires, s.record));
            at = s.next;
        }
        (out, false)
    }

    /// Remove every packet for which `f(expires, record)` holds; returns them. O(n).
    pub fn remove_where(&mut self, f: impl Fn(u32, u32) -> bool) -> Vec<Held> {
        let doomed: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&n| {
                let s = &self.slots[n as usize];
                s.seq != 0 && f(s.expires, s.record)
            })
            .collect();
        doomed.into_iter().map(|n| self.remove_slot(n)).collect()
    }

    /// (id, expires, record) of every packet with `expires > now`, in slot order. O(n).
    pub fn live(&self, now: u32) -> Vec<(PacketId, u32, u32)> {
        self.slots
            .iter()
            .filter(|s| s.seq != 0 && s.expires > now)
            .map(|s| (PacketId(s.id), s.expires, s.record))
            .collect()
    }

    /// Call `f` with every held packet and its score, tag by tag, each tag's packets in
    /// arrival order (what loading needs to rebuild the tag lists), for the journal's
    /// snapshot. O(n); 8 bytes a slot of scratch.
    pub fn for_each<E>(&self, f: &mut dyn FnMut(&Held) -> Result<(), E>) -> Result<(), E> {
        let mut score = vec![0u64; self.slots.len()];
        for Reverse((sc, slot, seq)) in self.values.iter() {
            if self.value_live(*slot, *seq) {
                score[*slot as usize] = *sc;
            }
        }
        for list in &self.tags {
            let mut at = list.head;
            while at != NIL {
                let s = &self.slots[at as usize];
                f(&Held {
                    id: PacketId(s.id),
                    seq: s.seq,
                    expires: s.expires,
                    tag: list.tag,
                    record: s.record,
                    score: score[at as usize],
                })?;
                at = s.next;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn all(&self) -> Vec<Held> {
        let mut out = Vec::new();
        let _ = self.for_each::<()>(&mut |h| {
            out.push(*h);
            Ok(())
        });
        out.sort_unstable_by_key(|h| h.seq);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn held(i: u32, tag: u8, expires: u32, score: u64) -> Held {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        Held {
            id: PacketId(id),
            seq: i as u64 + 1,
            expires,
            tag: Tag([tag; 20]),
            record: i,
            score,
        }
    }

    #[test]
    fn every_id_is_found_after_the_table_grew_many_times() {
        // The table rehashes as it grows: a rehash that hashed ids differently from the probes
        // would lose them. 50,000 ids take it through about fourteen doublings.
        let mut ix = Index::new();
        let ids: Vec<PacketId> = (0u32..50_000)
            .map(|i| {
                PacketId::of_bytes(
                    &[i.to_le_bytes(), [0; 4]]
                        .concat()
                        .repeat(128)
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        for (n, id) in ids.iter().enumerate() {
            let held = Held {
                id: *id,
                seq: n as u64 + 1,
                expires: 7200,
                tag: Tag([1; 20]),
                record: n as u32,
                score: 1,
            };
            assert!(ix.insert(held, true));
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(ix.get(id), Some((n as u64 + 1, 7200, n as u32)));
        }
        assert!(!ix.contains(&PacketId([7; 32])));
    }

    #[test]
    fn insert_lookup_tag_order_eviction_and_sweep() {
        let mut x = Index::new();
        for i in 0..10 {
            assert!(x.insert(held(i, (i % 2) as u8, 100 + i, 50 - i as u64), true));
        }
        assert!(
            !x.insert(held(3, 0, 1, 1), true),
            "a held id is a duplicate"
        );
        assert_eq!(x.len(), 10);
        assert_eq!(x.get(&held(4, 0, 0, 0).id), Some((5, 104, 4)));
        let (tag0, more) = x.tag_after(&Tag([0; 20]), 0, 100);
        assert!(!more);
        assert_eq!(
            tag0.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![1, 3, 5, 7, 9]
        );
        let (after, more) = x.tag_after(&Tag([0; 20]), 3, 2);
        assert_eq!(
            (after.iter().map(|e| e.0).collect::<Vec<_>>(), more),
            (vec![5, 7], true)
        );
        assert_eq!(x.lowest(), Some((41, held(9, 0, 0, 0).id)));
        assert_eq!(x.nth_lowest_score(3), Some(43));
        x.remove(&held(9, 0, 0, 0).id).unwrap();
        assert_eq!(x.lowest().map(|l| l.0), Some(42));
        let swept = x.sweep(103);
        assert_eq!(
            swept.iter().map(|h| h.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(x.earliest_expiry(), Some(104));
        assert_eq!(x.len(), 5);
        let (tag0, _) = x.tag_after(&Tag([0; 20]), 0, 100);
        assert_eq!(tag0.iter().map(|e| e.0).collect::<Vec<_>>(), vec![5, 7, 9]);
        // Freed slots are reused; the tag lists and heaps stay right.
        assert!(x.insert(held(20, 0, 500, 1), false));
        // An unchecked slot is marked only for its own id.
        let id20 = held(20, 0, 0, 0).id;
        let (slot, _, _, checked) = x.locate(&id20).unwrap();
        assert!(!checked);
        x.mark_checked(slot, &held(5, 0, 0, 0).id);
        assert!(!x.locate(&id20).unwrap().3);
        x.mark_checked(slot, &id20);
        assert!(x.locate(&id20).unwrap().3);
        assert!(x.locate(&held(6, 0, 0, 0).id).unwrap().3);
        assert_eq!(x.lowest().map(|l| l.0), Some(1));
        let (tag0, _) = x.tag_after(&Tag([0; 20]), 0, 100);
        assert_eq!(
            tag0.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![5, 7, 9, 21]
        );
        let all = x.all();
        assert_eq!(all.len(), 6);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(all.iter().find(|h| h.seq == 21).map(|h| h.score), Some(1));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u8, u8),
        Remove(u8),
        Sweep(u8),
        Evict,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), 0..4u8, any::<u8>(), any::<u8>()).prop_map(|(a, b, c, d)| Op::Insert(a, b, c, d)),
            1 => any::<u8>().prop_map(Op::Remove),
            1 => any::<u8>().prop_map(Op::Sweep),
            1 => Just(Op::Evict),
        ]
    }

    proptest! {
        /// The index answers like a plain map of id → packet under any sequence of operations.
        #[test]
        fn behaves_like_a_model(ops in proptest::collection::vec(op(), 1..400)) {
            let mut x = Index::new();
            let mut model: BTreeMap<[u8; 32], Held> = BTreeMap::new();
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Insert(i, tag, exp, score) => {
                        seq += 1;
                        let mut h = held(i as u32, tag, exp as u32, score as u64);
                        h.seq = seq;
                        let fresh = !model.contains_key(&h.id.0);
                        prop_assert_eq!(x.insert(h, true), fresh);
                        if fresh { model.insert(h.id.0, h); }
                    }
                    Op::Remove(i) => {
                        let id = held(i as u32, 0, 0, 0).id;
                        prop_assert_eq!(x.remove(&id).map(|h| h.seq), model.remove(&id.0).map(|h| h.seq));
                    }
                    Op::Sweep(now) => {
                        let mut got: Vec<u64> = x.sweep(now as u32).iter().map(|h| h.seq).collect();
                        got.sort();
                        let mut want: Vec<u64> = model.values().filter(|h| h.expires <= now as u32).map(|h| h.seq).collect();
                        want.sort();
                        model.retain(|_, h| h.expires > now as u32);
                        prop_assert_eq!(got, want);
                    }
                    Op::Evict => {
                        let want = model.values().map(|h| h.score).min();
                        let got = x.lowest();
                        prop_assert_eq!(got.map(|g| g.0), want);
                        if let Some((_, id)) = got { x.remove(&id); model.remove(&id.0); }
                    }
                }
                prop_assert_eq!(x.len(), model.len());
            }
            for t in 0..4u8 {
                let (got, _) = x.tag_after(&Tag([t; 20]), 0, usize::MAX);
                let want: Vec<u64> = {
                    let mut v: Vec<u64> = model.values().filter(|h| h.tag == Tag([t; 20])).map(|h| h.seq).collect();
                    v.sort();
                    v
                };
                prop_assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), want);
            }
            let mut all: Vec<(u64, u64)> = x.all().iter().map(|h| (h.seq, h.score)).collect();
            all.sort();
            let want: Vec<(u64, u64)> = model.values().map(|h| (h.seq, h.score)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(all, want);
        }
    }
}
