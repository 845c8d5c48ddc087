//! Packet bytes on disk: append-only segment files, one per expiry hour.
//!
//! A packet whose `expires` falls in hour `h` (`expires / 3600`) is appended to
//! `<dir>/<h>.seg`; its location is (h, byte offset). Segments are never rewritten: once every
//! packet in hour `h` has expired the whole file is deleted, so expiry needs no compaction and
//! the disk holds 1024 bytes per packet. The index that says which packets exist is the store's
//! ([`crate::store`]); a segment may hold bytes no index entry points to (an insert cut short by
//! a crash), which are simply never read.
//!
//! Appends are gathered in memory per segment and written in one `pwrite` of at least
//! [`WRITE_BUFFER`] bytes, at the latest by [`Segments::sync`]. (One system call per packet was
//! a tenth of the relay path's time.) The write itself happens in [`Segments::write_out`],
//! which the store calls after it let go of its index lock: a full buffer is taken out of the
//! segment under the segment lock, written without any lock, and dropped once on disk, so a
//! slow page cache never holds up lookups or other appends. Bytes not yet on disk — still
//! gathered, or being written — are read from memory. [`Segments::sync`] writes what is
//! gathered, waits for writes that other threads began before it, retries any that failed,
//! then syncs the files: nothing it covers is only in memory.
//!
//! On open, a file whose length is not a multiple of 1024 (a torn append) is truncated to the
//! last whole packet.
//!
//! The segments are the truth and the index a cache: [`Segments::hours`] and
//! [`Segments::scan`] read every record back, which is how the store rebuilds a missing or
//! damaged index ([`crate::store`]).

use crate::packet::PACKET_LEN;
use crate::sync::Locked;
use hashbrown::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

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

/// Gathered bytes at which [`Segments::append`] writes them itself (a caller that never
/// calls [`Segments::write_out`] still has its memory bounded).
const APPEND_WRITES_AT: usize = 16 * WRITE_BUFFER;

/// Bytes taken out of a segment's gathering buffer and being written (or whose write failed
/// and waits for the next [`Segments::sync`] to try again).
struct Writing {
    /// Order in which writes began ([`Open::next_write`]).
    seq: u64,
    at: u64,
    bytes: Arc<Vec<u8>>,
    failed: bool,
}

impl Writing {
    /// Record `offset` if this buffer holds it.
    fn record(&self, offset: u64) -> Option<&[u8]> {
        let at = offset.checked_sub(self.at)? as usize;
        self.bytes.get(at..at + PACKET_LEN)
    }
}

struct Segment {
    file: Arc<File>,
    /// Bytes in the file, being written and gathered.
    len: u64,
    /// Appended, not yet written; they belong at `len - pending.len()`.
    pending: Vec<u8>,
    /// Earlier buffers whose write has not finished.
    writing: Vec<Writing>,
}

impl Segment {
    /// Where the bytes still in memory begin: every byte before is in the file.
    fn written(&self) -> u64 {
        let gathered = self.len - self.pending.len() as u64;
        // Buffers being written all lie before the gathered bytes.
        self.writing.iter().map(|w| w.at).min().unwrap_or(gathered)
    }

    /// Write the gathered bytes now, under the caller's lock (the drop, the backstop).
    fn write_pending(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let at = self.len - self.pending.len() as u64;
            self.file.write_all_at(&self.pending, at)?;
            self.pending.clear();
        }
        Ok(())
    }
}

#[derive(Default)]
struct Open {
    segments: HashMap<u32, Segment>,
    next_write: u64,
    /// Hours appended to since their last sync.
    dirty: HashSet<u32>,
    /// Written buffers kept for the next gathering (their memory already mapped).
    spare: Vec<Vec<u8>>,
}

/// Most written buffers kept in [`Open::spare`].
const SPARE_BUFFERS: usize = 4;

/// A write taken out of a segment: (hour, file, offset, bytes, seq).
type Job = (u32, Arc<File>, u64, Arc<Vec<u8>>, u64);

pub struct Segments {
    dir: PathBuf,
    open: Mutex<Open>,
    /// Signalled when a write taken out of a segment ends.
    wrote: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

impl Segments {
    pub fn open(dir: &Path) -> std::io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        Ok(Segments {
            dir: dir.to_path_buf(),
            open: Mutex::new(Open::default()),
            wrote: Condvar::new(),
        })
    }

    /// The file name of hour `hour`'s segment, for reports.
    pub fn name(&self, hour: u32) -> String {
        format!("{hour}.seg")
    }

