//! The Tau pool: where a mix holds peeled packets until the sender's Tau values are met.
//!
//! A message that entered as the pool's `a`-th entry with minimum crowd `k` and minimum delay
//! `d` leaves when **both** hold: at least `k` other messages have entered since (the entry
//! counter has reached `a + k`), and `d` seconds have passed since it entered. Only packets that
//! passed the HMAC (and postage, where required) ever enter, so only they count toward a crowd.
//!
//! Those two conditions make a message *eligible*. Releasing each eligible message on its own
//! would let an observer link outputs to inputs almost always (docs/anonymity.md measured
//! it), so eligible messages leave only in **batches**: a message with crowd `k` leaves only
//! together with at least `k` other eligible messages, in random order.
//!
//! In memory each message sits in exactly one of two ordered indexes: `waiting_crowd` keyed by
//! `a + k`, then, once the counter passes that, `waiting_time` keyed by its due time. Each move
//! is O(log n). Messages due at the same time leave in random order.
//!
//! **Staged entries.** The node's own packets (its sends, cover and loops, peeled here:
//! docs/protocol.md §6.6) do not enter when they are made: they are *staged* and enter with
//! the next packet from the network that enters ([`TauPool::enter_staged`]: the mix lets all
//! of them in; one per arrival was tried and left more of them to enter alone on a quiet
//! network, docs/anonymity.md). When none comes, a staged entry is *overdue* once it has
//! waited its own delay or [`STAGE_MAX_MS`], whichever is less; an overdue entry enters
//! without a network entry only while the whole network is quiet (the node has stored no new
//! packet for [`STAGE_MAX_MS`]: a network being born, where someone must go first) or once it
//! has waited three times its delay, at most [`STAGE_HOLD_MAX_MS`] (liveness, when traffic
//! flows but nobody routes through this mix). A mix that merely had no input for a minute
//! while others are busy keeps its own entries until the next packet reaches it: an
//! announcement long after the mix's last visible input was always an insertion
//! (docs/anonymity.md, the quiet-run rows). Every moment the
//! pool gains entries is then, but for those two cases, a moment an observer saw a packet
//! arrive at this mix, so a batch that own entries completed looks like one a visible arrival
//! completed. A staged entry is in no index and cannot leave; its delay runs from when it was
//! staged, so staging adds to its wait only what the hold for a network entry adds.
//!
//! On disk (sled tree `ext/mixpool`): key = outgoing packet id (32), value = entry number
//! (u64 BE; [`STAGED`] for a staged entry) ‖ crowd (u64 BE; its top bit set marks an
//! *uncounted* entry, see [`TauPool::insert_uncounted`]) ‖ due unix time in ms (u64 BE) ‖
//! outgoing packet (1024); the key `counter` holds the entry
//! counter. A restarted pool rebuilds its indexes from disk, so
//! nothing held is lost and nothing is released early. The caller removes an entry only after
//! the released packet is durably stored; if it crashes in between, the packet is released
//! again and the store's dedupe by packet id keeps delivery exactly-once.

use crate::packet::{Packet, PacketId, PACKET_LEN};
use crate::store::{Codec, Store, StoreError, Table, TableSpec};
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap};

const COUNTER_KEY: &[u8] = b"counter";
const VALUE_LEN: usize = 24 + PACKET_LEN;

/// The pool's table (`ext/mixpool`): the entry counter and one record per held packet.
struct PoolTable;
impl TableSpec for PoolTable {
    const NAME: &'static str = "mixpool";
    type Key = PoolKey;
    type Value = PoolValue;
}

enum PoolKey {
    Counter,
    Entry(PacketId),
}

impl Codec for PoolKey {
    fn encode(&self) -> Vec<u8> {
        match self {
            PoolKey::Counter => COUNTER_KEY.to_vec(),
            PoolKey::Entry(id) => id.0.to_vec(),
        }
    }
    fn decode(b: &[u8]) -> Option<Self> {
        if b == COUNTER_KEY {
            return Some(PoolKey::Counter);
        }
        Some(PoolKey::Entry(PacketId(b.try_into().ok()?)))
    }
}

