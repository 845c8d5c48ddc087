//! The packet index on disk: a snapshot and a journal of changes since, from which
//! [`super::index::Index`] is loaded at start. Both are caches of the segment files (which can
//! always rebuild them, [`super::Store`]); they exist so that a node with a million packets
//! starts in well under two seconds without reading a gigabyte of segments.
//!
//! Files in the store directory:
//!
//! | file            | content                                                      |
//! |-----------------|--------------------------------------------------------------|
//! | `index.snap`    | header, then one `add` record per packet held when it was written |
//! | `index.log`     | header, then one record per change since: `add` on insert, `remove` on eviction |
//!
//! Header (16 bytes): `BUMPIDX1`, then the highest arrival seq handed out so far (u64 BE), so
//! a store whose packets all expired still never reuses a seq.
//!
//! Record (81 bytes): kind (1 `add`, 2 `remove`) ‖ id (32) ‖ tag (20) ‖ expires (u32 BE) ‖
//! record number in the hour's segment (u32 BE) ‖ seq (u64 BE) ‖ score (u64 BE) ‖ CRC-32 of
//! the 77 bytes before it (u32 BE).
//!
//! Expiry is not journaled: a loader drops what has expired. Replay is idempotent (`add`
//! replaces the entry of its id; `remove` removes it only at the same location), so a crash
//! between writing a new snapshot and emptying the journal loses nothing and duplicates
//! nothing. A torn tail of the journal (records that do not check after the last one that
//! does) is what a crash leaves: it is cut off. A bad record followed by good ones, a bad
//! header or a snapshot that does not check is damage: the caller rebuilds from the segments.
//!
//! Durability follows the segments': [`Journal::sync`] after the segment files are synced, so
//! a journaled packet's bytes are always on disk.

use super::index::Held;
use crate::packet::PacketId;
use crate::sync::Locked;
use crate::tag::Tag;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const SNAPSHOT: &str = "index.snap";
pub const LOG: &str = "index.log";
const MAGIC: &[u8; 8] = b"BUMPIDX1";
pub const HEADER_LEN: usize = 16;
pub const RECORD_LEN: usize = 81;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Add = 1,
    Remove = 2,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{file} is damaged: {what}")]
    Damaged { file: &'static str, what: String },
}

pub fn encode(kind: Kind, h: &Held) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = kind as u8;
    r[1..33].copy_from_slice(&h.id.0);
    r[33..53].copy_from_slice(&h.tag.0);
    r[53..57].copy_from_slice(&h.expires.to_be_bytes());
    r[57..61].copy_from_slice(&h.record.to_be_bytes());
    r[61..69].copy_from_slice(&h.seq.to_be_bytes());
    r[69..77].copy_from_slice(&h.score.to_be_bytes());
    let crc = crc32fast::hash(&r[..77]);
    r[77..].copy_from_slice(&crc.to_be_bytes());
    r
}

/// `None` if the record does not check (CRC, kind).
pub fn decode(r: &[u8; RECORD_LEN]) -> Option<(Kind, Held)> {
    let crc = u32::from_be_bytes(r[77..].try_into().ok()?);
    if crc32fast::hash(&r[..77]) != crc {
        return None;
    }
    let kind = match r[0] {
        1 => Kind::Add,
        2 => Kind::Remove,
        _ => return None,
    };
    let u32_at = |i: usize| r[i..i + 4].try_into().ok().map(u32::from_be_bytes);
    let u64_at = |i: usize| r[i..i + 8].try_into().ok().map(u64::from_be_bytes);
    Some((
        kind,
        Held {
            id: PacketId(r[1..33].try_into().ok()?),
            tag: Tag(r[33..53].try_into().ok()?),
            expires: u32_at(53)?,
            record: u32_at(57)?,
            seq: u64_at(61)?,
            score: u64_at(69)?,
        },
    ))
}

fn header(max_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&max_seq.to_be_bytes());
    h
}

/// What replaying one file found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    /// The seq in the header.
    pub max_seq: u64,
    /// Bytes of the file that check (header and whole good records): a torn tail starts here.
    pub good_len: u64,
    /// The file had a torn tail (only possible for the journal; a snapshot with one is damaged).
    pub torn: bool,
}

