//! The local journal: batches the store could not take, one file each, replayed in order.
//!
//! A batch is written to a temporary file, synced, and renamed into place, so a file either
//! holds a whole batch or does not exist (a `kill -9` mid-write leaves only a `.tmp` that is
//! ignored and removed). File names sort by creation and carry the click count, so the
//! number of journaled clicks is known at start-up without reading the files. Replay is
//! idempotent because the store applies each batch id at most once: a batch written just
//! before a crash and replayed after it is skipped, not double-counted.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::{ClickBatch, Timestamp};

const SUFFIX: &str = ".batch.json";

/// A journal directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    sequence: AtomicU64,
}

/// One journaled batch on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub path: PathBuf,
    pub clicks: u64,
}

/// A journal read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("journal file {path} is not a batch: {reason}")]
    Corrupt { path: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Journal {
    /// Opens (creating) the directory and removes temporary files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, JournalError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let path = entry.map_err(io_error(&dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            sequence: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch durably (synced file, then rename).
    pub fn append(&self, batch: &ClickBatch) -> Result<JournalEntry, JournalError> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{:016}-{:08}-{:032x}-{}{SUFFIX}",
            Timestamp::now().as_millis(),
            seq % 100_000_000,
            batch.batch_id,
            batch.clicks.len()
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let body = serde_json::to_vec(batch).map_err(|e| JournalError::Corrupt {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&body).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(JournalEntry {
            path,
            clicks: batch.clicks.len() as u64,
        })
    }

    /// The journaled batches, oldest first.
    pub fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let path = entry.map_err(io_error(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            let clicks = stem
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.push(JournalEntry { path, clicks });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Reads a journaled batch.
    pub fn read(&self, entry: &JournalEntry) -> Result<ClickBatch, JournalError> {
        let body = fs::read(&entry.path).map_err(io_error(&entry.path))?;
        serde_json::from_slice(&body).map_err(|e| JournalError::Corrupt {
            path: entry.path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Removes a batch once the store has it.
    pub fn remove(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        match fs::remove_file(&entry.path) {
            Ok(()) => Ok(()),
            // Another process sharing the directory replayed it first: fine, replay is
            // idempotent.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&entry.path)(e)),
        }
    }

    /// Sets a file that cannot be parsed aside (`.corrupt`) so replay can go on; it is
    /// kept for a person to look at.
    pub fn quarantine(&self, entry: &JournalEntry) -> Result<PathBuf, JournalError> {
        let target = entry.path.with_extension("corrupt");
        fs::rename(&entry.path, &target).map_err(io_error(&entry.path))?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clicks::batch::build_batch;
    use crate::clicks::trending::TrendingClock;
    use crate::domain::{ClickId, LinkId, StoredClick};

    fn batch(n: usize) -> ClickBatch {
        let clicks = (0..n)
            .map(|i| StoredClick {
                click_id: ClickId::new(),
                link_id: LinkId(i64::try_from(i % 3).unwrap() + 1),
                at: Timestamp::now(),
                visitor: i as u64,
                ip: None,
                referrer_host: None,
                country: None,
                device: "desktop".into(),
                browser: "Firefox".into(),
                os: "Linux".into(),
                is_bot: false,
                fraud_reasons: 0,
            })
            .collect();
        build_batch(clicks, &TrendingClock::new(3_600_000))
    }

    #[test]
    fn batches_round_trip_in_order_and_crash_leftovers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let a = batch(3);
        let b = batch(5);
        journal.append(&a).unwrap();
        journal.append(&b).unwrap();
        std::fs::write(dir.path().join("x.batch.json.tmp"), b"{half").unwrap();
        let entries = journal.entries().unwrap();
        assert_eq!(entries.iter().map(|e| e.clicks).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(journal.read(&entries[0]).unwrap(), a);
        assert_eq!(journal.read(&entries[1]).unwrap(), b);
        journal.remove(&entries[0]).unwrap();
        journal.remove(&entries[0]).unwrap();
        assert_eq!(journal.entries().unwrap().len(), 1);

        // Reopening (a restart) removes the temporary file and keeps the batch.
        let journal = Journal::open(dir.path()).unwrap();
        assert!(!dir.path().join("x.batch.json.tmp").exists());
        assert_eq!(journal.entries().unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_reported_and_can_be_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("0-0-0-2.batch.json"), b"not json").unwrap();
        let entries = journal.entries().unwrap();
        assert!(matches!(
            journal.read(&entries[0]),
            Err(JournalError::Corrupt { .. })
        ));
        let moved = journal.quarantine(&entries[0]).unwrap();
        assert!(moved.exists());
        assert!(journal.entries().unwrap().is_empty());
    }
}