enum PoolValue {
    Counter(u64),
    Entry(Record),
}

/// One held packet as stored.
struct Record {
    entry: u64,
    /// The crowd, with [`UNCOUNTED`] set for an uncounted entry.
    crowd_field: u64,
    due: u64,
    packet: Packet,
}

impl Codec for PoolValue {
    fn encode(&self) -> Vec<u8> {
        match self {
            PoolValue::Counter(n) => n.to_be_bytes().to_vec(),
            PoolValue::Entry(r) => {
                let mut v = Vec::with_capacity(VALUE_LEN);
                v.extend_from_slice(&r.entry.to_be_bytes());
                v.extend_from_slice(&r.crowd_field.to_be_bytes());
                v.extend_from_slice(&r.due.to_be_bytes());
                v.extend_from_slice(&r.packet.encode());
                v
            }
        }
    }
    fn decode(v: &[u8]) -> Option<Self> {
        match v.len() {
            8 => Some(PoolValue::Counter(u64::decode(v)?)),
            VALUE_LEN => Some(PoolValue::Entry(Record {
                entry: u64::decode(&v[..8])?,
                crowd_field: u64::decode(&v[8..16])?,
                due: u64::decode(&v[16..24])?,
                packet: Packet::decode(&v[24..]).ok()?,
            })),
            _ => None,
        }
    }
}
/// Top bit of the stored crowd: the entry does not count (crowds are capped far below it).
const UNCOUNTED: u64 = 1 << 63;
/// The entry number stored for a staged entry (no real entry number gets near it).
pub const STAGED: u64 = u64::MAX;
/// How long a staged entry waits for a packet from the network before it is *overdue* (less
/// when its own delay is less); also how long the node must have stored no new packet at all
/// for the network to count as quiet, when overdue entries may enter by themselves.
pub const STAGE_MAX_MS: u64 = 60_000;
/// Longest a staged entry waits for a packet from the network while the network is not quiet
/// (traffic flows, but nobody routes through this mix): then it enters anyway. An entry with
/// a shorter delay waits at most three times its delay (so an own layer without delay waits
/// for nothing).
pub const STAGE_HOLD_MAX_MS: u64 = 180_000;

/// Mix policy caps.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub max_held: usize,
    pub max_crowd: u64,
    pub max_delay_secs: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_held: 100_000,
            max_crowd: 1000,
            max_delay_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("crowd {0} is over this mix's maximum")]
    CrowdTooLarge(u64),
    #[error("delay {0}s is over this mix's maximum")]
    DelayTooLong(u64),
    #[error("pool is full")]
    Full,
    #[error("already held")]
    Duplicate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A staged entry's Tau values and how long it waits for a network entry (unix ms).
#[derive(Debug, Clone, Copy)]
struct Staged {
    crowd: u64,
    due: u64,
    /// Overdue from then: enters by itself if the network is quiet.
    until: u64,
    /// Enters by itself from then, quiet network or not.
    hold_until: u64,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    crowd_at: u64,
    crowd: u64,
    due: u64,
    counted: bool,
}

pub struct TauPool {
    table: Table<PoolTable>,
    limits: PoolLimits,
    counter: u64,
    waiting_crowd: BTreeMap<(u64, PacketId), ()>,
    waiting_time: BTreeMap<(u64, PacketId), ()>,
    held: HashMap<PacketId, Meta>,
    /// Staged own entries: id → their wait, and the earliest time one is overdue.
    staged: BTreeMap<PacketId, Staged>,
    staged_until: Option<u64>,
}