/// Read `path` record by record into `apply`. `Ok(None)` if the file does not exist.
pub fn replay(
    path: &Path,
    file: &'static str,
    allow_torn: bool,
    mut apply: impl FnMut(Kind, Held),
) -> Result<Option<Replayed>, JournalError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let damaged = |what: String| JournalError::Damaged { file, what };
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut head = [0u8; HEADER_LEN];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        // A journal cut before its header was whole: nothing in it was ever acknowledged.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && allow_torn => {
            return Ok(Some(Replayed {
                torn: true,
                ..Replayed::default()
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(damaged("shorter than its header".into()))
        }
        Err(e) => return Err(e.into()),
    }
    if &head[..8] != MAGIC {
        return Err(damaged("the header is not BUMPIDX1".into()));
    }
    let mut out = Replayed {
        max_seq: u64::from_be_bytes(head[8..].try_into().unwrap_or([0; 8])),
        good_len: HEADER_LEN as u64,
        ..Replayed::default()
    };
    let mut rec = [0u8; RECORD_LEN];
    let mut bad_at: Option<u64> = None;
    loop {
        let mut got = 0;
        while got < RECORD_LEN {
            match r.read(&mut rec[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got == 0 {
            break;
        }
        if got < RECORD_LEN {
            bad_at.get_or_insert(out.good_len);
            break;
        }
        match decode(&rec) {
            Some((kind, h)) if bad_at.is_none() => {
                apply(kind, h);
                out.records += 1;
                out.good_len += RECORD_LEN as u64;
            }
            Some(_) => {
                return Err(damaged(format!(
                    "a record at byte {} does not check but later ones do",
                    bad_at.unwrap_or(0)
                )))
            }
            None => {
                bad_at.get_or_insert(out.good_len);
            }
        }
    }
    if bad_at.is_some() {
        if !allow_torn {
            return Err(damaged(format!(
                "its tail from byte {} does not check",
                out.good_len
            )));
        }
        out.torn = true;
    }
    Ok(Some(out))
}

/// The open journal: appends buffered until [`Journal::sync`].
pub struct Journal {
    dir: PathBuf,
    log: Mutex<BufWriter<File>>,
    /// The same file, for fsync without holding the buffer's lock.
    sync_file: Mutex<Arc<File>>,
    in_log: AtomicU64,
}

impl Journal {
    /// Open `index.log` in `dir` for appending (created with a header if missing), after the
    /// caller replayed it; `good_len` (from [`replay`]) cuts off a torn tail.
    pub fn open(
        dir: &Path,
        good_len: Option<u64>,
        max_seq: u64,
        in_log: u64,
    ) -> std::io::Result<Journal> {
        let path = dir.join(LOG);
        let fresh = match good_len {
            Some(n) if n >= HEADER_LEN as u64 => {
                let f = OpenOptions::new().read(true).write(true).open(&path)?;
                f.set_len(n)?;
                f.sync_all()?;
                None
            }
            _ => Some(()),
        };
        if fresh.is_some() {
            write_atomically(dir, LOG, &header(max_seq), |_| Ok(()))?;
        }
        let mut f = OpenOptions::new().read(true).write(true).open(&path)?;
        f.seek(SeekFrom::End(0))?;
        let sync = Arc::new(f.try_clone()?);
        Ok(Journal {
            dir: dir.to_path_buf(),
            log: Mutex::new(BufWriter::with_capacity(1 << 16, f)),
            sync_file: Mutex::new(sync),
            in_log: AtomicU64::new(if fresh.is_some() { 0 } else { in_log }),
        })
    }

    pub fn append(&self, kind: Kind, h: &Held) -> std::io::Result<()> {
        self.log.locked().write_all(&encode(kind, h))?;
        self.in_log.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records in the journal since the last snapshot.
    pub fn in_log(&self) -> u64 {
        self.in_log.load(Ordering::Relaxed)
    }

    /// Everything appended so far on disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.log.locked().flush()?;
        let f = self.sync_file.locked().clone();
        f.sync_data()
    }

    /// Write a new snapshot of `held` and empty the journal. The caller holds off appends (it
    /// holds the index lock) and has synced the segment files.
    /// `each` calls its argument once per packet held, each tag's packets in arrival order.
    pub fn snapshot(
        &self,
        max_seq: u64,
        each: impl FnOnce(&mut dyn FnMut(&Held) -> std::io::Result<()>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut log = self.log.locked();
        log.flush()?;
        write_atomically(&self.dir, SNAPSHOT, &header(max_seq), |w| {
            each(&mut |h| w.write_all(&encode(Kind::Add, h)))
        })?;
        // Now the snapshot covers the journal: start a fresh one (a crash before this line
        // replays the old journal over the new snapshot, which changes nothing).
        write_atomically(&self.dir, LOG, &header(max_seq), |_| Ok(()))?;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(LOG))?;
        f.seek(SeekFrom::End(0))?;
        *self.sync_file.locked() = Arc::new(f.try_clone()?);
        *log = BufWriter::with_capacity(1 << 16, f);
        self.in_log.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// Write `name` in `dir` as header + what `body` writes, via a temporary file: fsync,
/// rename, fsync the directory.
fn write_atomically(
    dir: &Path,
    name: &str,
    head: &[u8; HEADER_LEN],
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(head)?;
        body(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn held(i: u8) -> Held {
        Held {
            id: PacketId([i; 32]),
            seq: 1000 + i as u64,
            expires: 7200 + i as u32,
            tag: Tag([i ^ 0x55; 20]),
            record: i as u32 * 3,
            score: 1 << (i % 60),
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(id in any::<[u8; 32]>(), tag in any::<[u8; 20]>(), expires: u32, record: u32, seq: u64, score: u64, remove: bool) {
            let h = Held { id: PacketId(id), tag: Tag(tag), expires, record, seq, score };
            let kind = if remove { Kind::Remove } else { Kind::Add };
            prop_assert_eq!(decode(&encode(kind, &h)), Some((kind, h)));
        }

        #[test]
        fn any_flipped_bit_is_caught(i in 0..RECORD_LEN * 8) {
            let mut r = encode(Kind::Add, &held(7));
            r[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(decode(&r), None);
        }
    }

    fn replay_all(
        dir: &Path,
        name: &str,
        torn: bool,
    ) -> Result<(Vec<(Kind, Held)>, Replayed), JournalError> {
        let mut got = Vec::new();
        let r = replay(&dir.join(name), "test", torn, |k, h| got.push((k, h)))?;
        Ok((got, r.unwrap_or_default()))
    }

    #[test]
    fn append_sync_snapshot_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), None, 5, 0).unwrap();
        j.append(Kind::Add, &held(1)).unwrap();
        j.append(Kind::Remove, &held(1)).unwrap();
        j.append(Kind::Add, &held(2)).unwrap();
        j.sync().unwrap();
        let (got, r) = replay_all(dir.path(), LOG, true).unwrap();
        assert_eq!(
            got,
            vec![
                (Kind::Add, held(1)),
                (Kind::Remove, held(1)),
                (Kind::Add, held(2))
            ]
        );
        assert_eq!((r.records, r.max_seq, r.torn), (3, 5, false));
        j.snapshot(1002, |w| w(&held(2))).unwrap();
        j.append(Kind::Add, &held(3)).unwrap();
        j.sync().unwrap();
        let (snap, r) = replay_all(dir.path(), SNAPSHOT, false).unwrap();
        assert_eq!((snap, r.max_seq), (vec![(Kind::Add, held(2))], 1002));
        let (log, _) = replay_all(dir.path(), LOG, true).unwrap();
        assert_eq!(log, vec![(Kind::Add, held(3))]);
        assert!(replay(&dir.path().join("nothing"), "x", true, |_, _| {})
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_inside_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), None, 0, 0).unwrap();
        for i in 0..4 {
            j.append(Kind::Add, &held(i)).unwrap();
        }
        j.sync().unwrap();
        drop(j);
        let path = dir.path().join(LOG);
        let whole = std::fs::read(&path).unwrap();
        // Half a record at the end (a crash mid-append): cut off, the rest kept.
        std::fs::write(&path, &whole[..whole.len() - 40]).unwrap();
        let (got, r) = replay_all(dir.path(), LOG, true).unwrap();
        assert_eq!((got.len(), r.torn), (3, true));
        let j = Journal::open(dir.path(), Some(r.good_len), 0, r.records).unwrap();
        j.append(Kind::Add, &held(9)).unwrap();
        j.sync().unwrap();
        let (got, r) = replay_all(dir.path(), LOG, true).unwrap();
        assert_eq!((got.len(), r.torn, got[3].1), (4, false, held(9)));
        // A garbled record with good ones after it: damage, not a torn tail.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + RECORD_LEN + 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            replay_all(dir.path(), LOG, true),
            Err(JournalError::Damaged { .. })
        ));
        // A snapshot never has a torn tail.
        bytes[HEADER_LEN + RECORD_LEN + 10] ^= 1;
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            replay_all(dir.path(), LOG, false),
            Err(JournalError::Damaged { .. })
        ));
        std::fs::write(&path, b"not an index at all").unwrap();
        assert!(matches!(
            replay_all(dir.path(), LOG, true),
            Err(JournalError::Damaged { .. })
        ));
    }
}
