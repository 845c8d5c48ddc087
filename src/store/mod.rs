//! The packet store: every packet this node holds.
//!
//! The packet bytes live in append-only **segment files**, one per expiry hour
//! ([`segments`]): they are the truth. Which packets are held, and in which orders, is the
//! **index**: in memory ([`index`], about 100 bytes a packet), loaded at start from a snapshot
//! and a journal of changes since ([`journal`], 81 bytes a packet on disk), and rebuildable
//! from the segments at any time (ids recomputed from the bytes). Every read checks that the
//! bytes hash to the id.
//!
//! sled keeps only small things: `meta` (`format_version`, the admission floor's rolling
//! part) and the side tables of other components ([`table`]: mix pool, replay cache, loop
//! ledger, postage credit), which are small, keyed, updated in place and need no ordering
//! beyond what sled gives. The packet index left sled in format 6: four sled trees cost
//! 1.8 KB on disk per packet and most of the insert time (issue #13).
//!
//! Writes: an insert appends the bytes to their segment, then an `add` record to the journal,
//! then updates the index in memory; an eviction or an expiry sweep journals a `remove` (the
//! sweeper also deletes whole hour files; a loader drops what has expired by its own clock).
//! When the journal holds more records than the store has packets (and at least 65,536), it
//! is folded into a new snapshot. Nothing is durable
//! until [`Store::durable`] returns: it syncs the segment files, then the journal, then sled,
//! on tokio's blocking pool, and concurrent callers share one sync (group commit). A crash
//! loses only what was never acknowledged: a torn journal tail is cut off at start, and bytes
//! appended to a segment without their journal record are never read.
//!
//! Quota: at most `max_packets` packets. When full, expired packets are swept first; then, like
//! a mempool, the packet with the lowest **score** (work per TTL, [`crate::pow::score`]) is
//! evicted for a new one that scores higher, and a new one that does not is refused
//! ([`Inserted::Refused`]).
//!
//! Before the quota, the **floor** ([`crate::admission`]): above half full a packet must score
//! at least the floor, which rises with the fill and with each eviction and decays back with a
//! half-life; its rolling part is kept in `meta`, so a restart keeps it.

use crate::admission::{FloorRules, Rolling};
use crate::packet::{Packet, PacketId, PACKET_LEN};
use crate::sync::Locked;
use crate::tag::Tag;
use index::{Held, Index};
use journal::{Journal, JournalError, Kind};
use segments::{Location, Segments};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub mod index;
pub mod journal;
pub mod segments;
pub mod table;

pub use table::{Codec, Table, TableSpec};

/// Version of the on-disk layout described above.
/// 6: the packet index in `index.snap` + `index.log` instead of sled trees; a version-5
/// store (same segments, index in sled) is converted at open by rebuilding the index from
/// its segments. Version 4 held packets of layout 1, which this build would misread: refused.
pub const FORMAT_VERSION: u32 = 6;
/// Default quota: 1,048,576 packets (1 GiB of packet data).
pub const DEFAULT_MAX_PACKETS: u64 = 1 << 20;
/// The sled trees of format 5, dropped when a store is converted.
const OLD_TREES: [&str; 4] = ["packets", "by_tag", "by_expiry", "by_value"];
/// A journal is folded into a new snapshot once it holds more records than this and than the
/// store holds packets (so rewriting costs O(1) a change, amortised).
const COMPACT_AFTER: u64 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("store is full ({max} packets) and holds no expired packet to make room")]
    Full { max: u64 },
    #[error(
        "store format version {found} is not supported (this build reads version {FORMAT_VERSION}; version 4 holds packets of the layout before proof of work: move the store folder aside and let the node catch up from its peers)"
    )]
    FormatVersion { found: u32 },
    #[error("segment file: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt store entry: {0}")]
    Corrupt(&'static str),
    #[error("the packet index is damaged and could not be rebuilt: {0}")]
    Damaged(String),
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io(e) => StoreError::Io(e),
            JournalError::Damaged { .. } => StoreError::Damaged(e.to_string()),
        }
    }
}

/// Result of inserting one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Newly stored with this arrival sequence number.
    New(u64),
    /// Already held; nothing changed.
    Duplicate,
    /// Refused: this packet's score is below the floor, or the store is full and it does not
    /// beat the cheapest one held (then `floor` is that one's score + 1).
    Refused { score: u64, floor: u64 },
}

/// What reading a tag found.
#[derive(Debug, Default)]
pub struct TagRead {
    /// Readable, unexpired packets with their arrival seq.
    pub packets: Vec<(u64, Packet)>,
    /// One entry per packet of the tag whose bytes are damaged: the segment file's name.
    pub damaged: Vec<String>,
    /// The limit cut the read short.
    pub more: bool,
}

enum Lookup {
    Found(u64, Packet),
    Missing,
    Damaged(Location),
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub max_packets: u64,
    /// sled page cache in bytes (sled holds only the side tables now).
    pub cache_bytes: u64,
    /// The network's base work ([`crate::pow::base_work`]): the floor at rest.
    pub base_work: u64,
    /// Rebuild the index from the segment files at open (`bump node --reindex`).
    pub reindex: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_packets: DEFAULT_MAX_PACKETS,
            cache_bytes: 16 << 20,
            base_work: crate::pow::BASE_WORK,
            reindex: false,
        }
    }
}

pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    segments: Arc<Segments>,
    /// The packet index; every change to it, its journal and the segments happens under this
    /// lock (so the quota count stays exact). Never held across an `.await`.
    index: Mutex<Index>,
    journal: Arc<Journal>,
    /// Mirrors `index.len()`, readable without the lock.
    count: AtomicU64,
    max_packets: u64,
    meta: sled::Tree,
    rules: FloorRules,
    /// The rolling part of the floor (changed under the index lock; persisted in `meta`).
    rolling: Mutex<Rolling>,
    /// Number of writes made so far (a generation counter for group commit).
    written: Arc<AtomicU64>,
    /// Highest generation known to be on disk.
    flushed: watch::Sender<u64>,
    flush_lock: tokio::sync::Mutex<()>,
    /// Records found damaged (by rebuild, at load or by reads): hour → byte offsets.
    damaged: Mutex<BTreeMap<u32, BTreeSet<u64>>>,
    /// Why and how the index was rebuilt at open, if it was.
    rebuilt: Mutex<Option<String>>,
}