impl TauPool {
    /// Open the pool stored in `store`, rebuilding the in-memory indexes.
    pub fn open(store: &Store, limits: PoolLimits) -> Result<TauPool, PoolError> {
        let table = store.table::<PoolTable>()?;
        let counter = match table.get(&PoolKey::Counter)? {
            Some(PoolValue::Counter(n)) => n,
            _ => 0,
        };
        let mut pool = TauPool {
            table,
            limits,
            counter,
            waiting_crowd: BTreeMap::new(),
            waiting_time: BTreeMap::new(),
            held: HashMap::new(),
            staged: BTreeMap::new(),
            staged_until: None,
        };
        let mut found = Vec::new();
        for item in pool.table.iter() {
            if let (PoolKey::Entry(id), PoolValue::Entry(r)) = item? {
                found.push((id, r.entry, r.crowd_field, r.due));
            }
        }
        for (id, entry, stored_crowd, due) in found {
            if entry == STAGED {
                // Staged before a restart: still due when they were, and waiting for a network
                // entry at most STAGE_MAX_MS from now.
                pool.note_staged(id, stored_crowd & !UNCOUNTED, due, crate::clock::unix_ms());
                continue;
            }
            let crowd = stored_crowd & !UNCOUNTED;
            pool.index(
                id,
                Meta {
                    crowd_at: entry.saturating_add(crowd),
                    crowd,
                    due,
                    counted: stored_crowd & UNCOUNTED == 0,
                },
            );
        }
        pool.promote();
        Ok(pool)
    }

    fn index(&mut self, id: PacketId, m: Meta) {
        self.held.insert(id, m);
        self.waiting_crowd.insert((m.crowd_at, id), ());
    }

    /// Move everything whose crowd is met to the time index.
    fn promote(&mut self) {
        while let Some((&(at, id), _)) = self.waiting_crowd.first_key_value() {
            if at > self.counter {
                break;
            }
            self.waiting_crowd.remove(&(at, id));
            if let Some(m) = self.held.get(&id) {
                self.waiting_time.insert((m.due, id), ());
            }
        }
    }

    /// Held packets, staged ones included.
    pub fn len(&self) -> usize {
        self.held.len() + self.staged.len()
    }

    /// Staged own entries waiting to enter.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// When (unix ms) the staged entries enter if no network entry comes first; `None`
    /// when none is staged.
    pub fn staged_until(&self) -> Option<u64> {
        self.staged_until
    }

    /// Staged entries whose wait for a network entry is over at `now_ms`.
    pub fn staged_overdue(&self, now_ms: u64) -> usize {
        self.staged.values().filter(|s| s.until <= now_ms).count()
    }

    /// How many staged entries may enter without a network entry at `now_ms`: the overdue
    /// ones when the network is `quiet`, or when one of them has waited its longest hold;
    /// else none (see the module comment).
    pub fn may_enter_alone(&self, now_ms: u64, quiet: bool) -> usize {
        let held_out = self.staged.values().any(|s| s.hold_until <= now_ms);
        if quiet || held_out {
            self.staged_overdue(now_ms)
        } else {
            0
        }
    }

    /// Keep a staged entry due at `due` (unix ms): it waits for a network entry until its
    /// due time, at most [`STAGE_MAX_MS`] from `now_ms`, while the network is quiet; while it
    /// is not, three times its delay, at most [`STAGE_HOLD_MAX_MS`].
    fn note_staged(&mut self, id: PacketId, crowd: u64, due: u64, now_ms: u64) {
        let until = due.min(now_ms.saturating_add(STAGE_MAX_MS));
        // The hold at most triples the wait the sender asked for: a short delay stays short.
        let delay = due.saturating_sub(now_ms);
        let hold_until = now_ms.saturating_add(STAGE_HOLD_MAX_MS.min(delay.saturating_mul(3)));
        self.staged.insert(
            id,
            Staged {
                crowd,
                due,
                until,
                hold_until,
            },
        );
        self.staged_until = Some(self.staged_until.map_or(until, |u| u.min(until)));
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.staged.is_empty()
    }

    /// The largest crowd among held packets (0 when empty). O(n).
    pub fn largest_crowd(&self) -> u64 {
        self.held.values().map(|m| m.crowd).max().unwrap_or(0)
    }

    /// Entries ever admitted (the crowd counter).
    pub fn entries(&self) -> u64 {
        self.counter
    }

    /// Admit an outgoing packet with its Tau values at `now_ms` (unix milliseconds, so a delay
    /// is never cut short by rounding). The caller makes it durable
    /// with [`Store::durable`] before acknowledging anything.
    pub fn insert(
        &mut self,
        outgoing: &Packet,
        crowd: u64,
        delay_secs: u64,
        now_ms: u64,
    ) -> Result<(), PoolError> {
        self.insert_with(outgoing, crowd, delay_secs, now_ms, true)
    }

