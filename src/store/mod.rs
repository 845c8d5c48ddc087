//! The packet store: every packet this node holds, on disk in sled.
//!
//! One [`Store`] owns the sled database; nothing else opens it. Trees (one per index):
//!
//! | tree        | key                             | value                        |
//! |-------------|---------------------------------|------------------------------|
//! | `packets`   | packet id (32)                  | seq (u64 BE) ‖ hour (u32 BE) ‖ offset (u64 BE) |
//! | `by_tag`    | tag (20) ‖ seq (u64 BE)         | packet id (32)               |
//! | `by_expiry` | expires (u32 BE) ‖ seq (u64 BE) | packet id (32) ‖ tag (20)    |
//! | `by_value`  | score (u64 BE) ‖ seq (u64 BE)   | packet id (32) ‖ tag (20) ‖ expires (u32 BE) |
//! | `meta`      | `format_version`                | u32 BE                       |
//! | `meta`      | `floor`                         | rolling floor u64 BE ‖ at u32 BE ([`crate::admission::Rolling`]) |
//!
//! `seq` is a store-wide arrival counter (sled's monotonic id generator), so a tag's packets
//! come back in arrival order. The packet bytes themselves live in append-only segment files,
//! one per expiry hour ([`segments`]); sled holds only small index entries, which keeps it
//! fast and its size on disk small. Every read checks that the bytes hash to the id.
//!
//! **No sled transactions or batches.** In sled 0.34 the first transaction or batch switches a
//! process-wide lock on, after which a transaction can deadlock against sled's own flush
//! threads (seen here under load). Consistency comes from write order instead: an insert
//! writes the two index entries first and the `packets` entry last (the commit point); a
//! delete removes the `packets` entry first. An index entry whose packet is missing, or whose
//! seq differs from the packet's, is dangling: readers skip it and the sweeper removes it.
//! Inserting is idempotent (a known id is reported as a duplicate). Inserts are not durable
//! until [`Store::durable`] returns: it flushes on tokio's blocking pool, and concurrent callers share
//! one flush (group commit), which is what batches flushes under load.
//!
//! Quota: at most `max_packets` packets. When full, expired packets are swept first; then, like
//! a mempool, the packet with the lowest **score** (work per TTL, [`crate::pow::score`]) is
//! evicted for a new one that scores higher, and a new one that does not is refused
//! ([`Inserted::Refused`]). The `packets` entry is seq ‖ hour ‖ offset ‖ score.
//!
//! Before the quota, the **floor** ([`crate::admission`]): above half full a packet must score
//! at least the floor, which rises with the fill and with each eviction and decays back with a
//! half-life; its rolling part is kept in `meta`, so a restart keeps it.

use crate::admission::{FloorRules, Rolling};
use crate::packet::{Packet, PacketId};
use crate::sync::Locked;
use crate::tag::{Tag, TAG_LEN};
use segments::{Location, Segments};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub mod segments;
pub mod table;

pub use table::{Codec, Table, TableSpec};

/// Version of the on-disk layout described above.
/// 5: packets of layout 2 (with a proof-of-work nonce, protocol.md §1); a version-4 store
/// holds layout-1 packets, which this build would misread, so it is refused.
pub const FORMAT_VERSION: u32 = 5;
/// Default quota: 1,048,576 packets (1 GiB of packet data).
pub const DEFAULT_MAX_PACKETS: u64 = 1 << 20;
/// Most expired packets the sweeper handles per pass over the index.
pub const SWEEP_BATCH: usize = 1000;

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
    /// sled page cache in bytes.
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
            cache_bytes: 64 << 20,
            base_work: crate::pow::BASE_WORK,
            reindex: false,
        }
    }
}

