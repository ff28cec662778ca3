//! Clicks deferred to disk while the batcher is short of CPU.
//!
//! At a proxy's peak its request threads and the clients use every core, and the batcher
//! (on idle CPU) falls behind: processing a click (enrichment, scoring, aggregation) costs
//! several times what queuing it did. Rather than take CPU from redirects, the batcher then
//! writes the events as they came off the queue to files here, oldest first, at a small
//! fraction of that cost, and processes them in order once the CPU allows (see
//! `pipeline`). While anything is deferred every new event is deferred too, so clicks are
//! processed in the order they arrived.
//!
//! A file is written whole under a temporary name and renamed into place, so it either
//! holds its events or does not exist. Files are not synced: a process crash loses nothing
//! written (the kernel has it); a machine crash can lose the last seconds, as it loses the
//! in-memory queue. A file is removed when its events are taken back into memory, where a
//! crash loses them as it loses the buffer. File names sort by creation and carry the
//! event count.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use super::journal::JournalError;
use super::segment::{decode_events, encode_events};
use crate::domain::ClickEvent;

const SUFFIX: &str = ".events";

/// Most events per file (about 1 MB with typical headers).
pub const FILE_EVENTS: usize = 20_000;

/// Files' worth of events held in memory when files cannot be written, before deferring
/// stops taking more (the queue then fills and counts drops, as without deferral).
const MAX_UNWRITTEN_FILES: usize = 4;

/// The deferred events of one pipeline: files on disk, then the newest in memory.
#[derive(Debug)]
pub struct Deferred {
    dir: PathBuf,
    /// Files not yet taken back, oldest first, with their event counts.
    files: VecDeque<(PathBuf, u64)>,
    /// The newest events, not yet in a file.
    unwritten: Vec<ClickEvent>,
    /// Events per file written.
    file_events: usize,
    next_seq: u64,
    /// Failed reads of the oldest file in a row.
    read_failures: u32,
}

/// Failed reads of a file after which it is set aside (unreadable, not missing: a missing
/// file is gone at once).
const MAX_READ_FAILURES: u32 = 10;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A deferred file's sequence number and event count, from its name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (seq, count) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some((seq.parse().ok()?, count.parse().ok()?))
}

impl Deferred {
    /// Opens the directory (created with the first file written): files a previous run left are deferred events, taken
    /// back first; temporary files a crash left are removed. Files are written with
    /// `file_events` events (at most [`FILE_EVENTS`]).
    pub fn open(dir: impl Into<PathBuf>, file_events: usize) -> Result<Self, JournalError> {
        let dir = dir.into();
        let mut found = Vec::new();
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => Some(listing),
            // Created with the first file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&dir)(e)),
        };
        for entry in listing.into_iter().flatten() {
            let path = entry.map_err(io_error(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(&path);
            } else if let Some((seq, count)) = parse_name(name) {
                found.push((seq, path, count));
            }
        }
        found.sort_by_key(|(seq, _, _)| *seq);
        let next_seq = found.last().map_or(0, |(seq, _, _)| seq + 1);
        Ok(Self {
            dir,
            files: found.into_iter().map(|(_, p, c)| (p, c)).collect(),
            unwritten: Vec::new(),
            file_events: file_events.clamp(1, FILE_EVENTS),
            next_seq,
            read_failures: 0,
        })
    }

    /// Events deferred (on disk and in memory).
    pub fn len(&self) -> u64 {
        self.files.iter().map(|(_, c)| c).sum::<u64>() + self.unwritten.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.unwritten.is_empty()
    }

    /// Events per file written.
    pub fn file_events(&self) -> usize {
        self.file_events
    }

    /// Room for how many more events in memory (less than a file's only while files
    /// cannot be written).
    pub fn room(&self) -> usize {
        (MAX_UNWRITTEN_FILES * self.file_events).saturating_sub(self.unwritten.len())
    }

    /// The memory side, to append events to (then call [`Self::write_full`]).
    pub fn unwritten_mut(&mut self) -> &mut Vec<ClickEvent> {
        &mut self.unwritten
    }

    /// Writes full files of the events in memory; what is left stays for later.
    pub fn write_full(&mut self) -> Result<(), JournalError> {
        while self.unwritten.len() >= self.file_events {
            self.write_file(self.file_events)?;
        }
        Ok(())
    }

    /// Writes every event in memory to files (at shutdown).
    pub fn write_all(&mut self) -> Result<(), JournalError> {
        while !self.unwritten.is_empty() {
            self.write_file(self.unwritten.len().min(self.file_events))?;
        }
        Ok(())
    }

