//! Packet bytes on disk: append-only segment files, one per expiry hour.
//!
//! A packet whose `expires` falls in hour `h` (`expires / 3600`) is appended to
//! `<dir>/<h>.seg`; its location is (h, byte offset). Segments are never rewritten: once every
//! packet in hour `h` has expired the whole file is deleted, so expiry needs no compaction and
//! the disk holds 1024 bytes per packet. The index that says which packets exist is the store's
//! ([`crate::store`]); a segment may hold bytes no index entry points to (an insert cut short by
//! a crash), which are simply never read.
//!
//! Appends are gathered in memory per segment (up to [`WRITE_BUFFER`] bytes) and written in
//! one `pwrite`, at the latest by [`Segments::sync`]; reads of bytes not yet written are served
//! from that buffer. (One system call per packet was a tenth of the relay path's time.)
//!
//! On open, a file whose length is not a multiple of 1024 (a torn append) is truncated to the
//! last whole packet.
//!
//! The segments are the truth and the index a cache: [`Segments::hours`] and
//! [`Segments::scan`] read every record back, which is how the store rebuilds a missing or
//! damaged index ([`crate::store`]).

use crate::packet::PACKET_LEN;
use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Seconds per segment.
pub const SEGMENT_SECS: u32 = 3600;

/// Where a packet's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub hour: u32,
    pub offset: u64,
}

/// Most records [`Segments::read_many`] reads in one system call (64 KiB).
pub const READ_RUN: usize = 64;

/// Appended bytes gathered before one write.
pub const WRITE_BUFFER: usize = 256 * 1024;

struct Segment {
    file: Arc<File>,
    /// Bytes in the file and in `pending`.
    len: u64,
    /// Appended, not yet written; they belong at `len - pending.len()`.
    pending: Vec<u8>,
}

impl Segment {
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let at = self.len - self.pending.len() as u64;
            self.file.write_all_at(&self.pending, at)?;
            self.pending.clear();
        }
        Ok(())
    }
}

pub struct Segments {
    dir: PathBuf,
    open: Mutex<HashMap<u32, Segment>>,
    dirty: Mutex<HashSet<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

impl Segments {
    pub fn open(dir: &Path) -> std::io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        Ok(Segments {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
        })
    }

    /// The file name of hour `hour`'s segment, for reports.
    pub fn name(&self, hour: u32) -> String {
        format!("{hour}.seg")
    }

    fn path(&self, hour: u32) -> PathBuf {
        self.dir.join(format!("{hour}.seg"))
    }

    fn segment(
        &self,
        map: &mut HashMap<u32, Segment>,
        hour: u32,
    ) -> std::io::Result<(Arc<File>, u64)> {
        if let Some(s) = map.get(&hour) {
            return Ok((s.file.clone(), s.len));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(hour))?;
        let mut len = file.metadata()?.len();
        if len % PACKET_LEN as u64 != 0 {
            len -= len % PACKET_LEN as u64;
            file.set_len(len)?;
        }
        let file = Arc::new(file);
        map.insert(
            hour,
            Segment {
                file: file.clone(),
                len,
                pending: Vec::new(),
            },
        );
        Ok((file, len))
    }

    /// Append a packet expiring at `expires`; returns where it went. Not durable until
    /// [`Segments::sync`].
    pub fn append(&self, expires: u32, bytes: &[u8; PACKET_LEN]) -> std::io::Result<Location> {
        let hour = expires / SEGMENT_SECS;
        let mut map = lock(&self.open);
        let (_, offset) = self.segment(&mut map, hour)?;
        if let Some(s) = map.get_mut(&hour) {
            if s.pending.len() + PACKET_LEN > WRITE_BUFFER {
                s.flush()?;
            }
            s.pending.extend_from_slice(bytes);
            s.len = offset + PACKET_LEN as u64;
        }
        drop(map);
        lock(&self.dirty).insert(hour);
        Ok(Location { hour, offset })
    }