/// What opening sled found.
enum IndexOpen {
    Ready(sled::Db, Opened),
    /// Unreadable (sled reports corruption or panics, our own entries do not decode).
    Damaged(String),
    /// Any other failure (locked, permissions, another format version): reported as is.
    Failed(StoreError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opened {
    Existing,
    Fresh,
    /// A format-5 store: its sled packet trees were dropped, the index must be rebuilt.
    Converted,
}

fn open_index(path: &Path, cfg: &StoreConfig) -> IndexOpen {
    let opened = std::panic::catch_unwind(|| {
        sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(cfg.cache_bytes)
            .open()
    });
    let db = match opened {
        Ok(Ok(db)) => db,
        // Unsupported: sled cannot read its own config or format (seen with a garbled `conf`).
        Ok(Err(
            e @ (sled::Error::Corruption { .. }
            | sled::Error::ReportableBug(_)
            | sled::Error::Unsupported(_)),
        )) => return IndexOpen::Damaged(e.to_string()),
        Ok(Err(e)) => return IndexOpen::Failed(e.into()),
        Err(_) => return IndexOpen::Damaged("sled panicked while opening it".into()),
    };
    let check = || -> Result<IndexOpen, StoreError> {
        let meta = db.open_tree("meta")?;
        match meta.get("format_version")? {
            Some(v) => {
                let Ok(b) = <[u8; 4]>::try_from(v.as_ref()) else {
                    return Ok(IndexOpen::Damaged("format_version does not decode".into()));
                };
                let found = u32::from_be_bytes(b);
                if found == 5 {
                    for t in OLD_TREES {
                        db.drop_tree(t)?;
                    }
                    meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
                    db.flush()?;
                    return Ok(IndexOpen::Ready(db.clone(), Opened::Converted));
                }
                if found != FORMAT_VERSION {
                    return Err(StoreError::FormatVersion { found });
                }
                Ok(IndexOpen::Ready(db.clone(), Opened::Existing))
            }
            None => {
                meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
                Ok(IndexOpen::Ready(db.clone(), Opened::Fresh))
            }
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(Ok(r)) => r,
        Ok(Err(StoreError::Sled(
            e @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)),
        ))) => IndexOpen::Damaged(e.to_string()),
        Ok(Err(e)) => IndexOpen::Failed(e),
        Err(_) => IndexOpen::Damaged("sled panicked while reading it".into()),
    }
}

/// Move everything of the store directory but the segments into `index-damaged-<unix>/`.
fn move_index_aside(path: &Path) -> Result<std::path::PathBuf, StoreError> {
    let aside = path.join(format!("index-damaged-{}", crate::unix_now()));
    std::fs::create_dir_all(&aside)?;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let keep = name == "segments" || name.to_string_lossy().starts_with("index-damaged-");
        if !keep {
            std::fs::rename(entry.path(), aside.join(&name))?;
        }
    }
    Ok(aside)
}

/// Move the index files (snapshot, journal) aside after they were found damaged.
fn move_journal_aside(path: &Path) -> Result<std::path::PathBuf, StoreError> {
    let aside = path.join(format!("index-damaged-{}", crate::unix_now()));
    std::fs::create_dir_all(&aside)?;
    for name in [journal::SNAPSHOT, journal::LOG] {
        let p = path.join(name);
        if p.exists() {
            std::fs::rename(&p, aside.join(name))?;
        }
    }
    Ok(aside)
}

fn location(expires: u32, record: u32) -> Location {
    Location {
        hour: expires / segments::SEGMENT_SECS,
        offset: record as u64 * PACKET_LEN as u64,
    }
}

/// The index as loaded from snapshot + journal.
struct Loaded {
    index: Index,
    /// `Some` when a journal exists: its length that checks (a torn tail is cut here).
    log_len: Option<u64>,
    in_log: u64,
    max_seq: u64,
    /// Neither file exists.
    missing: bool,
}

fn apply(index: &mut Index, kind: Kind, h: Held) {
    match kind {
        Kind::Add => {
            if let Some((seq, _, _)) = index.get(&h.id) {
                if seq == h.seq {
                    return;
                }
                index.remove(&h.id);
            }
            // Bytes not read in this run: the first read checks them against the id.
            index.insert(h, false);
        }
        Kind::Remove => {
            if index
                .get(&h.id)
                .is_some_and(|(_, e, r)| (e, r) == (h.expires, h.record))
            {
                index.remove(&h.id);
            }
        }
    }
}