    fn path(&self, hour: u32) -> PathBuf {
        self.dir.join(format!("{hour}.seg"))
    }

    /// Hour `hour`'s segment, its file opened (and created) if it was not yet.
    fn segment<'m>(
        &self,
        map: &'m mut HashMap<u32, Segment>,
        hour: u32,
    ) -> std::io::Result<&'m mut Segment> {
        Ok(match map.entry(hour) {
            hashbrown::hash_map::Entry::Occupied(e) => e.into_mut(),
            hashbrown::hash_map::Entry::Vacant(v) => v.insert(self.open_segment(hour)?),
        })
    }

    fn open_segment(&self, hour: u32) -> std::io::Result<Segment> {
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
        Ok(Segment {
            file: Arc::new(file),
            len,
            pending: Vec::new(),
            writing: Vec::new(),
        })
    }

    /// Append a packet expiring at `expires`; returns where it went (the store appends with
    /// [`Segments::append_with`]).
    #[cfg(test)]
    pub fn append(&self, expires: u32, bytes: &[u8; PACKET_LEN]) -> std::io::Result<Location> {
        self.append_with(expires, |out| out.copy_from_slice(bytes))
    }

    /// Append the record `fill` writes (into zeroed memory, in the gathering buffer itself)
    /// for a packet expiring at `expires`; returns where it went. Gathered in memory:
    /// [`Segments::write_out`] writes it, [`Segments::sync`] makes it durable.
    pub fn append_with(
        &self,
        expires: u32,
        fill: impl FnOnce(&mut [u8; PACKET_LEN]),
    ) -> std::io::Result<Location> {
        let hour = expires / SEGMENT_SECS;
        let mut open = lock(&self.open);
        let Open {
            segments,
            dirty,
            spare,
            ..
        } = &mut *open;
        let s = self.segment(segments, hour)?;
        if s.pending.len() + PACKET_LEN > APPEND_WRITES_AT {
            s.write_pending()?;
        }
        if s.pending.capacity() == 0 {
            s.pending = spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER));
        }
        let offset = s.len;
        let start = s.pending.len();
        s.pending.resize(start + PACKET_LEN, 0);
        let record: &mut [u8; PACKET_LEN] = (&mut s.pending[start..])
            .try_into()
            .map_err(|_| std::io::Error::other("record length"))?;
        fill(record);
        s.len = offset + PACKET_LEN as u64;
        dirty.insert(hour);
        Ok(Location { hour, offset })
    }

    /// Write every segment's gathered bytes that reach `min` (at least one byte), without
    /// holding the segment lock while the system writes them. A failed write keeps its bytes
    /// in memory (still readable) for [`Segments::sync`] to try again, and is returned.
    pub fn write_out(&self, min: usize) -> std::io::Result<()> {
        let jobs: Vec<Job> = {
            let mut open = lock(&self.open);
            let Open {
                segments,
                next_write,
                ..
            } = &mut *open;
            let mut jobs = Vec::new();
            for (&hour, s) in segments.iter_mut() {
                if s.pending.is_empty() || s.pending.len() < min {
                    continue;
                }
                let bytes = Arc::new(std::mem::take(&mut s.pending));
                let at = s.len - bytes.len() as u64;
                let seq = *next_write;
                *next_write += 1;
                s.writing.push(Writing {
                    seq,
                    at,
                    bytes: bytes.clone(),
                    failed: false,
                });
                jobs.push((hour, s.file.clone(), at, bytes, seq));
            }
            jobs
        };
        self.run(jobs)
    }

    /// Write taken-out buffers; each leaves its segment's `writing` once on disk.
    fn run(&self, jobs: Vec<Job>) -> std::io::Result<()> {
        let mut result = Ok(());
        for (hour, file, at, bytes, seq) in jobs {
            let r = file.write_all_at(&bytes, at);
            let mut open = lock(&self.open);
            if let Some(s) = open.segments.get_mut(&hour) {
                match &r {
                    Ok(()) => s.writing.retain(|w| w.seq != seq),
                    Err(_) => {
                        if let Some(w) = s.writing.iter_mut().find(|w| w.seq == seq) {
                            w.failed = true;
                        }
                    }
                }
            }
            // Written and no reader holding it: kept for the next gathering.
            if r.is_ok() && open.spare.len() < SPARE_BUFFERS {
                if let Ok(mut buf) = Arc::try_unwrap(bytes) {
                    buf.clear();
                    open.spare.push(buf);
                }
            }
            drop(open);
            self.wrote.notify_all();
            if let Err(e) = r {
                result = Err(e);
            }
        }
        result
    }

    /// Read the packet bytes at `loc` (the caller checks they hash to the id it expects).
    pub fn read(&self, loc: Location) -> std::io::Result<[u8; PACKET_LEN]> {
        let file = {
            let mut open = lock(&self.open);
            let map = &mut open.segments;
            if !map.contains_key(&loc.hour) && !self.path(loc.hour).exists() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "segment deleted",
                ));
            }
            let s = self.segment(map, loc.hour)?;
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
            if let Some(b) = s.writing.iter().find_map(|w| w.record(loc.offset)) {
                let mut out = [0u8; PACKET_LEN];
                out.copy_from_slice(b);
                return Ok(out);
            }
            s.file.clone()
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
                    let open = lock(&self.open);
                    open.segments.get(&first.hour).and_then(|s| {
                        (first.offset + (run.len() * PACKET_LEN) as u64 <= s.written())
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

    /// Make every append so far durable: write what is gathered, wait for the writes other
    /// threads began before this call, try failed writes again, then fsync every segment
    /// appended to since the last sync.
    pub fn sync(&self) -> std::io::Result<()> {
        let dirty: Vec<u32> = lock(&self.open).dirty.drain().collect();
        let r = self.write_out(1).and_then(|()| self.settle());
        if let Err(e) = r {
            lock(&self.open).dirty.extend(dirty);
            return Err(e);
        }
        for hour in dirty {
            let file = lock(&self.open).segments.get(&hour).map(|s| s.file.clone());
            if let Some(f) = file {
                if let Err(e) = f.sync_data() {
                    lock(&self.open).dirty.insert(hour);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Wait until every write begun before this call is on disk (retrying failed ones here).
    fn settle(&self) -> std::io::Result<()> {
        let mut open = lock(&self.open);
        let before = open.next_write;
        loop {
            let mut waiting = false;
            let mut retry: Vec<Job> = Vec::new();
            for (&hour, s) in open.segments.iter_mut() {
                for w in s.writing.iter_mut().filter(|w| w.seq < before) {
                    if w.failed {
                        // Taken for this retry; a failure marks it again.
                        w.failed = false;
                        retry.push((hour, s.file.clone(), w.at, w.bytes.clone(), w.seq));
                    } else {
                        waiting = true;
                    }
                }
            }
            if !retry.is_empty() {
                drop(open);
                self.run(retry)?;
                open = lock(&self.open);
                continue;
            }
            if !waiting {
                return Ok(());
            }
            open = self
                .wrote
                .wait(open)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
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
                let mut open = lock(&self.open);
                open.segments.remove(&hour);
                open.dirty.remove(&hour);
                drop(open);
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The length of hour `hour`'s segment file in whole records' bytes (0 if it has none).
    pub fn len_of(&self, hour: u32) -> std::io::Result<u64> {
        if let Some(s) = lock(&self.open).segments.get(&hour) {
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
        // Nobody else holds the segments now: no write is under way, only failed ones wait.
        for s in lock(&self.open).segments.values_mut() {
            let failed = std::mem::take(&mut s.writing);
            let r = failed
                .iter()
                .try_for_each(|w| s.file.write_all_at(&w.bytes, w.at))
                .and_then(|()| s.write_pending());
            if let Err(e) = r {
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
        let on_disk = || std::fs::metadata(dir.path().join("7.seg")).unwrap().len();
        // Appends are gathered; a write-out under the threshold leaves them there.
        let mut locs: Vec<Location> = (0..per - 1)
            .map(|i| s.append(3600 * 7, &[(i % 251) as u8; PACKET_LEN]).unwrap())
            .collect();
        s.write_out(WRITE_BUFFER).unwrap();
        assert_eq!(on_disk(), 0, "nothing written under the threshold");
        locs.extend(
            (per - 1..per + 3).map(|i| s.append(3600 * 7, &[(i % 251) as u8; PACKET_LEN]).unwrap()),
        );
        s.write_out(WRITE_BUFFER).unwrap();
        assert_eq!(
            on_disk(),
            ((per + 3) * PACKET_LEN) as u64,
            "one write of all gathered"
        );
        locs.extend(
            (per + 3..per + 6).map(|i| s.append(3600 * 7, &[(i % 251) as u8; PACKET_LEN]).unwrap()),
        );
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
                offset: ((per + 6) * PACKET_LEN) as u64
            })
            .is_err());
        s.sync().unwrap();
        assert_eq!(on_disk(), ((per + 6) * PACKET_LEN) as u64);
        // Dropped unsynced: the tail is written anyway.
        s.append(3600 * 7, &[9; PACKET_LEN]).unwrap();
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.len_of(7).unwrap(), ((per + 7) * PACKET_LEN) as u64);
    }

    #[test]
    fn written_buffers_are_reused_and_hold_only_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let per = WRITE_BUFFER / PACKET_LEN;
        let mut locs = Vec::new();
        // Three buffers' worth, written out as each fills; from the second on, each is
        // gathered in a written one taken back (its pages already in use).
        for round in 0..3 {
            for i in 0..per {
                let fill = ((round * per + i) % 251) as u8;
                locs.push((s.append_with(3600 * 4, |r| r.fill(fill)).unwrap(), fill));
            }
            s.write_out(WRITE_BUFFER).unwrap();
            assert_eq!(
                lock(&s.open).spare.len(),
                1,
                "round {round}: written buffer kept"
            );
        }
        // A short buffer after a full one reused: nothing of the old bytes shows through.
        locs.push((s.append_with(3600 * 4, |r| r[0] = 1).unwrap(), 0));
        s.sync().unwrap();
        for (i, (l, fill)) in locs.iter().enumerate() {
            let got = s.read(*l).unwrap();
            if i == locs.len() - 1 {
                assert_eq!(got[0], 1);
                assert!(
                    got[1..].iter().all(|b| *b == 0),
                    "stale bytes in a reused buffer"
                );
            } else {
                assert_eq!(got, [*fill; PACKET_LEN], "record {i}");
            }
        }
        assert_eq!(s.len_of(4).unwrap(), ((3 * per + 1) * PACKET_LEN) as u64);
        assert!(lock(&s.open).spare.len() <= SPARE_BUFFERS);
    }

    #[test]
    fn bytes_whose_write_failed_stay_readable_and_the_sync_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segments::open(dir.path()).unwrap();
        let rec = |i: usize| [(i % 251) as u8; PACKET_LEN];
        let locs: Vec<Location> = (0..10)
            .map(|i| s.append(3600 * 2, &rec(i)).unwrap())
            .collect();
        // As `write_out` leaves a buffer whose write failed: out of `pending`, marked failed.
        {
            let mut open = lock(&s.open);
            let seg = open.segments.get_mut(&2).unwrap();
            let bytes = Arc::new(std::mem::take(&mut seg.pending));
            seg.writing.push(Writing {
                seq: 0,
                at: 0,
                bytes,
                failed: true,
            });
            open.next_write = 1;
        }
        let on_disk = || std::fs::metadata(dir.path().join("2.seg")).unwrap().len();
        assert_eq!(on_disk(), 0);
        assert_eq!(
            s.read(locs[3]).unwrap(),
            rec(3),
            "read from the unwritten buffer"
        );
        let mut got = vec![None; locs.len()];
        s.read_many(&locs, |i, r| got[i] = Some(r.unwrap()[0]));
        let want: Vec<Option<u8>> = (0..10).map(|i| Some(rec(i)[0])).collect();
        assert_eq!(got, want, "runs not on disk are read from memory");
        s.sync().unwrap();
        assert_eq!(on_disk(), 10 * PACKET_LEN as u64, "the sync wrote them");
        assert!(lock(&s.open).segments[&2].writing.is_empty());
        let mut got = vec![None; locs.len()];
        s.read_many(&locs, |i, r| got[i] = Some(r.unwrap()[0]));
        assert_eq!(got, want);
    }

    #[test]
    fn sync_waits_for_writes_begun_on_other_threads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Segments::open(dir.path()).unwrap());
        let per = WRITE_BUFFER / PACKET_LEN;
        // Writers append and write out while another thread syncs; after each sync, every
        // record appended before it is in the file.
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..4 * per {
                        s.append(3600 * (3 + w), &[(i % 251) as u8; PACKET_LEN])
                            .unwrap();
                        if i % 64 == 0 {
                            s.write_out(WRITE_BUFFER).unwrap();
                        }
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            let before: Vec<u64> = [3, 4].iter().map(|&h| s.len_of(h).unwrap()).collect();
            s.sync().unwrap();
            for (h, len) in [3u32, 4].iter().zip(before) {
                let path = dir.path().join(format!("{h}.seg"));
                let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                assert!(
                    file >= len,
                    "hour {h}: {file} bytes on disk, {len} appended before the sync"
                );
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        s.sync().unwrap();
        assert_eq!(s.len_of(3).unwrap(), (4 * per * PACKET_LEN) as u64);
        let file = std::fs::metadata(dir.path().join("3.seg")).unwrap().len();
        assert_eq!(file, (4 * per * PACKET_LEN) as u64);
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