    fn write_file(&mut self, n: usize) -> Result<(), JournalError> {
        let name = format!("{:020}-{n}{SUFFIX}", self.next_seq);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        if self.files.is_empty() {
            fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        }
        let body = encode_events(&self.unwritten[..n]);
        fs::write(&tmp, &body).map_err(io_error(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        self.next_seq += 1;
        self.unwritten.drain(..n);
        self.files.push_back((path, n as u64));
        Ok(())
    }

    /// The oldest deferred events, taken back: the oldest file, or when none is left, the
    /// events in memory. `Ok(None)` when nothing is deferred. A file that cannot be decoded
    /// is set aside as `.corrupt` and reported with its event count.
    pub fn take_oldest(&mut self) -> Result<Option<Vec<ClickEvent>>, TakeError> {
        let Some((path, count)) = self.files.front().cloned() else {
            return Ok(if self.unwritten.is_empty() {
                None
            } else {
                Some(std::mem::take(&mut self.unwritten))
            });
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.read_failures += 1;
                if e.kind() != std::io::ErrorKind::NotFound
                    && self.read_failures < MAX_READ_FAILURES
                {
                    return Err(TakeError::Io(io_error(&path)(e)));
                }
                self.read_failures = 0;
                self.files.pop_front();
                let _ = fs::rename(&path, path.with_extension("corrupt"));
                return Err(TakeError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                    events: count,
                });
            }
        };
        self.read_failures = 0;
        self.files.pop_front();
        match decode_events(&bytes).and_then(|events| {
            // The count in the name is what was accounted for.
            if events.len() as u64 == count {
                Ok(events)
            } else {
                Err(super::segment::SegmentError::Invalid("event count"))
            }
        }) {
            Ok(events) => {
                if let Err(error) = fs::remove_file(&path) {
                    // Renamed out of the way instead, so a restart does not take it again.
                    let done = path.with_extension("taken");
                    if fs::rename(&path, &done).is_err() {
                        tracing::error!(%error, path = %path.display(), "cannot remove a taken deferred clicks file");
                    }
                }
                Ok(Some(events))
            }
            Err(error) => {
                let _ = fs::rename(&path, path.with_extension("corrupt"));
                Err(TakeError::Corrupt {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                    events: count,
                })
            }
        }
    }
}

/// Deferred events could not be taken back.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// Reading a file failed; it stays, to be read again (up to ten times in a row).
    #[error(transparent)]
    Io(JournalError),
    #[error("deferred clicks file {path} is damaged or unreadable ({reason}); set aside")]
    Corrupt {
        path: String,
        reason: String,
        events: u64,
    },
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::domain::{ClickId, ClickMethod, LinkId, Timestamp};

    fn events(from: i64, n: i64) -> Vec<ClickEvent> {
        (from..from + n)
            .map(|i| ClickEvent {
                click_id: ClickId::new(),
                at: Timestamp::now(),
                link_id: LinkId(i),
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                user_agent: Some("Mozilla/5.0".into()),
                referrer: None,
                has_accept: true,
                method: ClickMethod::Get,
                country: None,
                prefetch: false,
            })
            .collect()
    }

    fn ids(events: &[ClickEvent]) -> Vec<i64> {
        events.iter().map(|e| e.link_id.0).collect()
    }

    #[test]
    fn events_come_back_in_order_across_files_memory_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let n = i64::try_from(FILE_EVENTS).unwrap();
        let mut d = Deferred::open(dir.path(), FILE_EVENTS).unwrap();
        assert!(d.is_empty());
        d.unwritten_mut().extend(events(0, n + 5));
        d.write_full().unwrap();
        assert_eq!(d.len(), u64::try_from(n).unwrap() + 5);
        // A restart finds the file but not what was only in memory: write it first.
        d.write_all().unwrap();
        drop(d);
        std::fs::write(dir.path().join("x.events.tmp"), b"half").unwrap();
        let mut d = Deferred::open(dir.path(), FILE_EVENTS).unwrap();
        assert_eq!(d.len(), u64::try_from(n).unwrap() + 5);
        assert!(!dir.path().join("x.events.tmp").exists());
        d.unwritten_mut().extend(events(n + 5, 3));
        let first = d.take_oldest().unwrap().unwrap();
        assert_eq!(ids(&first), (0..n).collect::<Vec<_>>());
        assert_eq!(
            ids(&d.take_oldest().unwrap().unwrap()),
            [n, n + 1, n + 2, n + 3, n + 4]
        );
        assert_eq!(
            ids(&d.take_oldest().unwrap().unwrap()),
            [n + 5, n + 6, n + 7]
        );
        assert!(d.take_oldest().unwrap().is_none());
        assert!(d.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Deferred::open(dir.path(), FILE_EVENTS).unwrap();
        d.unwritten_mut().extend(events(0, 2));
        d.write_all().unwrap();
        d.unwritten_mut().extend(events(2, 2));
        d.write_all().unwrap();
        let (first, _) = d.files.front().cloned().unwrap();
        std::fs::write(&first, b"LGE\x01garbage").unwrap();
        match d.take_oldest() {
            Err(TakeError::Corrupt { events, .. }) => assert_eq!(events, 2),
            other => panic!("expected a damaged file, got {other:?}"),
        }
        assert!(first.with_extension("corrupt").exists());
        assert_eq!(ids(&d.take_oldest().unwrap().unwrap()), [2, 3]);
    }

    #[test]
    fn a_missing_file_is_counted_as_gone_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Deferred::open(dir.path(), FILE_EVENTS).unwrap();
        for from in [0, 3] {
            d.unwritten_mut().extend(events(from, 3));
            d.write_all().unwrap();
        }
        let (first, _) = d.files.front().cloned().unwrap();
        std::fs::remove_file(&first).unwrap();
        match d.take_oldest() {
            Err(TakeError::Corrupt { events, .. }) => assert_eq!(events, 3),
            other => panic!("expected a missing file, got {other:?}"),
        }
        assert_eq!(ids(&d.take_oldest().unwrap().unwrap()), [3, 4, 5]);
        assert!(d.is_empty());
    }
}