pub struct Store {
    db: sled::Db,
    segments: Arc<Segments>,
    packets: sled::Tree,
    by_tag: sled::Tree,
    by_expiry: sled::Tree,
    /// score (u64 BE) ‖ seq → id (32) ‖ tag (20) ‖ expires (u32 BE): the eviction order.
    by_value: sled::Tree,
    count: AtomicU64,
    max_packets: u64,
    meta: sled::Tree,
    rules: FloorRules,
    /// The rolling part of the floor (changed under `write_lock`; persisted in `meta`).
    rolling: Mutex<Rolling>,
    /// Serialises quota check + insert so the count stays exact.
    write_lock: Mutex<()>,
    /// Number of writes made so far (a generation counter for group commit).
    written: Arc<AtomicU64>,
    /// Highest generation known to be on disk.
    flushed: watch::Sender<u64>,
    flush_lock: tokio::sync::Mutex<()>,
    /// Records found damaged (by rebuild or by reads): hour → byte offsets.
    damaged: Mutex<BTreeMap<u32, BTreeSet<u64>>>,
    /// Why and how the index was rebuilt at open, if it was.
    rebuilt: Mutex<Option<String>>,
}

/// What opening the sled index found.
enum IndexOpen {
    /// Open and of this build's format; `true` if it was created just now.
    Ready(sled::Db, bool),
    /// Unreadable (sled reports corruption or panics, our own entries do not decode).
    Damaged(String),
    /// Any other failure (locked, permissions, another format version): reported as is.
    Failed(StoreError),
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
                if found != FORMAT_VERSION {
                    return Err(StoreError::FormatVersion { found });
                }
                Ok(IndexOpen::Ready(db.clone(), false))
            }
            None => {
                meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
                Ok(IndexOpen::Ready(db.clone(), true))
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

fn tag_key(tag: &Tag, seq: u64) -> [u8; TAG_LEN + 8] {
    let mut k = [0u8; TAG_LEN + 8];
    k[..TAG_LEN].copy_from_slice(&tag.0);
    k[TAG_LEN..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Keyed by seq rather than id so that inserts append (expiries are quantized, so few
/// distinct prefixes are live at once).
fn expiry_key(expires: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&expires.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

const ENTRY_LEN: usize = 8 + 4 + 8 + 8;

fn encode_entry(seq: u64, loc: Location, score: u64) -> [u8; ENTRY_LEN] {
    let mut v = [0u8; ENTRY_LEN];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..12].copy_from_slice(&loc.hour.to_be_bytes());
    v[12..20].copy_from_slice(&loc.offset.to_be_bytes());
    v[20..].copy_from_slice(&score.to_be_bytes());
    v
}

fn decode_entry(v: &[u8]) -> Result<(u64, Location), StoreError> {
    decode_entry_full(v).map(|(seq, loc, _)| (seq, loc))
}

fn decode_entry_full(v: &[u8]) -> Result<(u64, Location, u64), StoreError> {
    if v.len() != ENTRY_LEN {
        return Err(StoreError::Corrupt("packet entry has the wrong length"));
    }
    let bad = |_| StoreError::Corrupt("packet entry");
    let seq = u64::from_be_bytes(v[..8].try_into().map_err(bad)?);
    let hour = u32::from_be_bytes(v[8..12].try_into().map_err(bad)?);
    let offset = u64::from_be_bytes(v[12..20].try_into().map_err(bad)?);
    let score = u64::from_be_bytes(v[20..].try_into().map_err(bad)?);
    Ok((seq, Location { hour, offset }, score))
}

/// `by_value` key: the packet's score first, so the cheapest packet is the first entry.
fn value_key(score: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&score.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
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
        let (db, rebuild) = match open_index(path, cfg) {
            IndexOpen::Ready(db, fresh) => {
                let why = if cfg.reindex {
                    Some("asked for (--reindex)".to_string())
                } else if fresh && has_segments {
                    Some("the index is missing but segment files exist".to_string())
                } else {
                    None
                };
                (db, why)
            }
            IndexOpen::Damaged(what) => {
                let aside = move_index_aside(path)?;
                tracing::error!(
                    "the packet index is damaged ({what}); moved it to {} and rebuilding it from the segment files",
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
        let meta = db.open_tree("meta")?;
        let packets = db.open_tree("packets")?;
        let count = packets.len() as u64;
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
        let store = Store {
            meta,
            rules,
            rolling: Mutex::new(rolling),
            by_tag: db.open_tree("by_tag")?,
            by_expiry: db.open_tree("by_expiry")?,
            by_value: db.open_tree("by_value")?,
            packets,
            db,
            segments,
            count: AtomicU64::new(count),
            max_packets: cfg.max_packets,
            write_lock: Mutex::new(()),
            written: Arc::new(AtomicU64::new(0)),
            flushed: watch::Sender::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            damaged: Mutex::new(BTreeMap::new()),
            rebuilt: Mutex::new(None),
        };
        if let Some(why) = rebuild {
            store.rebuild(&why)?;
        }
        Ok(store)
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

    /// Bytes used on disk: sled's index plus the segment files.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.segments.size_on_disk()
    }

    pub fn contains(&self, id: &PacketId) -> Result<bool, StoreError> {
        Ok(self.packets.contains_key(id.0)?)
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
        let _guard = self.write_lock.locked();
        // Count a write generation even on error: what went in before it must be flushable.
        self.written.fetch_add(1, Ordering::SeqCst);
        packets.iter().map(|p| self.insert_locked(p, now)).collect()
    }

    fn insert_locked(&self, packet: &Packet, now: u32) -> Result<Inserted, StoreError> {
        let bytes = packet.encode();
        let id = PacketId::of_bytes(&bytes);
        self.insert_at(packet, id, Err(&bytes), now)
    }

    /// Index a packet: its bytes appended (`Err(bytes)`), or already in a segment at `Ok(loc)`
    /// (a rebuild, which also skips the floor: it restores what was held).
    fn insert_at(
        &self,
        packet: &Packet,
        id: PacketId,
        at: Result<Location, &[u8; crate::packet::PACKET_LEN]>,
        now: u32,
    ) -> Result<Inserted, StoreError> {
        if self.packets.contains_key(id.0)? {
            return Ok(Inserted::Duplicate);
        }
        let score = crate::pow::score(&id, packet.expires.saturating_sub(now));
        // The base itself is checked by admission (`pow::check`); above it, the floor.
        let floor = self.floor(now);
        if at.is_err() && floor > self.rules.base && score < floor {
            return Ok(Inserted::Refused { score, floor });
        }
        if self.len() >= self.max_packets {
            self.sweep_expired_locked(now)?;
        }
        if self.len() >= self.max_packets {
            // Like a mempool: the cheapest packet held makes room for a dearer one.
            match self.lowest()? {
                Some((lowest, key, value)) if score > lowest => {
                    self.evict(&key, &value)?;
                    self.raise_floor(lowest, now)?;
                }
                Some((lowest, _, _)) => {
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
        let seq = self.db.generate_id()? + 1;
        let mut expiry_value = [0u8; 32 + TAG_LEN];
        expiry_value[..32].copy_from_slice(&id.0);
        expiry_value[32..].copy_from_slice(&packet.tag.0);
        self.by_tag.insert(tag_key(&packet.tag, seq), &id.0[..])?;
        self.by_expiry
            .insert(expiry_key(packet.expires, seq), &expiry_value[..])?;
        let mut value = [0u8; 32 + TAG_LEN + 4];
        value[..32 + TAG_LEN].copy_from_slice(&expiry_value);
        value[32 + TAG_LEN..].copy_from_slice(&packet.expires.to_be_bytes());
        self.by_value.insert(value_key(score, seq), &value[..])?;
        let loc = match at {
            Ok(loc) => loc,
            Err(bytes) => self.segments.append(packet.expires, bytes)?,
        };
        // The commit point: from here on the packet exists.
        self.packets
            .insert(&id.0[..], &encode_entry(seq, loc, score)[..])?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(Inserted::New(seq))
    }

    /// Rebuild the index from the segment files: every whole record of every unexpired hour
    /// is decoded and its id computed from its bytes; a record that does not decode, sits in
    /// the wrong hour's file or lacks the base work is damaged (counted per segment, reported
    /// by [`Store::damaged_segments`]). The quota applies as on insert; the floor does not.
    fn rebuild(&self, why: &str) -> Result<(), StoreError> {
        let now = crate::unix_now();
        let _guard = self.write_lock.locked();
        for tree in [&self.packets, &self.by_tag, &self.by_expiry, &self.by_value] {
            tree.clear()?;
        }
        self.count.store(0, Ordering::Relaxed);
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
                match self.insert_at(&packet, id, Ok(loc), now) {
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
        self.segments.sync()?;
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

    /// `by_value` entries in score order whose packet is still held, with their score;
    /// dangling entries (an insert cut short, a packet already gone) are skipped.
    fn live_values(
        &self,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec, sled::IVec), StoreError>> + '_ {
        self.by_value.iter().filter_map(move |item| {
            let check = || -> Result<Option<(u64, sled::IVec, sled::IVec)>, StoreError> {
                let (k, v) = item?;
                if k.len() != 16 || v.len() != 32 + TAG_LEN + 4 {
                    return Err(StoreError::Corrupt("value index"));
                }
                let bad = |_| StoreError::Corrupt("value key");
                let seq = u64::from_be_bytes(k[8..].try_into().map_err(bad)?);
                let live = match self.packets.get(&v[..32])? {
                    Some(e) => decode_entry(&e)?.0 == seq,
                    None => false,
                };
                let score = u64::from_be_bytes(k[..8].try_into().map_err(bad)?);
                Ok(live.then_some((score, k, v)))
            };
            check().transpose()
        })
    }

    /// The cheapest packet held: its score and `by_value` entry.
    fn lowest(&self) -> Result<Option<(u64, sled::IVec, sled::IVec)>, StoreError> {
        self.live_values().next().transpose()
    }

    /// Delete the packet behind a `by_value` entry: the packet entry first, then its indexes
    /// (its bytes stay in their segment until the hour expires).
    fn evict(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let bad = |_| StoreError::Corrupt("value index");
        let seq = u64::from_be_bytes(key[8..].try_into().map_err(bad)?);
        let id: [u8; 32] = value[..32].try_into().map_err(bad)?;
        let tag = Tag(value[32..32 + TAG_LEN].try_into().map_err(bad)?);
        let expires = u32::from_be_bytes(value[32 + TAG_LEN..].try_into().map_err(bad)?);
        self.packets.remove(id)?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.by_tag.remove(tag_key(&tag, seq))?;
        self.by_expiry.remove(expiry_key(expires, seq))?;
        self.by_value.remove(key)?;
        tracing::debug!(id = %PacketId(id), "evicted the cheapest packet to make room");
        Ok(())
    }

    /// The admission floor now ([`crate::admission`]): the least score a new packet needs.
    pub fn floor(&self, now: u32) -> u64 {
        self.floor_with(0, now)
    }

    /// The floor once `extra` more packets are in (what a batch of that many must solve for).
    pub fn floor_with(&self, extra: u64, now: u32) -> u64 {
        let r = *self.rolling.locked();
        self.rules.floor(r, self.len().saturating_add(extra), now)
    }

    /// The network base this store was opened with.
    pub fn base_work(&self) -> u64 {
        self.rules.base
    }

    /// An eviction of a packet that scored `score`: raise the rolling floor and persist it
    /// (covered by the next [`Store::durable`]).
    fn raise_floor(&self, score: u64, now: u32) -> Result<(), StoreError> {
        let mut r = self.rolling.locked();
        *r = self.rules.after_eviction(*r, score, self.len(), now);
        self.meta.insert("floor", &r.encode()[..])?;
        Ok(())
    }

    /// What `k` new packets must each score above to get in: `None` while they fit; else the
    /// score of the `m`-th cheapest packet held, `m` being how many must make room.
    pub fn floor_for(&self, k: usize) -> Result<Option<u64>, StoreError> {
        let len = self.len();
        let need = (len + k as u64).saturating_sub(self.max_packets);
        if need == 0 {
            return Ok(None);
        }
        match self.live_values().nth(need as usize - 1) {
            Some(r) => Ok(Some(r?.0)),
            None => Ok(None),
        }
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
            // Not `flush_async`: that parks a thread of sled's small I/O pool, which the flush
            // itself needs for buffer writes; with several stores in one process (demo,
            // tests, benchmarks) the pool runs dry and flushes hang. A blocking flush on
            // tokio's blocking pool never occupies a runtime worker nor sled's pool.
            let (db, segments) = (self.db.clone(), self.segments.clone());
            // Packet bytes first, then the index that points at them.
            tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                segments.sync()?;
                db.flush()?;
                Ok(())
            })
            .await
            .map_err(|_| StoreError::Corrupt("flush task panicked"))??;
            self.flushed.send_modify(|v| *v = (*v).max(upto));
        }
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.segments.sync()?;
        self.db.flush()?;
        Ok(())
    }

    /// Look up one packet with its arrival sequence number, expired or not (the sweeper may
    /// not have reached it yet): readers that serve or show packets use [`Store::get_live`].
    pub fn get(&self, id: &PacketId) -> Result<Option<(u64, Packet)>, StoreError> {
        Ok(match self.lookup(id)? {
            Lookup::Found(seq, p) => Some((seq, p)),
            Lookup::Missing | Lookup::Damaged(_) => None,
        })
    }

    /// One packet that has not expired at `now`.
    pub fn get_live(&self, id: &PacketId, now: u32) -> Result<Option<(u64, Packet)>, StoreError> {
        Ok(self.get(id)?.filter(|(_, p)| p.expires > now))
    }

    fn lookup(&self, id: &PacketId) -> Result<Lookup, StoreError> {
        let Some(v) = self.packets.get(id.0)? else {
            return Ok(Lookup::Missing);
        };
        let (seq, loc) = decode_entry(&v)?;
        // Bytes that do not hash to the id (a write torn by an OS crash, a damaged or deleted
        // segment) are damaged: the index says the packet is there, the bytes are not it.
        match self.segments.read(loc) {
            Ok(bytes) if PacketId::of_bytes(&bytes) == *id => match Packet::decode(&bytes) {
                Ok(p) => Ok(Lookup::Found(seq, p)),
                Err(_) => {
                    self.note_damaged(loc);
                    Ok(Lookup::Damaged(loc))
                }
            },
            Ok(_) => {
                self.note_damaged(loc);
                tracing::warn!(
                    segment = %self.segments.name(loc.hour),
                    offset = loc.offset,
                    "packet bytes on disk do not match their id"
                );
                Ok(Lookup::Damaged(loc))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                self.note_damaged(loc);
                Ok(Lookup::Damaged(loc))
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
        let start = tag_key(tag, after.saturating_add(1));
        let end = tag_key(tag, u64::MAX);
        let mut out = TagRead::default();
        for item in self.by_tag.range(start..=end) {
            if out.packets.len() >= limit {
                out.more = true;
                break;
            }
            let (k, id) = item?;
            let id: [u8; 32] = id
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("tag index"))?;
            let seq = u64::from_be_bytes(
                k[TAG_LEN..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("tag key"))?,
            );
            // Dangling entries (packet swept, or an insert cut short by a crash) are skipped.
            match self.lookup(&PacketId(id))? {
                Lookup::Found(s, p) if s == seq && p.expires > now => out.packets.push((s, p)),
                Lookup::Damaged(loc) => out.damaged.push(self.segments.name(loc.hour)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Ids of all held packets, expired or not.
    pub fn ids(&self) -> impl Iterator<Item = Result<PacketId, StoreError>> + '_ {
        self.packets.iter().keys().map(|k| {
            let k = k?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("packet key"))?;
            Ok(PacketId(id))
        })
    }

    /// Ids of the packets that have not expired at `now` (for catch-up with peers), from the
    /// expiry index, so nothing the sweeper has not reached yet is announced.
    pub fn live_ids(&self, now: u32) -> impl Iterator<Item = Result<PacketId, StoreError>> + '_ {
        self.live_expiries(now).map(|r| r.map(|(id, _)| id))
    }

    /// [`Store::live_ids`] with each packet's expiry.
    pub fn live_expiries(
        &self,
        now: u32,
    ) -> impl Iterator<Item = Result<(PacketId, u32), StoreError>> + '_ {
        let start = expiry_key(now.saturating_add(1), 0);
        self.by_expiry.range(&start[..]..).map(|kv| {
            let (k, v) = kv?;
            let bad = || StoreError::Corrupt("expiry index");
            let id: [u8; 32] = v
                .get(..32)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            let expires = k
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(bad)?;
            Ok((PacketId(id), expires))
        })
    }

    /// Delete every packet with `expires <= now`. Returns how many were removed.
    pub fn sweep_expired(&self, now: u32) -> Result<usize, StoreError> {
        let _guard = self.write_lock.locked();
        self.sweep_expired_locked(now)
    }

    fn sweep_expired_locked(&self, now: u32) -> Result<usize, StoreError> {
        let end = expiry_key(now, u64::MAX);
        let mut removed = 0;
        loop {
            let entries: Vec<(sled::IVec, sled::IVec)> = self
                .by_expiry
                .range(..=&end[..])
                .take(SWEEP_BATCH)
                .collect::<Result<_, _>>()?;
            if entries.is_empty() {
                break;
            }
            for (ekey, v) in &entries {
                if ekey.len() != 12 || v.len() != 32 + TAG_LEN {
                    return Err(StoreError::Corrupt("expiry index"));
                }
                let seq = u64::from_be_bytes(
                    ekey[4..]
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("expiry key"))?,
                );
                let id: [u8; 32] = v[..32]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("expiry index"))?;
                let tag = Tag(v[32..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("expiry index"))?);
                // Delete the packet first (only if this entry is really its own), then indexes.
                if let Some(entry) = self.packets.get(id)? {
                    let (packet_seq, _, score) = decode_entry_full(&entry)?;
                    if packet_seq == seq {
                        self.packets.remove(id)?;
                        self.count.fetch_sub(1, Ordering::Relaxed);
                        self.by_value.remove(value_key(score, seq))?;
                        removed += 1;
                    }
                }
                self.by_tag.remove(tag_key(&tag, seq))?;
                self.by_expiry.remove(ekey)?;
            }
        }
        if removed > 0 {
            self.written.fetch_add(1, Ordering::SeqCst);
        }
        self.segments.remove_expired(now)?;
        Ok(removed)
    }
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
        assert!(store.lowest().unwrap().is_none());
    }

    #[test]
    fn the_floor_rises_with_fill_and_evictions_refuses_below_it_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            max_packets: 8,
            base_work: 16,
            ..StoreConfig::default()
        };
        let now = 1_000_000;
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
        assert_eq!(s.ids().count(), 3);
    }

    #[tokio::test]
    async fn reopen_keeps_packets_and_count() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), 100);
            s.insert(&pkt(1, 50, 1), 0).unwrap();
            s.insert(&pkt(1, 50, 2), 0).unwrap();
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
        let s = open(dir.path(), 100);
        let a = pkt(1, 50, 1);
        let b = pkt(1, 50, 2);
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

    #[test]
    fn dangling_index_entries_are_skipped_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 100);
        let a = pkt(1, 50, 1);
        s.insert(&a, 0).unwrap();
        // What a crash between the index writes and the commit point leaves behind: index
        // entries for seq 99 with no packet, and a stale entry naming `a` with a wrong seq.
        let ghost = pkt(1, 40, 2);
        let mut v = [0u8; 52];
        v[..32].copy_from_slice(&ghost.id().0);
        v[32..].copy_from_slice(&ghost.tag.0);
        s.by_tag
            .insert(tag_key(&ghost.tag, 99), &ghost.id().0[..])
            .unwrap();
        s.by_expiry.insert(expiry_key(40, 99), &v[..]).unwrap();
        s.by_tag.insert(tag_key(&a.tag, 98), &a.id().0[..]).unwrap();
        let got: Vec<Packet> = tag1(&s, 0);
        assert_eq!(got, vec![a.clone()], "dangling entries are invisible");
        // Sweeping past 40 removes the ghost's entries and leaves `a` alone.
        assert_eq!(s.sweep_expired(45).unwrap(), 0);
        assert_eq!(s.by_expiry.len(), 1);
        assert_eq!(s.len(), 1);
        // The ghost can now be inserted for real.
        assert!(matches!(s.insert(&ghost, 0).unwrap(), Inserted::New(_)));
        assert_eq!(s.by_tag(&Tag([1; 20]), 0, 10).unwrap().len(), 2);
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