fn load(path: &Path) -> Result<Loaded, JournalError> {
    let mut index = Index::new();
    let snap = journal::replay(
        &path.join(journal::SNAPSHOT),
        journal::SNAPSHOT,
        false,
        |k, h| apply(&mut index, k, h),
    )?;
    let log = journal::replay(&path.join(journal::LOG), journal::LOG, true, |k, h| {
        apply(&mut index, k, h)
    })?;
    if log.is_some_and(|l| l.torn) {
        tracing::warn!("the index journal had a torn tail (a crash while writing); cut off");
    }
    let max_seq = [snap.map(|s| s.max_seq), log.map(|l| l.max_seq)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
    Ok(Loaded {
        index,
        log_len: log.map(|l| l.good_len),
        in_log: log.map(|l| l.records).unwrap_or(0),
        max_seq,
        missing: snap.is_none() && log.is_none(),
    })
}

impl Store {
    /// Open (or create) the store in directory `path`. If another handle still holds sled's
    /// lock (a node restarted in-process whose old tasks are still winding down), retry for up
    /// to 3 s before reporting it.
    pub fn open(path: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match Self::open_once(path, cfg) {
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let segments = Arc::new(Segments::open(&path.join("segments"))?);
        let has_segments = !segments.hours()?.is_empty();
        // The segments are the truth, the index a cache: an index that is missing (while
        // segments exist), damaged, or that the operator asks to rebuild is rebuilt from them.
        let (db, mut rebuild) = match open_index(path, cfg) {
            IndexOpen::Ready(db, opened) => {
                let why = if cfg.reindex {
                    Some("asked for (--reindex)".to_string())
                } else if opened == Opened::Converted {
                    Some(
                        "the store format changed (version 5 to 6: the index left sled)"
                            .to_string(),
                    )
                } else if opened == Opened::Fresh && has_segments {
                    Some("the index is missing but segment files exist".to_string())
                } else {
                    None
                };
                (db, why)
            }
            IndexOpen::Damaged(what) => {
                let aside = move_index_aside(path)?;
                tracing::error!(
                    "the store database is damaged ({what}); moved it to {} and rebuilding the index from the segment files",
                    aside.display()
                );
                match open_index(path, cfg) {
                    IndexOpen::Ready(db, _) => (
                        db,
                        Some(format!(
                            "the index was damaged ({what}); the damaged copy is in {}",
                            aside.display()
                        )),
                    ),
                    IndexOpen::Damaged(what) => return Err(StoreError::Damaged(what)),
                    IndexOpen::Failed(e) => return Err(e),
                }
            }
            IndexOpen::Failed(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let loaded = if rebuild.is_some() {
            None
        } else {
            match load(path) {
                Ok(l) if l.missing && has_segments => {
                    rebuild = Some("the index is missing but segment files exist".to_string());
                    None
                }
                Ok(l) => Some(l),
                Err(JournalError::Io(e)) => return Err(e.into()),
                Err(e @ JournalError::Damaged { .. }) => {
                    let aside = move_journal_aside(path)?;
                    tracing::error!(
                        "the packet index is damaged ({e}); moved it to {} and rebuilding it from the segment files",
                        aside.display()
                    );
                    rebuild = Some(format!(
                        "the index was damaged ({e}); the damaged copy is in {}",
                        aside.display()
                    ));
                    None
                }
            }
        };
        if rebuild.is_some() {
            for name in [journal::SNAPSHOT, journal::LOG] {
                let p = path.join(name);
                if p.exists() {
                    std::fs::remove_file(p)?;
                }
            }
        }
        let (index, log_len, in_log, max_seq) = match loaded {
            Some(l) => (l.index, l.log_len, l.in_log, l.max_seq),
            None => (Index::new(), None, 0, 0),
        };
        let journal = Arc::new(Journal::open(path, log_len, max_seq, in_log)?);
        let meta = db.open_tree("meta")?;
        let rules = FloorRules {
            base: cfg.base_work,
            max_packets: cfg.max_packets,
        };
        let rolling = match meta.get("floor")?.and_then(|v| Rolling::decode(&v)) {
            Some(r) => r,
            None => rules.at_rest(crate::unix_now()),
        };
        if rolling.value > rules.base {
            tracing::info!(
                floor = rolling.value,
                since = rolling.at,
                "admission floor restored"
            );
        }
        let count = index.len() as u64;
        let store = Store {
            meta,
            rules,
            rolling: Mutex::new(rolling),
            db,
            dir: path.to_path_buf(),
            segments,
            index: Mutex::new(index),
            journal,
            count: AtomicU64::new(count),
            max_packets: cfg.max_packets,
            written: Arc::new(AtomicU64::new(0)),
            flushed: watch::Sender::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            damaged: Mutex::new(BTreeMap::new()),
            rebuilt: Mutex::new(None),
        };
        if let Some(why) = rebuild {
            store.rebuild(&why, max_seq)?;
        } else {
            store.check_loaded()?;
            tracing::debug!(
                packets = store.len(),
                journal = in_log,
                "packet index loaded in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(store)
    }

    /// After loading: drop what expired while the node was down, and report (and drop)
    /// entries whose segment file is missing or too short to hold them.
    fn check_loaded(&self) -> Result<(), StoreError> {
        let now = crate::unix_now();
        let mut index = self.index.locked();
        index.sweep(now);
        let mut lens: BTreeMap<u32, u64> = BTreeMap::new();
        for hour in self.segments.hours()? {
            lens.insert(hour, self.segments.len_of(hour)?);
        }
        let lost = index.remove_where(|expires, record| {
            let loc = location(expires, record);
            lens.get(&loc.hour)
                .is_none_or(|&len| loc.offset + PACKET_LEN as u64 > len)
        });
        for h in &lost {
            self.note_damaged(location(h.expires, h.record));
        }
        if !lost.is_empty() {
            tracing::error!(
                packets = lost.len(),
                "the index names packets whose segment file is missing or too short; they are lost (see `bump status`)"
            );
        }
        self.count.store(index.len() as u64, Ordering::Relaxed);
        self.maybe_compact(&index)?;
        Ok(())
    }

    /// Fold the journal into a new snapshot when it has grown past the store.
    fn maybe_compact(&self, index: &Index) -> Result<(), StoreError> {
        if self.journal.in_log() > COMPACT_AFTER.max(index.len() as u64) {
            self.compact(index)?;
        }
        Ok(())
    }

    fn compact(&self, index: &Index) -> Result<(), StoreError> {
        let t = std::time::Instant::now();
        // The snapshot must never name bytes that are not on disk yet.
        self.segments.sync()?;
        self.journal
            .snapshot(index.max_seq(), |w| index.for_each(w))?;
        tracing::debug!(
            packets = index.len(),
            "index snapshot written in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Another component's typed table in the same database (sled allows one process per
    /// database), e.g. the mix pool and replay cache. Its writes are covered by
    /// [`Store::durable`].
    pub fn table<S: TableSpec>(&self) -> Result<Table<S>, StoreError> {
        let tree = self.db.open_tree(format!("ext/{}", S::NAME))?;
        Ok(Table::new(tree, self.written.clone()))
    }

    /// A number that changes whenever packets may have been added or removed (writes and
    /// sweeps count), for caches of the store's contents.
    pub fn generation(&self) -> u64 {
        self.written.load(Ordering::SeqCst) ^ self.len().rotate_left(32)
    }

    /// Number of packets held.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_packets(&self) -> u64 {
        self.max_packets
    }

    /// Bytes used on disk: sled, the index files and the segment files.
    pub fn size_on_disk(&self) -> u64 {
        let file = |n: &str| {
            std::fs::metadata(self.dir.join(n))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        self.db.size_on_disk().unwrap_or(0)
            + file(journal::SNAPSHOT)
            + file(journal::LOG)
            + self.segments.size_on_disk()
    }

    pub fn contains(&self, id: &PacketId) -> Result<bool, StoreError> {
        Ok(self.index.locked().contains(id))
    }

    /// Run `f` with a membership test that takes the index lock once for all its calls (a
    /// lock per id, thousands per batch, would contend with the writer of each batch).
    /// Keep `f` short: inserts wait while it runs.
    pub fn with_membership<R>(&self, f: impl FnOnce(&dyn Fn(&PacketId) -> bool) -> R) -> R {
        let index = self.index.locked();
        f(&|id| index.contains(id))
    }

    /// Insert one packet (not yet durable: await [`Store::durable`] before acknowledging).
    /// `now` is used only to sweep expired packets when the store is full.
    pub fn insert(&self, packet: &Packet, now: u32) -> Result<Inserted, StoreError> {
        self.insert_many(std::slice::from_ref(packet), now)
            .map(|mut v| v.remove(0))
    }

    /// Insert several packets under one lock. Stops at the first error; packets before it stay
    /// inserted.
    pub fn insert_many(&self, packets: &[Packet], now: u32) -> Result<Vec<Inserted>, StoreError> {
        let identified: Vec<(PacketId, &Packet)> = packets.iter().map(|p| (p.id(), p)).collect();
        self.insert_identified(&identified, now)
    }

    /// [`Store::insert_many`] for packets whose ids the caller computed from their bytes
    /// (admission did, to check the work): each is hashed once on its way in.
    pub fn insert_identified(
        &self,
        packets: &[(PacketId, &Packet)],
        now: u32,
    ) -> Result<Vec<Inserted>, StoreError> {
        let out = {
            let mut index = self.index.locked();
            // Count a write generation even on error: what went in before it must be flushable.
            self.written.fetch_add(1, Ordering::SeqCst);
            let out = packets
                .iter()
                .map(|&(id, p)| {
                    debug_assert_eq!(id, p.id());
                    self.insert_at(&mut index, p, id, None, now)
                })
                .collect::<Result<Vec<_>, _>>();
            self.count.store(index.len() as u64, Ordering::Relaxed);
            // A journal far past the store (a long run without sweeps) is folded in here too.
            if self.journal.in_log() > 4 * COMPACT_AFTER.max(index.len() as u64) {
                self.compact(&index)?;
            }
            out
        };
        // Full buffers go to the files with the index free for lookups meanwhile. A failed
        // write keeps its bytes in memory; the next sync tries again and reports it.
        if let Err(e) = self.segments.write_out(segments::WRITE_BUFFER) {
            tracing::warn!("could not write packets to a segment file (the sync retries): {e}");
        }
        out
    }

    /// Index a packet: appended to its segment (`None`), or already in one at `Some(loc)` (a
    /// rebuild, which also skips the floor and the journal: it restores what was held).
    fn insert_at(
        &self,
        index: &mut Index,
        packet: &Packet,
        id: PacketId,
        at: Option<Location>,
        now: u32,
    ) -> Result<Inserted, StoreError> {
        if index.contains(&id) {
            return Ok(Inserted::Duplicate);
        }
        let score = crate::pow::score(&id, packet.expires.saturating_sub(now));
        // The base itself is checked by admission (`pow::check`); above it, the floor.
        let floor = self.floor_at(index.len() as u64, now);
        if at.is_none() && floor > self.rules.base && score < floor {
            return Ok(Inserted::Refused { score, floor });
        }
        if index.len() as u64 >= self.max_packets
            && index.earliest_expiry().is_some_and(|e| e <= now)
        {
            self.sweep_locked(index, now)?;
        }
        if index.len() as u64 >= self.max_packets {
            // Like a mempool: the cheapest packet held makes room for a dearer one.
            match index.lowest() {
                Some((lowest, victim)) if score > lowest => {
                    if let Some(h) = index.remove(&victim) {
                        if at.is_none() {
                            self.journal.append(Kind::Remove, &h)?;
                        }
                        tracing::debug!(id = %victim, "evicted the cheapest packet to make room");
                    }
                    self.raise_floor(lowest, index.len() as u64, now)?;
                }
                Some((lowest, _)) => {
                    return Ok(Inserted::Refused {
                        score,
                        floor: lowest.saturating_add(1),
                    })
                }
                None => {
                    return Err(StoreError::Full {
                        max: self.max_packets,
                    })
                }
            }
        }
        // Sequence numbers start at 1 so that "after 0" means "from the start".
        let seq = index.max_seq() + 1;
        let loc = match at {
            Some(loc) => loc,
            None => self
                .segments
                .append_with(packet.expires, |out| packet.encode_into(out))?,
        };
        let held = Held {
            id,
            seq,
            expires: packet.expires,
            tag: packet.tag,
            record: (loc.offset / PACKET_LEN as u64) as u32,
            score,
        };
        if at.is_none() {
            self.journal.append(Kind::Add, &held)?;
        }
        // Both callers hashed these bytes to the id (on arrival or in the rebuild's scan).
        index.insert(held, true);
        Ok(Inserted::New(seq))
    }

    /// Rebuild the index from the segment files: every whole record of every unexpired hour
    /// is decoded and its id computed from its bytes; a record that does not decode, sits in
    /// the wrong hour's file or lacks the base work is damaged (counted per segment, reported
    /// by [`Store::damaged_segments`]). The quota applies as on insert; the floor does not.
    /// Ends with a new snapshot.
    fn rebuild(&self, why: &str, max_seq: u64) -> Result<(), StoreError> {
        let now = crate::unix_now();
        let mut index = self.index.locked();
        *index = Index::new();
        index.note_seq(max_seq);
        let hours = self.segments.hours()?;
        tracing::warn!(
            segments = hours.len(),
            "rebuilding the packet index from the segment files: {why}"
        );
        let started = std::time::Instant::now();
        let (mut records, mut kept, mut bad_total) = (0u64, 0u64, 0u64);
        let mut last_log = started;
        for (i, &hour) in hours.iter().enumerate() {
            if (hour as u64 + 1) * segments::SEGMENT_SECS as u64 <= now as u64 + 1 {
                continue; // every packet in it has expired; the sweeper deletes the file
            }
            let mut bad = Vec::new();
            let mut failed = None;
            self.segments.scan(hour, |loc, bytes| {
                if failed.is_some() {
                    return;
                }
                records += 1;
                let id = PacketId::of_bytes(bytes);
                let packet = match Packet::decode(bytes) {
                    Ok(p)
                        if p.expires / segments::SEGMENT_SECS == hour
                            && crate::pow::work_of(&id) >= self.rules.base =>
                    {
                        p
                    }
                    _ => return bad.push(loc),
                };
                if packet.expires <= now {
                    return;
                }
                match self.insert_at(&mut index, &packet, id, Some(loc), now) {
                    Ok(Inserted::New(_)) => kept += 1,
                    Ok(_) => {}
                    Err(e) => failed = Some(e),
                }
                if last_log.elapsed() > std::time::Duration::from_secs(2) {
                    last_log = std::time::Instant::now();
                    tracing::info!(
                        "rebuilding the index: segment {} of {}, {kept} packets so far",
                        i + 1,
                        hours.len()
                    );
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            bad_total += bad.len() as u64;
            if !bad.is_empty() {
                tracing::warn!(
                    segment = %self.segments.name(hour),
                    damaged = bad.len(),
                    "damaged records in a segment file (skipped)"
                );
            }
            for loc in bad {
                self.note_damaged(loc);
            }
        }
        self.count.store(index.len() as u64, Ordering::Relaxed);
        self.compact(&index)?;
        self.db.flush()?;
        let note = format!(
            "{why}: rebuilt from {} segment files in {:.1} s, {kept} packets indexed, {bad_total} damaged records of {records}",
            hours.len(),
            started.elapsed().as_secs_f64()
        );
        tracing::warn!("index rebuilt: {note}");
        *self.rebuilt.locked() = Some(note);
        Ok(())
    }

    fn note_damaged(&self, loc: Location) {
        self.damaged
            .locked()
            .entry(loc.hour)
            .or_default()
            .insert(loc.offset);
    }

    /// Segment files with damaged records found so far (at rebuild or on reads), and how
    /// many records each.
    pub fn damaged_segments(&self) -> Vec<(String, usize)> {
        self.damaged
            .locked()
            .iter()
            .map(|(h, offsets)| (self.segments.name(*h), offsets.len()))
            .collect()
    }

    /// How the index was rebuilt when the store opened, if it was.
    pub fn rebuilt(&self) -> Option<String> {
        self.rebuilt.locked().clone()
    }

    /// The admission floor now ([`crate::admission`]): the least score a new packet needs.
    pub fn floor(&self, now: u32) -> u64 {
        self.floor_with(0, now)
    }

    /// The floor once `extra` more packets are in (what a batch of that many must solve for).
    pub fn floor_with(&self, extra: u64, now: u32) -> u64 {
        self.floor_at(self.len().saturating_add(extra), now)
    }

    fn floor_at(&self, len: u64, now: u32) -> u64 {
        let r = *self.rolling.locked();
        self.rules.floor(r, len, now)
    }

    /// The network base this store was opened with.
    pub fn base_work(&self) -> u64 {
        self.rules.base
    }

    /// An eviction of a packet that scored `score`: raise the rolling floor and persist it
    /// (covered by the next [`Store::durable`]).
    fn raise_floor(&self, score: u64, len: u64, now: u32) -> Result<(), StoreError> {
        let mut r = self.rolling.locked();
        *r = self.rules.after_eviction(*r, score, len, now);
        self.meta.insert("floor", &r.encode()[..])?;
        Ok(())
    }

    /// What `k` new packets must each score above to get in: `None` while they fit; else the
    /// score of the `m`-th cheapest packet held, `m` being how many must make room.
    pub fn floor_for(&self, k: usize) -> Result<Option<u64>, StoreError> {
        let index = self.index.locked();
        let need = (index.len() as u64 + k as u64).saturating_sub(self.max_packets);
        if need == 0 {
            return Ok(None);
        }
        Ok(index.nth_lowest_score(need as usize))
    }

    /// Wait until every insert made before this call is on disk. Concurrent callers share
    /// flushes, so under load one flush covers many inserts.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let target = self.written.load(Ordering::SeqCst);
        let mut rx = self.flushed.subscribe();
        loop {
            if *rx.borrow_and_update() >= target {
                return Ok(());
            }
            let _g = self.flush_lock.lock().await;
            if *self.flushed.borrow() >= target {
                return Ok(());
            }
            let upto = self.written.load(Ordering::SeqCst);
            // Not sled's `flush_async`: that parks a thread of sled's small I/O pool, which the
            // flush itself needs for buffer writes; with several stores in one process (demo,
            // tests, benchmarks) the pool runs dry and flushes hang. A blocking flush on
            // tokio's blocking pool never occupies a runtime worker nor sled's pool.
            let (db, segments, journal) =
                (self.db.clone(), self.segments.clone(), self.journal.clone());
            tokio::task::spawn_blocking(move || sync_all(&db, &segments, &journal))
                .await
                .map_err(|_| StoreError::Corrupt("flush task panicked"))??;
            self.flushed.send_modify(|v| *v = (*v).max(upto));
        }
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        sync_all(&self.db, &self.segments, &self.journal)
    }

    /// Look up one packet with its arrival sequence number, expired or not (the sweeper may
    /// not have reached it yet): readers that serve packets use [`Store::get_many_bytes_live`].
    pub fn get(&self, id: &PacketId) -> Result<Option<(u64, Packet)>, StoreError> {
        Ok(match self.lookup(id)? {
            Lookup::Found(seq, p) => Some((seq, p)),
            Lookup::Missing | Lookup::Damaged(_) => None,
        })
    }

    /// The encoded bytes of each of `ids` that is held and has not expired at `now`:
    /// `f(i, bytes of ids[i])`, in disk order; the others (not held, expired, damaged) are
    /// not called. What a peer's `getdata` is served from: no decoding, no copy, and the id
    /// is the wire checksum ([`crate::p2p::message::frame_packet`]). One index lock for the
    /// whole batch; records adjacent on disk are read together ([`Segments::read_many`]). A
    /// record's bytes are checked against its id the first time they are read in this run;
    /// records that arrived or were rebuilt in this run were hashed then (the index's
    /// `checked` flag).
    pub fn get_many_bytes_live(
        &self,
        ids: &[PacketId],
        now: u32,
        mut f: impl FnMut(usize, &[u8; PACKET_LEN]),
    ) -> Result<(), StoreError> {
        let mut at = Vec::with_capacity(ids.len());
        let mut locs = Vec::with_capacity(ids.len());
        {
            let index = self.index.locked();
            for (i, id) in ids.iter().enumerate() {
                // Expired but not yet swept counts as gone.
                if let Some((slot, expires, record, checked)) = index.locate(id) {
                    if expires > now {
                        at.push((i, slot, checked));
                        locs.push(location(expires, record));
                    }
                }
            }
        }
        let mut checked_now = Vec::new();
        let mut failed = None;
        self.segments.read_many(&locs, |k, read| {
            let (i, slot, checked) = at[k];
            match self.verify(&ids[i], locs[k], read, checked) {
                Ok(Some(bytes)) => {
                    if !checked {
                        checked_now.push((slot, ids[i]));
                    }
                    f(i, bytes);
                }
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        });
        if !checked_now.is_empty() {
            let mut index = self.index.locked();
            for (slot, id) in &checked_now {
                index.mark_checked(*slot, id);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn lookup(&self, id: &PacketId) -> Result<Lookup, StoreError> {
        let Some((seq, expires, record)) = self.index.locked().get(id) else {
            return Ok(Lookup::Missing);
        };
        self.read_at(id, seq, location(expires, record))
    }

    /// The packet `id` at `loc`, checked against its id.
    fn read_at(&self, id: &PacketId, seq: u64, loc: Location) -> Result<Lookup, StoreError> {
        match self.read_checked(id, loc)? {
            Some(bytes) => match Packet::decode(&bytes) {
                Ok(p) => Ok(Lookup::Found(seq, p)),
                Err(_) => {
                    self.note_damaged(loc);
                    Ok(Lookup::Damaged(loc))
                }
            },
            None => Ok(Lookup::Damaged(loc)),
        }
    }

    /// The bytes at `loc` if they hash to `id`; `None` (noted as damaged) if they do not or
    /// are gone.
    fn read_checked(
        &self,
        id: &PacketId,
        loc: Location,
    ) -> Result<Option<[u8; PACKET_LEN]>, StoreError> {
        match self.segments.read(loc) {
            Ok(bytes) => Ok(self.verify(id, loc, Ok(&bytes), false)?.copied()),
            Err(e) => self.verify(id, loc, Err(e), false).map(|_| None),
        }
    }

    /// What a read of `id` at `loc` gave: the bytes if they hash to `id` (or `trusted`: they
    /// were hashed to it earlier in this run); `None`, noted as damaged, if they do not or
    /// are gone.
    fn verify<'a>(
        &self,
        id: &PacketId,
        loc: Location,
        read: std::io::Result<&'a [u8; PACKET_LEN]>,
        trusted: bool,
    ) -> Result<Option<&'a [u8; PACKET_LEN]>, StoreError> {
        // Bytes that do not hash to the id (a write torn by an OS crash, a damaged or deleted
        // segment) are damaged: the index says the packet is there, the bytes are not it.
        match read {
            Ok(bytes) if trusted || PacketId::of_bytes(bytes) == *id => Ok(Some(bytes)),
            Ok(_) => {
                self.note_damaged(loc);
                tracing::warn!(
                    segment = %self.segments.name(loc.hour),
                    offset = loc.offset,
                    "packet bytes on disk do not match their id"
                );
                Ok(None)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                self.note_damaged(loc);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// All packets of a tag with seq > `after`, in arrival order, at most `limit`, expired or
    /// not. See [`Store::read_tag`] for readers.
    pub fn by_tag(
        &self,
        tag: &Tag,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Packet)>, StoreError> {
        Ok(self.read_tag(tag, after, limit, 0)?.packets)
    }

    /// The unexpired packets of a tag with seq > `after`, in arrival order, at most `limit`,
    /// and the packets of the tag whose bytes on disk are damaged (by segment file).
    pub fn read_tag(
        &self,
        tag: &Tag,
        after: u64,
        limit: usize,
        now: u32,
    ) -> Result<TagRead, StoreError> {
        let (entries, more) = self.index.locked().tag_after(tag, after, limit);
        let mut out = TagRead {
            more,
            ..TagRead::default()
        };
        for (seq, id, expires, record) in entries {
            if expires <= now {
                continue;
            }
            match self.read_at(&id, seq, location(expires, record))? {
                Lookup::Found(s, p) => out.packets.push((s, p)),
                Lookup::Damaged(loc) => out.damaged.push(self.segments.name(loc.hour)),
                Lookup::Missing => {}
            }
        }
        Ok(out)
    }

    /// Ids of all held packets, expired or not.
    pub fn ids(&self) -> Vec<PacketId> {
        self.index
            .locked()
            .live(0)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Ids of the packets that have not expired at `now` (for catch-up with peers).
    pub fn live_ids(&self, now: u32) -> Vec<PacketId> {
        self.live_located(now)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    /// (id, expires, record) of every packet that has not expired at `now`: with the record
    /// number in its hour's segment, `(expires / 3600, record)` orders packets as they lie on
    /// disk.
    pub fn live_located(&self, now: u32) -> Vec<(PacketId, u32, u32)> {
        self.index.locked().live(now)
    }

    /// Delete every packet with `expires <= now`. Returns how many were removed.
    pub fn sweep_expired(&self, now: u32) -> Result<usize, StoreError> {
        let mut index = self.index.locked();
        let n = self.sweep_locked(&mut index, now)?;
        self.maybe_compact(&index)?;
        Ok(n)
    }

    fn sweep_locked(&self, index: &mut Index, now: u32) -> Result<usize, StoreError> {
        // Journalled like evictions: the sweep at load uses the clock of that moment, which
        // may be behind the one used here.
        let swept = index.sweep(now);
        for h in &swept {
            self.journal.append(Kind::Remove, h)?;
        }
        let removed = swept.len();
        self.count.store(index.len() as u64, Ordering::Relaxed);
        if removed > 0 {
            self.written.fetch_add(1, Ordering::SeqCst);
        }
        self.segments.remove_expired(now)?;
        Ok(removed)
    }
}

/// Packet bytes first, then the journal that points at them, then sled.
fn sync_all(db: &sled::Db, segments: &Segments, journal: &Journal) -> Result<(), StoreError> {
    segments.sync()?;
    journal.sync()?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::BODY_LEN;

    fn pkt(tag: u8, expires: u32, fill: u8) -> Packet {
        Packet {
            tag: Tag([tag; 20]),
            expires,
            nonce: 0,
            body: Box::new([fill; BODY_LEN]),
        }
    }

    #[test]
    fn membership_under_one_lock_answers_as_contains_and_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let now = 1_000_000;
        let held = pkt(1, now + 3600, 1);
        let absent = pkt(1, now + 3600, 2);
        assert!(matches!(
            store.insert(&held, now).unwrap(),
            Inserted::New(_)
        ));
        let seen = store.with_membership(|have| (have(&held.id()), have(&absent.id())));
        assert_eq!(seen, (true, false));
        // The lock is released when `f` returns: an insert goes through afterwards.
        assert!(matches!(
            store.insert(&absent, now).unwrap(),
            Inserted::New(_)
        ));
        assert!(store.with_membership(|have| have(&absent.id())));
    }

    #[test]
    fn a_full_store_evicts_the_lowest_score_and_refuses_what_scores_lower() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            max_packets: 3,
            base_work: 1,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), &cfg).unwrap();
        let now = 1_000_000;
        let mut ps: Vec<Packet> = (0..5u8)
            .map(|i| {
                let mut p = pkt(1, now + 3600, i);
                crate::pow::solve(&mut p, 16 << (2 * i));
                p
            })
            .collect();
        let score = |p: &Packet| crate::pow::score(&p.id(), 3600);
        ps.sort_by_key(score);
        for p in &ps[1..4] {
            assert!(matches!(store.insert(p, now).unwrap(), Inserted::New(_)));
        }
        assert_eq!(store.floor_for(1).unwrap(), Some(score(&ps[1])));
        assert_eq!(store.floor_for(2).unwrap(), Some(score(&ps[2])));
        // Scoring no higher than the cheapest held: refused, nothing changes.
        assert!(matches!(
            store.insert(&ps[0], now).unwrap(),
            Inserted::Refused { .. }
        ));
        // Scoring higher: the cheapest goes.
        assert!(matches!(
            store.insert(&ps[4], now).unwrap(),
            Inserted::New(_)
        ));
        assert_eq!(store.len(), 3);
        assert!(!store.contains(&ps[1].id()).unwrap());
        for p in &ps[2..5] {
            assert!(store.get(&p.id()).unwrap().is_some());
        }
        assert_eq!(
            tag1(&store, 0).len(),
            3,
            "the tag index lost the evicted one too"
        );
        // Expiry removes the value index entries as well: an empty store floors at nothing.
        assert_eq!(store.sweep_expired(now + 7200).unwrap(), 3);
        assert_eq!(store.floor_for(3).unwrap(), None);
        assert!(store.index.locked().lowest().is_none());
    }

    #[test]
    fn the_floor_rises_with_fill_and_evictions_refuses_below_it_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            max_packets: 8,
            base_work: 16,
            ..StoreConfig::default()
        };
        // The real clock: the open after the restart sweeps what expired by it.
        let now = crate::unix_now();
        let solved = |i: u8, work: u64| {
            let mut p = pkt(1, now + 3600, i);
            crate::pow::solve(&mut p, work);
            p
        };
        let score = |p: &Packet| crate::pow::score(&p.id(), 3600);
        {
            let store = Store::open(dir.path(), &cfg).unwrap();
            assert_eq!(store.floor(now), 16, "empty: the floor is the base");
            // Half full at well above the base: the floor is still the base.
            for i in 0..4 {
                let p = solved(i, 200);
                assert!(matches!(store.insert(&p, now).unwrap(), Inserted::New(_)));
            }
            assert_eq!(store.floor(now), 16);
            let p = solved(4, 200);
            store.insert(&p, now).unwrap();
            assert!(store.floor(now) > 16, "over half full the floor rises");
            // A packet at the base but under the risen floor: refused with the floor.
            let cheap = (10..60)
                .map(|i| solved(i, 16))
                .find(|p| score(p) < store.floor(now))
                .unwrap();
            match store.insert(&cheap, now).unwrap() {
                Inserted::Refused { score: s, floor } => {
                    assert_eq!(s, score(&cheap));
                    assert_eq!(floor, store.floor(now));
                }
                r => panic!("{r:?}"),
            }
            // Fill up, then evict with dearer packets: the floor follows the evictions.
            for i in 5..8 {
                store.insert(&solved(i, 200), now).unwrap();
            }
            assert_eq!(store.len(), 8);
            assert_eq!(store.floor(now), 64, "full: four bases");
            let mut evicted_max = 0;
            for i in 60..70 {
                let lowest = store.floor_for(1).unwrap().unwrap();
                if let Inserted::New(_) = store.insert(&solved(i, 100_000), now).unwrap() {
                    evicted_max = evicted_max.max(lowest);
                }
            }
            assert!(evicted_max > 64);
            assert!(
                store.floor(now) > evicted_max,
                "an eviction raises the floor above it"
            );
            assert_eq!(store.len(), 8);
        }
        // Reopened: the rolling floor is back, then decays with the half-life.
        let store = Store::open(dir.path(), &cfg).unwrap();
        let kept = store.floor(now);
        assert!(kept > 64 * 2, "{kept}");
        let later = store.floor(now + crate::admission::HALF_LIFE);
        assert!(later < kept && later > 16, "{kept} -> {later}");
        assert_eq!(store.floor(now + 40 * crate::admission::HALF_LIFE), 64);
    }

    /// Packets under tag [1; 20] after `after`, in arrival order.
    fn tag1(s: &Store, after: u64) -> Vec<Packet> {
        s.by_tag(&Tag([1; 20]), after, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.1)
            .collect()
    }

    fn open(dir: &Path, max: u64) -> Store {
        Store::open(
            dir,
            &StoreConfig {
                max_packets: max,
                cache_bytes: 1 << 20,
                // No base: these tests store unsolved packets (the floor is tested on its own).
                base_work: 0,
                reindex: false,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn insert_is_idempotent_and_ordered_by_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 100);
        let a = pkt(1, 50, 1);
        let b = pkt(1, 40, 2);
        let c = pkt(2, 60, 3);
        assert!(matches!(s.insert(&a, 0).unwrap(), Inserted::New(_)));
        assert!(matches!(s.insert(&b, 0).unwrap(), Inserted::New(_)));
        assert!(matches!(s.insert(&c, 0).unwrap(), Inserted::New(_)));
        assert_eq!(s.insert(&a, 0).unwrap(), Inserted::Duplicate);
        s.durable().await.unwrap();
        assert_eq!(s.len(), 3);
        let got: Vec<Packet> = tag1(&s, 0);
        assert_eq!(got, vec![a.clone(), b.clone()]);
        let (seq_a, _) = s.get(&a.id()).unwrap().unwrap();
        let after: Vec<Packet> = tag1(&s, seq_a);
        assert_eq!(after, vec![b]);
        assert_eq!(s.ids().len(), 3);
    }

    #[tokio::test]
    async fn reopen_keeps_packets_and_count() {
        let dir = tempfile::tempdir().unwrap();
        // Far enough ahead that the sweep at open keeps them.
        let t = crate::unix_now() + 7200;
        {
            let s = open(dir.path(), 100);
            s.insert(&pkt(1, t, 1), 0).unwrap();
            s.insert(&pkt(1, t, 2), 0).unwrap();
            s.durable().await.unwrap();
        }
        let s = open(dir.path(), 100);
        assert_eq!(s.len(), 2);
        assert_eq!(s.by_tag(&Tag([1; 20]), 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn sweep_removes_only_expired_from_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 100);
        let old = pkt(1, 10, 1);
        let new = pkt(1, 30, 2);
        s.insert(&old, 0).unwrap();
        s.insert(&new, 0).unwrap();
        assert_eq!(s.sweep_expired(10).unwrap(), 1);
        assert_eq!(s.len(), 1);
        assert!(s.get(&old.id()).unwrap().is_none());
        assert_eq!(s.by_tag(&Tag([1; 20]), 0, 10).unwrap().len(), 1);
        assert_eq!(s.sweep_expired(10).unwrap(), 0);
        assert_eq!(s.sweep_expired(30).unwrap(), 1);
        assert!(s.is_empty());
        assert_eq!(s.by_tag(&Tag([1; 20]), 0, 10).unwrap().len(), 0);
        // An expired packet can be stored again only after a sweep forgot it.
        assert!(matches!(s.insert(&old, 0).unwrap(), Inserted::New(_)));
    }

    #[test]
    fn quota_sweeps_expired_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 2);
        s.insert(&pkt(1, 10, 1), 0).unwrap();
        s.insert(&pkt(1, 100, 2), 0).unwrap();
        // Full, but one packet has expired by now=20: it makes room.
        assert!(matches!(
            s.insert(&pkt(1, 100, 3), 20).unwrap(),
            Inserted::New(_)
        ));
        // Full of unexpired packets: a new one gets in only by scoring above the cheapest.
        let lowest = s.floor_for(1).unwrap().unwrap();
        let new = pkt(1, 100, 4);
        let r = s.insert(&new, 20).unwrap();
        if crate::pow::score(&new.id(), 80) > lowest {
            assert!(matches!(r, Inserted::New(_)), "{r:?}");
        } else {
            assert!(matches!(r, Inserted::Refused { .. }), "{r:?}");
        }
        assert_eq!(s.len(), 2, "never over the quota");
        // Duplicates of held packets are still reported as duplicates when full.
        let held = [pkt(1, 100, 2), pkt(1, 100, 3), new]
            .into_iter()
            .find(|p| s.contains(&p.id()).unwrap())
            .unwrap();
        assert_eq!(s.insert(&held, 20).unwrap(), Inserted::Duplicate);
    }

    #[test]
    fn batches_with_duplicates_inside_and_across() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::unix_now() + 7200;
        let s = open(dir.path(), 100);
        let a = pkt(1, t, 1);
        let b = pkt(1, t, 2);
        s.insert(&a, 0).unwrap();
        let r = s
            .insert_many(&[b.clone(), a.clone(), b.clone()], 0)
            .unwrap();
        assert!(matches!(r[0], Inserted::New(_)));
        assert_eq!(&r[1..], &[Inserted::Duplicate, Inserted::Duplicate]);
        assert_eq!(s.len(), 2);
        // The duplicate did not disturb the original's entry or the tag index.
        let got: Vec<Packet> = tag1(&s, 0);
        assert_eq!(got, vec![a.clone(), b]);
        assert_eq!(s.get(&a.id()).unwrap().unwrap().0, 1);
        // Near the quota the exact path stores what fits, in order.
        let dir2 = tempfile::tempdir().unwrap();
        let s2 = open(dir2.path(), 2);
        let batch = [pkt(2, 50, 1), pkt(2, 50, 1), pkt(2, 50, 2), pkt(2, 50, 3)];
        let r = s2.insert_many(&batch, 0).unwrap();
        assert!(matches!(r[0], Inserted::New(_)) && matches!(r[2], Inserted::New(_)));
        assert_eq!(r[1], Inserted::Duplicate);
        assert!(matches!(r[3], Inserted::New(_) | Inserted::Refused { .. }));
        assert_eq!(s2.len(), 2, "never over the quota");
    }

    /// (seq, packet) under tag [1; 20], in arrival order.
    fn seqs(s: &Store) -> Vec<(u64, Packet)> {
        s.by_tag(&Tag([1; 20]), 0, 100).unwrap()
    }

    #[tokio::test]
    async fn the_journal_brings_back_exact_seqs_and_removals_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::unix_now() + 7200;
        let (before, gone) = {
            let s = open(dir.path(), 100);
            for i in 0..5 {
                s.insert(&pkt(1, t + i as u32, i), 0).unwrap();
            }
            // A removal the log must carry too.
            assert_eq!(s.sweep_expired(t).unwrap(), 1);
            s.durable().await.unwrap();
            (seqs(&s), pkt(1, t, 0))
        };
        assert_eq!(before.len(), 4);
        let s = open(dir.path(), 100);
        assert!(s.rebuilt().is_none(), "a clean journal needs no rebuild");
        assert_eq!(seqs(&s), before, "same packets, same seqs, same order");
        assert!(!s.contains(&gone.id()).unwrap());
        // New arrivals continue after the highest seq ever handed out.
        let last = before.last().unwrap().0;
        let Inserted::New(seq) = s.insert(&pkt(1, t + 40, 9), 0).unwrap() else {
            panic!("not new")
        };
        assert!(seq > last, "{seq} after {last}");
    }

    #[tokio::test]
    async fn a_snapshot_plus_log_replays_to_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::unix_now() + 7200;
        let before = {
            let s = open(dir.path(), 100);
            for i in 0..3 {
                s.insert(&pkt(1, t + i as u32, i), 0).unwrap();
            }
            s.durable().await.unwrap();
            s.compact(&s.index.locked()).unwrap();
            // After the snapshot: one more add and one removal, in the log only.
            s.insert(&pkt(1, t + 30, 7), 0).unwrap();
            assert_eq!(s.sweep_expired(t).unwrap(), 1);
            s.durable().await.unwrap();
            seqs(&s)
        };
        assert_eq!(before.len(), 3);
        let s = open(dir.path(), 100);
        assert!(s.rebuilt().is_none());
        assert_eq!(seqs(&s), before);
    }

    #[tokio::test]
    async fn a_torn_log_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = crate::unix_now() + 7200;
        let before = {
            let s = open(dir.path(), 100);
            s.insert(&pkt(1, t, 1), 0).unwrap();
            s.insert(&pkt(1, t + 10, 2), 0).unwrap();
            s.durable().await.unwrap();
            seqs(&s)
        };
        // Half a record: what a kill in the middle of an append leaves.
        let log = dir.path().join(journal::LOG);
        let mut bytes = std::fs::read(&log).unwrap();
        let half = bytes[bytes.len() - journal::RECORD_LEN..][..40].to_vec();
        bytes.extend_from_slice(&half);
        std::fs::write(&log, bytes).unwrap();
        let s = open(dir.path(), 100);
        assert!(s.rebuilt().is_none(), "a torn tail is normal, not damage");
        assert_eq!(seqs(&s), before);
        // And appends after the cut replay too.
        s.insert(&pkt(1, t + 20, 3), 0).unwrap();
        s.durable().await.unwrap();
        drop(s);
        assert_eq!(seqs(&open(dir.path(), 100)).len(), 3);
    }

    #[tokio::test]
    async fn a_garbled_or_missing_index_is_rebuilt_from_the_segments() {
        for garble in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let t = crate::unix_now() + 7200;
            let before = {
                let s = open(dir.path(), 100);
                for i in 0..4 {
                    s.insert(&pkt(1, t + i as u32, i), 0).unwrap();
                }
                s.durable().await.unwrap();
                s.compact(&s.index.locked()).unwrap();
                seqs(&s)
            };
            let snap = dir.path().join(journal::SNAPSHOT);
            if garble {
                let mut bytes = std::fs::read(&snap).unwrap();
                bytes[16 + journal::RECORD_LEN + 5] ^= 0x40;
                std::fs::write(&snap, bytes).unwrap();
            } else {
                std::fs::remove_file(&snap).unwrap();
                std::fs::remove_file(dir.path().join(journal::LOG)).unwrap();
            }
            let s = open(dir.path(), 100);
            let why = s.rebuilt().expect("rebuilt");
            assert!(
                why.contains(if garble { "damaged" } else { "missing" }),
                "{why}"
            );
            let after = seqs(&s);
            let packets = |v: &[(u64, Packet)]| v.iter().map(|e| e.1.clone()).collect::<Vec<_>>();
            assert_eq!(
                packets(&after),
                packets(&before),
                "every packet readable, same order"
            );
            if garble {
                let aside = std::fs::read_dir(dir.path())
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .any(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("index-damaged-")
                    });
                assert!(aside, "the damaged copy is kept for a post-mortem");
            }
            drop(s);
            // The rebuilt index is itself persisted: the next start needs no rebuild.
            let s = open(dir.path(), 100);
            assert!(s.rebuilt().is_none());
            assert_eq!(packets(&seqs(&s)), packets(&before));
        }
    }

    #[tokio::test]
    async fn bytes_that_do_not_match_their_id_read_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 100);
        let a = pkt(1, 7200, 1);
        s.insert(&a, 0).unwrap();
        s.durable().await.unwrap();
        // Flip one byte of the packet on disk (what a torn write after an OS crash looks like).
        let seg = dir.path().join("segments").join("2.seg");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[500] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        assert!(s.get(&a.id()).unwrap().is_none());
        assert!(s.by_tag(&Tag([1; 20]), 0, 10).unwrap().is_empty());
        // Expiry deletes the whole segment file.
        assert_eq!(s.sweep_expired(7200).unwrap(), 1);
        assert!(seg.exists(), "hour 2 still holds expiries up to 10799");
        assert_eq!(s.sweep_expired(3 * 3600 - 1).unwrap(), 0);
        assert!(!seg.exists());
    }

    #[test]
    fn refuses_unknown_format_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("format_version", &99u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let r = Store::open(dir.path(), &StoreConfig::default());
        assert!(matches!(r, Err(StoreError::FormatVersion { found: 99 })));
    }
}