    /// Admit a packet that waits for its own Tau values like any other but does **not** count
    /// toward anyone's crowd (the mix does this with strangers' packets while it suspects an
    /// (n-1) attack; see [`super::loops`]). Its crowd is counted from the current entry.
    pub fn insert_uncounted(
        &mut self,
        outgoing: &Packet,
        crowd: u64,
        delay_secs: u64,
        now_ms: u64,
    ) -> Result<(), PoolError> {
        self.insert_with(outgoing, crowd, delay_secs, now_ms, false)
    }

    /// [`TauPool::insert`] when `counts`, else [`TauPool::insert_uncounted`].
    pub fn insert_with(
        &mut self,
        outgoing: &Packet,
        crowd: u64,
        delay_secs: u64,
        now_ms: u64,
        counts: bool,
    ) -> Result<(), PoolError> {
        let id = self.check_new(outgoing, crowd, delay_secs)?;
        let due = now_ms.saturating_add(delay_secs.saturating_mul(1000));
        self.enter(id, outgoing.clone(), crowd, due, counts)?;
        self.promote();
        Ok(())
    }

    /// Write and index one entry. A counted message is entry number `counter + 1` and needs
    /// `crowd` entries after it; an uncounted one takes the current number without advancing
    /// it.
    fn enter(
        &mut self,
        id: PacketId,
        packet: Packet,
        crowd: u64,
        due: u64,
        counts: bool,
    ) -> Result<(), PoolError> {
        let entry = self.counter + u64::from(counts);
        self.table.insert(
            &PoolKey::Entry(id),
            &PoolValue::Entry(Record {
                entry,
                crowd_field: if counts { crowd } else { crowd | UNCOUNTED },
                due,
                packet,
            }),
        )?;
        if counts {
            self.counter = entry;
            self.table
                .insert(&PoolKey::Counter, &PoolValue::Counter(self.counter))?;
        }
        self.index(
            id,
            Meta {
                crowd_at: entry.saturating_add(crowd),
                crowd,
                due,
                counted: counts,
            },
        );
        Ok(())
    }

    /// The checks every new entry passes (staged or not); its id.
    fn check_new(
        &self,
        outgoing: &Packet,
        crowd: u64,
        delay_secs: u64,
    ) -> Result<PacketId, PoolError> {
        if crowd > self.limits.max_crowd {
            return Err(PoolError::CrowdTooLarge(crowd));
        }
        if delay_secs > self.limits.max_delay_secs {
            return Err(PoolError::DelayTooLong(delay_secs));
        }
        if self.len() >= self.limits.max_held {
            return Err(PoolError::Full);
        }
        let id = outgoing.id();
        if self.held.contains_key(&id) || self.staged.contains_key(&id) {
            return Err(PoolError::Duplicate);
        }
        Ok(id)
    }

    /// Stage one of the node's own packets (see the module comment): kept on disk, entering
    /// only with the next network entry ([`TauPool::enter_staged`]). It counts when it enters.
    pub fn stage(
        &mut self,
        outgoing: &Packet,
        crowd: u64,
        delay_secs: u64,
        now_ms: u64,
    ) -> Result<(), PoolError> {
        let id = self.check_new(outgoing, crowd, delay_secs)?;
        let due = now_ms.saturating_add(delay_secs.saturating_mul(1000));
        self.table.insert(
            &PoolKey::Entry(id),
            &PoolValue::Entry(Record {
                entry: STAGED,
                crowd_field: crowd,
                due,
                packet: outgoing.clone(),
            }),
        )?;
        self.note_staged(id, crowd, due, now_ms);
        Ok(())
    }