    /// Read the packet bytes at `loc` (the caller checks they hash to the id it expects).
    pub fn read(&self, loc: Location) -> std::io::Result<[u8; PACKET_LEN]> {
        let file = {
            let mut map = lock(&self.open);
            if !map.contains_key(&loc.hour) && !self.path(loc.hour).exists() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "segment deleted",
                ));
            }
            self.segment(&mut map, loc.hour)?;
            match map.get(&loc.hour) {
                Some(s) => {
                    let start = s.len - s.pending.len() as u64;
                    if loc.offset >= start {
                        let at = (loc.offset - start) as usize;
                        let mut out = [0u8; PACKET_LEN];
                        match s.pending.get(at..at + PACKET_LEN) {
                            Some(b) => out.copy_from_slice(b),
                            None => {
                                return Err(std::io::Error::new(
                                    std::io::ErrorKind::UnexpectedEof,
                                    "past the end of the segment",
                                ))
                            }
                        }
                        return Ok(out);
                    }
                    s.file.clone()
                }
                None => return Err(std::io::Error::other("segment vanished")),
            }
        };
        let mut out = [0u8; PACKET_LEN];
        file.read_exact_at(&mut out, loc.offset)?;
        Ok(out)
    }

    /// Read the records at `locs`: `f(i, bytes of locs[i])` for each, in disk order.
    /// Records that lie next to each other in one file (up to [`READ_RUN`] of them) come in
    /// one read, so a peer served in disk order costs one system call per run rather than per
    /// packet, and no copy; a run that fails or reaches bytes not yet written falls back to
    /// [`Segments::read`] record by record.
    pub fn read_many(
        &self,
        locs: &[Location],
        mut f: impl FnMut(usize, std::io::Result<&[u8; PACKET_LEN]>),
    ) {
        let mut order: Vec<usize> = (0..locs.len()).collect();
        order.sort_unstable_by_key(|&i| (locs[i].hour, locs[i].offset));
        let mut buf = Vec::new();
        let mut at = 0;
        while at < order.len() {
            let first = locs[order[at]];
            let mut end = at + 1;
            while end < order.len()
                && end - at < READ_RUN
                && locs[order[end]].hour == first.hour
                && locs[order[end]].offset == first.offset + ((end - at) * PACKET_LEN) as u64
            {
                end += 1;
            }
            let run = &order[at..end];
            at = end;
            if run.len() > 1 {
                // The file, if the whole run is already written to it.
                let file = {
                    let map = lock(&self.open);
                    map.get(&first.hour).and_then(|s| {
                        let written = s.len - s.pending.len() as u64;
                        (first.offset + (run.len() * PACKET_LEN) as u64 <= written)
                            .then(|| s.file.clone())
                    })
                };
                if let Some(file) = file {
                    buf.resize(run.len() * PACKET_LEN, 0);
                    if file.read_exact_at(&mut buf, first.offset).is_ok() {
                        let (records, _) = buf.as_chunks::<PACKET_LEN>();
                        for (&i, rec) in run.iter().zip(records) {
                            f(i, Ok(rec));
                        }
                        continue;
                    }
                }
            }
            for &i in run {
                match self.read(locs[i]) {
                    Ok(rec) => f(i, Ok(&rec)),
                    Err(e) => f(i, Err(e)),
                }
            }
        }
    }

    /// fsync every segment appended to since the last sync.
    pub fn sync(&self) -> std::io::Result<()> {
        let dirty: Vec<u32> = lock(&self.dirty).drain().collect();
        for hour in dirty {
            let file = {
                let mut map = lock(&self.open);
                match map.get_mut(&hour) {
                    Some(s) => {
                        if let Err(e) = s.flush() {
                            drop(map);
                            lock(&self.dirty).insert(hour);
                            return Err(e);
                        }
                        Some(s.file.clone())
                    }
                    None => None,
                }
            };
            if let Some(f) = file {
                if let Err(e) = f.sync_data() {
                    lock(&self.dirty).insert(hour);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Delete the segments whose every packet has expired by `now` (hour `h` holds expiries
    /// up to `(h + 1) * 3600 - 1`). Returns how many files were removed.
    pub fn remove_expired(&self, now: u32) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let hour = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|h| h.parse::<u32>().ok());
            let Some(hour) = hour else { continue };
            if (hour as u64 + 1) * SEGMENT_SECS as u64 <= now as u64 + 1 {
                lock(&self.open).remove(&hour);
                lock(&self.dirty).remove(&hour);
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The length of hour `hour`'s segment file in whole records' bytes (0 if it has none).
    pub fn len_of(&self, hour: u32) -> std::io::Result<u64> {
        if let Some(s) = lock(&self.open).get(&hour) {
            return Ok(s.len);
        }
        match std::fs::metadata(self.path(hour)) {
            Ok(m) => Ok(m.len() - m.len() % PACKET_LEN as u64),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The hours that have a segment file, oldest first.
    pub fn hours(&self) -> std::io::Result<Vec<u32>> {
        let mut out: Vec<u32> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Call `f` with every whole record of hour `hour`'s segment, in file order (a torn tail is
    /// ignored). Reads 1 MiB at a time.
    pub fn scan(
        &self,
        hour: u32,
        mut f: impl FnMut(Location, &[u8; PACKET_LEN]),
    ) -> std::io::Result<()> {
        use std::io::Read;
        let mut file = std::io::BufReader::with_capacity(1 << 20, File::open(self.path(hour))?);
        let mut buf = [0u8; PACKET_LEN];
        let mut offset = 0u64;
        loop {
            match file.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            f(Location { hour, offset }, &buf);
            offset += PACKET_LEN as u64;
        }
    }

    /// Bytes used by segment files.
    pub fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|it| {
                it.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for Segments {
    /// Write what is still gathered (not synced: a drop is not an acknowledgement), so that a
    /// journal flushed on its own drop never names bytes that were only in memory.
    fn drop(&mut self) {
        for s in lock(&self.open).values_mut() {
            if let Err(e) = s.flush() {
                tracing::error!("could not write a segment's last appends: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_sync_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let a = s.append(3600 * 5 + 10, &[1; PACKET_LEN]).unwrap();
        let b = s.append(3600 * 5 + 20, &[2; PACKET_LEN]).unwrap();
        let c = s.append(3600 * 6, &[3; PACKET_LEN]).unwrap();
        assert_eq!(
            (a.hour, a.offset, b.offset, c.hour, c.offset),
            (5, 0, 1024, 6, 0)
        );
        s.sync().unwrap();
        assert_eq!(s.read(b).unwrap(), [2; PACKET_LEN]);
        assert_eq!(s.size_on_disk(), 3 * 1024);
        // At 6*3600-1 every expiry of hour 5 (≤ 6*3600-1) has passed.
        assert_eq!(s.remove_expired(3600 * 6 - 2).unwrap(), 0);
        assert_eq!(s.remove_expired(3600 * 6 - 1).unwrap(), 1);
        assert!(s.read(a).is_err());
        assert_eq!(s.read(c).unwrap(), [3; PACKET_LEN]);
    }

    #[test]
    fn appends_are_readable_before_and_after_their_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let per = WRITE_BUFFER / PACKET_LEN;
        // More than one buffer's worth: the first buffer is written when it fills.
        let locs: Vec<Location> = (0..per + 3)
            .map(|i| s.append(3600 * 7, &[(i % 251) as u8; PACKET_LEN]).unwrap())
            .collect();
        let on_disk = std::fs::metadata(dir.path().join("7.seg")).unwrap().len();
        assert_eq!(on_disk, WRITE_BUFFER as u64, "one write of a full buffer");
        for (i, l) in locs.iter().enumerate() {
            assert_eq!(
                s.read(*l).unwrap(),
                [(i % 251) as u8; PACKET_LEN],
                "record {i}"
            );
        }
        assert!(s
            .read(Location {
                hour: 7,
                offset: ((per + 3) * PACKET_LEN) as u64
            })
            .is_err());
        s.sync().unwrap();
        let on_disk = std::fs::metadata(dir.path().join("7.seg")).unwrap().len();
        assert_eq!(on_disk, ((per + 3) * PACKET_LEN) as u64);
        // Dropped unsynced: the tail is written anyway.
        s.append(3600 * 7, &[9; PACKET_LEN]).unwrap();
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.len_of(7).unwrap(), ((per + 4) * PACKET_LEN) as u64);
    }

    #[test]
    fn read_many_answers_each_location_once_across_runs_buffers_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let rec = |i: usize| [(i % 251) as u8; PACKET_LEN];
        // Hour 3: written (more than one run), then a few still in the buffer; hour 4: one.
        let n = READ_RUN * 2 + 5;
        let mut locs: Vec<Location> = (0..n)
            .map(|i| s.append(3 * 3600, &rec(i)).unwrap())
            .collect();
        s.sync().unwrap();
        locs.extend((n..n + 3).map(|i| s.append(3 * 3600, &rec(i)).unwrap()));
        let other = s.append(4 * 3600, &rec(999)).unwrap();
        // Asked out of order, with a gap, a duplicate, a record past the end and a missing hour.
        let mut ask: Vec<Location> = locs.iter().rev().copied().collect();
        ask.remove(7);
        ask.insert(3, other);
        ask.push(locs[0]);
        let past = Location {
            hour: 3,
            offset: ((n + 3) * PACKET_LEN) as u64,
        };
        let gone = Location { hour: 8, offset: 0 };
        ask.push(past);
        ask.push(gone);
        let mut got: Vec<Option<std::io::Result<[u8; PACKET_LEN]>>> =
            (0..ask.len()).map(|_| None).collect();
        s.read_many(&ask, |i, r| {
            assert!(got[i].is_none(), "answered once");
            got[i] = Some(r.copied());
        });
        for (l, r) in ask.iter().zip(got) {
            let r = r.expect("every location answered");
            if *l == past || *l == gone {
                assert!(r.is_err(), "{l:?} is not there");
            } else if *l == other {
                assert_eq!(r.as_ref().unwrap(), &rec(999));
            } else {
                let i = (l.offset / PACKET_LEN as u64) as usize;
                assert_eq!(r.as_ref().unwrap(), &rec(i), "{l:?}");
            }
        }
    }

    #[test]
    fn scan_reads_every_whole_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        for i in 0..3u8 {
            s.append(3600 * 9, &[i; PACKET_LEN]).unwrap();
        }
        s.append(3600 * 4, &[7; PACKET_LEN]).unwrap();
        s.sync().unwrap();
        assert_eq!(s.hours().unwrap(), vec![4, 9]);
        let mut seen = Vec::new();
        s.scan(9, |loc, b| seen.push((loc.offset, b[0]))).unwrap();
        assert_eq!(seen, vec![(0, 0), (1024, 1), (2048, 2)]);
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Segments::open(dir.path()).unwrap();
            s.append(7200, &[9; PACKET_LEN]).unwrap();
        }
        let p = dir.path().join("2.seg");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, &[7; 100]).unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let loc = s.append(7200, &[8; PACKET_LEN]).unwrap();
        assert_eq!(loc.offset, 1024, "the torn 100 bytes were cut off");
        s.sync().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2048);
    }
}