    /// Let up to `max` staged entries enter now, counted, those whose wait ends first first
    /// (ties in random order); each stays due its delay after it was staged (so staging adds
    /// no wait beyond the delay asked). Returns how many entered.
    pub fn enter_staged(
        &mut self,
        max: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<usize, PoolError> {
        if self.staged.is_empty() || max == 0 {
            return Ok(0);
        }
        let mut list: Vec<(PacketId, Staged)> =
            self.staged.iter().map(|(id, v)| (*id, *v)).collect();
        list.shuffle(rng);
        list.sort_by_key(|(_, v)| v.until);
        list.truncate(max);
        for (id, _) in &list {
            self.staged.remove(id);
        }
        self.staged_until = self.staged.values().map(|v| v.until).min();
        let n = list.len();
        for (id, s) in list {
            let Some(PoolValue::Entry(r)) = self.table.get(&PoolKey::Entry(id))? else {
                continue;
            };
            self.enter(id, r.packet, s.crowd, s.due, true)?;
        }
        self.promote();
        Ok(n)
    }

    /// Packets to release at `now_ms`, shuffled. A message is *eligible* when its crowd and delay
    /// are met; eligible messages leave only together, in a batch in which each of them has at
    /// least its crowd of *counted* companions (the largest such set; the rest wait for more).
    /// Uncounted entries leave with a batch but never make one up. They stay held (and on disk)
    /// until [`TauPool::remove`].
    pub fn due(&mut self, now_ms: u64, rng: &mut impl rand::Rng) -> Result<Vec<Packet>, PoolError> {
        self.due_except(now_ms, rng, &std::collections::HashSet::new())
    }

    /// [`TauPool::due`] among the entries not in `leaving` (released already, still held
    /// until they are published): those neither leave again nor make up a new batch's crowd.
    pub fn due_except(
        &mut self,
        now_ms: u64,
        rng: &mut impl rand::Rng,
        leaving: &std::collections::HashSet<PacketId>,
    ) -> Result<Vec<Packet>, PoolError> {
        self.promote();
        // Member i needs `crowd_i + counted_i <= counted members`: sorted by that need, the
        // neediest member that fails can be satisfied by no subset (removing members never adds
        // counted ones), so dropping from the top gives the largest valid batch.
        let mut eligible: Vec<(u64, bool, PacketId)> = self
            .waiting_time
            .range(..=(now_ms, PacketId([0xff; 32])))
            .filter(|(&(_, id), _)| !leaving.contains(&id))
            .filter_map(|(&(_, id), _)| {
                self.held
                    .get(&id)
                    .map(|m| (m.crowd.saturating_add(u64::from(m.counted)), m.counted, id))
            })
            .collect();
        eligible.sort();
        let mut counted = eligible.iter().filter(|e| e.1).count() as u64;
        while let Some(&(need, c, _)) = eligible.last() {
            if need <= counted {
                break;
            }
            eligible.pop();
            counted -= u64::from(c);
        }
        let eligible: Vec<PacketId> = eligible.into_iter().map(|(_, _, id)| id).collect();
        let mut out = Vec::with_capacity(eligible.len());
        for id in eligible {
            if let Some(PoolValue::Entry(r)) = self.table.get(&PoolKey::Entry(id))? {
                out.push(r.packet);
            }
        }
        out.shuffle(rng);
        Ok(out)
    }

    /// Forget a released packet (after it was stored durably).
    pub fn remove(&mut self, id: &PacketId) -> Result<(), PoolError> {
        if let Some(m) = self.held.remove(id) {
            self.waiting_time.remove(&(m.due, *id));
            self.waiting_crowd.remove(&(m.crowd_at, *id));
        }
        self.table.remove(&PoolKey::Entry(*id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::BODY_LEN;
    use crate::store::StoreConfig;
    use crate::tag::Tag;
    use rand::SeedableRng;

    fn pkt(i: u32) -> Packet {
        Packet {
            tag: Tag([1; 20]),
            expires: 100_000 + i,
            nonce: 0,
            body: Box::new([i as u8; BODY_LEN]),
        }
    }

    /// An empty store in a temporary folder (kept alive by the returned guard).
    fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        (dir, store)
    }

    fn ids(v: &[Packet]) -> Vec<u32> {
        let mut x: Vec<u32> = v.iter().map(|p| p.expires - 100_000).collect();
        x.sort();
        x
    }

    #[test]
    fn leaves_only_when_crowd_and_delay_are_both_met() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // Message 0 wants 3 others after it and 10 s.
        pool.insert(&pkt(0), 3, 10, 1_000_000).unwrap();
        pool.insert(&pkt(1), 0, 0, 1_001_000).unwrap();
        pool.insert(&pkt(2), 0, 0, 1_001_000).unwrap();
        assert_eq!(
            ids(&pool.due(1_100_000, &mut rng).unwrap()),
            vec![1, 2],
            "crowd of 3 not met yet"
        );
        pool.insert(&pkt(3), 0, 50, 1_002_000).unwrap();
        assert_eq!(
            ids(&pool.due(1_009_999, &mut rng).unwrap()),
            vec![1, 2],
            "crowd met, delay not"
        );
        // At 10 s message 0 is eligible, but it must leave with at least 3 companions: only 1
        // and 2 are eligible, so they go and 0 waits.
        assert_eq!(ids(&pool.due(1_010_000, &mut rng).unwrap()), vec![1, 2]);
        for i in [1, 2] {
            pool.remove(&pkt(i).id()).unwrap();
        }
        assert!(
            pool.due(1_051_999, &mut rng).unwrap().is_empty(),
            "3's delay not over"
        );
        assert_eq!(ids(&pool.due(1_052_000, &mut rng).unwrap()), vec![3]);
        pool.remove(&pkt(3).id()).unwrap();
        // Three more immediate messages make a batch of four: 0 leaves with them.
        for i in 4..7 {
            pool.insert(&pkt(i), 0, 0, 1_060_000).unwrap();
        }
        assert_eq!(
            ids(&pool.due(1_060_000, &mut rng).unwrap()),
            vec![0, 4, 5, 6]
        );
    }

    #[test]
    fn entries_already_leaving_neither_leave_again_nor_make_a_crowd() {
        let (_dir, store) = fresh_store();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // 2 wants 2 entries after it and 2 companions; 0 and 1 come after it.
        pool.insert(&pkt(2), 2, 0, 1_000_000).unwrap();
        pool.insert(&pkt(0), 0, 0, 1_000_000).unwrap();
        pool.insert(&pkt(1), 0, 0, 1_000_000).unwrap();
        assert_eq!(ids(&pool.due(1_000_000, &mut rng).unwrap()), vec![0, 1, 2]);
        // Once 0 and 1 are leaving (released, not yet published), 2 has nobody to go with.
        let leaving: std::collections::HashSet<PacketId> = [pkt(0).id(), pkt(1).id()].into();
        assert!(pool
            .due_except(1_000_000, &mut rng, &leaving)
            .unwrap()
            .is_empty());
        for i in 3..5 {
            pool.insert(&pkt(i), 0, 0, 1_000_000).unwrap();
        }
        assert_eq!(
            ids(&pool.due_except(1_000_000, &mut rng, &leaving).unwrap()),
            vec![2, 3, 4]
        );
    }

    #[tokio::test]
    async fn survives_restart_without_early_release() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
            pool.insert(&pkt(0), 2, 100, 1_000_000).unwrap();
            pool.insert(&pkt(1), 0, 5, 1_000_000).unwrap();
            store.durable().await.unwrap();
        }
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.entries(), 2);
        assert_eq!(
            ids(&pool.due(2_000_000, &mut rng).unwrap()),
            vec![1],
            "0 still needs one more entry"
        );
        pool.insert(&pkt(2), 0, 0, 2_000_000).unwrap();
        assert_eq!(ids(&pool.due(2_000_000, &mut rng).unwrap()), vec![0, 1, 2]);
    }

    #[test]
    fn caps_and_duplicates() {
        let (_dir, store) = fresh_store();
        let limits = PoolLimits {
            max_held: 2,
            max_crowd: 5,
            max_delay_secs: 60,
        };
        let mut pool = TauPool::open(&store, limits).unwrap();
        assert!(matches!(
            pool.insert(&pkt(0), 6, 0, 0),
            Err(PoolError::CrowdTooLarge(6))
        ));
        assert!(matches!(
            pool.insert(&pkt(0), 0, 61, 0),
            Err(PoolError::DelayTooLong(61))
        ));
        pool.insert(&pkt(0), 0, 0, 0).unwrap();
        assert!(matches!(
            pool.insert(&pkt(0), 0, 0, 0),
            Err(PoolError::Duplicate)
        ));
        pool.insert(&pkt(1), 0, 0, 0).unwrap();
        assert!(matches!(
            pool.insert(&pkt(2), 0, 0, 0),
            Err(PoolError::Full)
        ));
        assert_eq!(
            pool.entries(),
            2,
            "refused packets do not count toward a crowd"
        );
    }

    #[test]
    fn release_order_among_equals_is_random() {
        let (_dir, store) = fresh_store();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        for i in 0..20 {
            pool.insert(&pkt(i), 0, 0, 0).unwrap();
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a: Vec<u32> = pool
            .due(0, &mut rng)
            .unwrap()
            .iter()
            .map(|p| p.expires)
            .collect();
        let b: Vec<u32> = pool
            .due(0, &mut rng)
            .unwrap()
            .iter()
            .map(|p| p.expires)
            .collect();
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_ne!(a, sorted, "not in arrival order");
    }

    #[test]
    fn uncounted_entries_wait_but_do_not_fill_crowds() {
        let (_dir, store) = fresh_store();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // The target needs 2 entries after it; 5 uncounted strangers arrive: nothing leaves.
        pool.insert(&pkt(0), 2, 0, 1000).unwrap();
        for i in 1..=5 {
            pool.insert_uncounted(&pkt(i), 2, 0, 1000).unwrap();
        }
        assert_eq!(pool.entries(), 1);
        assert!(pool.due(2000, &mut rng).unwrap().is_empty());
        // Two counted entries (the mix's own) complete the target's and the strangers' crowds,
        // but the batch still lacks counted companions: the target has none eligible.
        pool.insert(&pkt(6), 2, 0, 1000).unwrap();
        pool.insert(&pkt(7), 2, 0, 1000).unwrap();
        assert!(pool.due(2000, &mut rng).unwrap().is_empty());
        // Two more counted entries make pkt 6 and 7 eligible: now the target has 2 counted
        // companions and everything eligible leaves together.
        pool.insert(&pkt(8), 2, 0, 1000).unwrap();
        pool.insert(&pkt(9), 2, 0, 1000).unwrap();
        // Across a restart, uncounted entries keep their place and their mark.
        drop(pool);
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        assert_eq!(pool.entries(), 5);
        let out = pool.due(2000, &mut rng).unwrap();
        let mut got: Vec<u8> = out.iter().map(|p| p.body[0]).collect();
        got.sort();
        assert_eq!(
            got,
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            "target, 5 strangers, 2 counted"
        );
    }

    #[test]
    fn staged_own_entries_enter_with_the_next_network_entry_and_survive_a_restart() {
        let (_dir, store) = fresh_store();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        // Two own packets staged: held, but no entry yet, nothing can leave, however late.
        pool.stage(&pkt(0), 0, 10, 1_000_000).unwrap();
        pool.stage(&pkt(1), 1, 40, 1_000_000).unwrap();
        assert!(matches!(
            pool.stage(&pkt(0), 0, 10, 1_000_000),
            Err(PoolError::Duplicate)
        ));
        assert_eq!((pool.len(), pool.staged(), pool.entries()), (2, 2, 0));
        assert!(pool.due(9_000_000, &mut rng).unwrap().is_empty());
        // The first one's delay (10 s, under STAGE_MAX_MS) bounds the wait for a network entry.
        assert_eq!(pool.staged_until(), Some(1_010_000));
        // Staged entries are on disk: a restart keeps them staged (waiting again from then).
        drop(pool);
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        assert_eq!((pool.len(), pool.staged(), pool.entries()), (2, 2, 0));
        assert!(pool.staged_until().is_some());
        // A network entry at t = 1,005 s: one staged entry enters with it (the one whose
        // wait ends first: pkt 0), counted, still due 10 s after it was staged.
        pool.insert(&pkt(2), 0, 0, 1_005_000).unwrap();
        assert_eq!(pool.enter_staged(1, &mut rng).unwrap(), 1);
        assert_eq!((pool.len(), pool.staged(), pool.entries()), (3, 1, 2));
        assert_eq!(pool.staged_overdue(1_005_000), 0);
        assert_eq!(pool.staged_until(), Some(1_040_000), "pkt 1: its due time");
        assert_eq!(ids(&pool.due(1_005_000, &mut rng).unwrap()), vec![2]);
        pool.remove(&pkt(2).id()).unwrap();
        assert_eq!(ids(&pool.due(1_010_000, &mut rng).unwrap()), vec![0]);
        pool.remove(&pkt(0).id()).unwrap();
        // No network entry comes: at its due time pkt 1 is overdue and enters by itself; it
        // then waits for its crowd (one entry after it).
        assert_eq!(pool.staged_overdue(1_039_999), 0);
        assert_eq!(pool.staged_overdue(1_040_000), 1);
        assert_eq!(pool.enter_staged(1, &mut rng).unwrap(), 1);
        assert_eq!((pool.staged(), pool.entries()), (0, 3));
        assert_eq!(pool.staged_until(), None);
        assert_eq!(pool.enter_staged(1, &mut rng).unwrap(), 0);
        assert!(pool.due(1_040_000, &mut rng).unwrap().is_empty());
        pool.insert(&pkt(3), 0, 0, 1_041_000).unwrap();
        assert_eq!(ids(&pool.due(1_041_000, &mut rng).unwrap()), vec![1, 3]);
        // A long own delay waits at most STAGE_MAX_MS for a network entry.
        pool.stage(&pkt(4), 0, 3600, 3_000_000).unwrap();
        assert_eq!(pool.staged_until(), Some(3_000_000 + STAGE_MAX_MS));
    }

    #[test]
    fn overdue_entries_enter_alone_only_on_a_quiet_network_or_after_the_longest_hold() {
        let (_dir, store) = fresh_store();
        let mut pool = TauPool::open(&store, PoolLimits::default()).unwrap();
        let t0 = 5_000_000;
        // Two own entries with 90 s and 120 s delays, one with none.
        pool.stage(&pkt(0), 0, 90, t0).unwrap();
        pool.stage(&pkt(1), 0, 120, t0).unwrap();
        assert_eq!(
            pool.may_enter_alone(t0 + 59_999, true),
            0,
            "nothing overdue"
        );
        // Overdue after STAGE_MAX_MS (60 s): on a quiet network they may enter by
        // themselves; on a busy one they wait for a network entry...
        assert_eq!(pool.may_enter_alone(t0 + STAGE_MAX_MS, true), 2);
        assert_eq!(pool.may_enter_alone(t0 + STAGE_MAX_MS, false), 0);
        assert_eq!(pool.may_enter_alone(t0 + STAGE_HOLD_MAX_MS - 1, false), 0);
        // ...until one has waited STAGE_HOLD_MAX_MS (under three times its delay): then
        // every overdue one goes.
        assert_eq!(pool.may_enter_alone(t0 + STAGE_HOLD_MAX_MS, false), 2);
        // An entry without delay waits for nothing, busy network or not.
        pool.stage(&pkt(2), 0, 0, t0 + 1000).unwrap();
        assert_eq!(pool.may_enter_alone(t0 + 1000, false), 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let n = pool.may_enter_alone(t0 + 1000, false);
        assert_eq!(pool.enter_staged(n, &mut rng).unwrap(), 1);
        assert_eq!(ids(&pool.due(t0 + 1000, &mut rng).unwrap()), vec![2]);
        assert_eq!(pool.staged(), 2, "the two with delays still wait");
        // A short delay is held at most three times over: 10 s → overdue at 10 s, alone on a
        // busy network from 30 s.
        pool.stage(&pkt(3), 0, 10, t0 + 2000).unwrap();
        assert_eq!(pool.may_enter_alone(t0 + 12_000, true), 1);
        assert_eq!(pool.may_enter_alone(t0 + 31_999, false), 0);
        assert_eq!(pool.may_enter_alone(t0 + 32_000, false), 1);
    }
}
