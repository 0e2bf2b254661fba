//! The durable local spool: where events go while the database is
//! unreachable. Append-only files of checksummed records, fsync'd before an
//! event counts as durable. A torn or corrupt record (a crash mid-write)
//! ends the readable part of a file with a warning; it never stops the
//! writer from starting.
//!
//! Record: `u32 length (LE) | 8-byte SHA-256 prefix of the payload |
//! payload (JSON of a ChainedEvent)`.

use crate::event::ChainedEvent;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 12;

/// Why spooling failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the audit spool is full ({used} of {max} bytes); refusing new events until the database is back"
    )]
    Full { used: u64, max: u64 },
    #[error("cannot write the audit spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What reading a spool file found.
#[derive(Debug, Default)]
pub struct SpoolContents {
    pub events: Vec<ChainedEvent>,
    /// Set when the file ended in a torn or corrupt record.
    pub warning: Option<String>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    own: PathBuf,
    file: Option<File>,
    max_bytes: u64,
    /// When the directory was last found empty. This writer's own appends
    /// forget it; files another process leaves are noticed within
    /// [`RECHECK`]. Spares a directory listing per batch.
    seen_empty: Option<std::time::Instant>,
}

/// How long an empty spool directory is believed to stay empty.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn checksum(payload: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Events as spool records, one after the other (also the format of the
/// SQLite writer's journal, read back with [`Spool::read`]).
pub(crate) fn encode(events: &[ChainedEvent]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for e in events {
        let payload = serde_json::to_vec(e).map_err(io::Error::other)?;
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&checksum(&payload));
        buf.extend_from_slice(&payload);
    }
    Ok(buf)
}

/// The `PREFIX*.log` files in `dir`, in name order.
pub(crate) fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Opens `path` for appending, creating it if need be; with `sync`, its
/// directory is fsync'd too, so that a file just created survives a power
/// cut along with what is fsync'd into it.
pub(crate) fn open_append(path: &Path, sync: bool) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if sync {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// Appends `buf` to `file`, whose length is `before`, fsync'd if `sync`.
/// On failure whatever part of `buf` reached the file is cut off again:
/// the records are refused, so none of them may be read back (recorded
/// after a crash), and a later append must not follow a torn record (the
/// reader stops there, and would lose what was acknowledged after it).
pub(crate) fn append_whole(file: &mut File, buf: &[u8], before: u64, sync: bool) -> io::Result<()> {
    let written = file.write_all(buf).and_then(|()| {
        if sync {
            file.sync_data()?;
        }
        Ok(())
    });
    if written.is_err()
        && let Err(cut) = file.set_len(before)
    {
        tracing::error!(error = %cut, "cannot cut refused audit records off the file they were appended to: a crash before it is written may record some of them");
    }
    written
}

impl Spool {
    /// A spool in `dir` whose own file is named after the writer.
    pub fn open(dir: &Path, writer: &str, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            own: dir.join(format!("spool-{writer}.log")),
            file: None,
            max_bytes,
            seen_empty: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes across every spool file in the directory.
    pub fn used_bytes(&self) -> u64 {
        self.files()
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Every spool file, the oldest writer's first (names sort by writer
    /// id, which starts with a UUIDv7 timestamp).
    pub fn files(&self) -> Vec<PathBuf> {
        files_named(&self.dir, "spool-")
    }

    pub fn is_empty(&mut self) -> bool {
        if self.seen_empty.is_some_and(|t| t.elapsed() < RECHECK) {
            return true;
        }
        let empty = self
            .files()
            .iter()
            .all(|p| fs::metadata(p).map(|m| m.len() == 0).unwrap_or(true));
        self.seen_empty = empty.then(std::time::Instant::now);
        empty
    }

    /// Appends events and fsyncs: when this returns Ok they survive a crash.
    pub fn append(&mut self, events: &[ChainedEvent]) -> Result<(), SpoolError> {
        self.seen_empty = None;
        let io_err = |source| SpoolError::Io {
            path: self.own.display().to_string(),
            source,
        };
        let buf = encode(events).map_err(io_err)?;
        let used = self.used_bytes();
        if used + buf.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }
        if self.file.is_none() {
            let f = open_append(&self.own, true).map_err(io_err)?;
            self.file = Some(f);
        }
        let own = self.own.display().to_string();
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => {
                return Err(SpoolError::Io {
                    path: own,
                    source: io::Error::other("spool file not open"),
                });
            }
        };
        let before = file
            .metadata()
            .map_err(|source| SpoolError::Io {
                path: own.clone(),
                source,
            })?
            .len();
        append_whole(file, &buf, before, true)
            .map_err(|source| SpoolError::Io { path: own, source })
    }

    /// Reads a spool file up to its first torn or corrupt record.
    pub fn read(path: &Path) -> io::Result<SpoolContents> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let mut out = SpoolContents::default();
        let mut at = 0usize;
        while at < bytes.len() {
            let torn = |why: &str| {
                format!(
                    "{}: {why} at byte {at}; the rest of the file is ignored",
                    path.display()
                )
            };
            if bytes.len() - at < HEADER {
                out.warning = Some(torn("torn record header"));
                break;
            }
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            let sum = &bytes[at + 4..at + HEADER];
            let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
                out.warning = Some(torn("torn record"));
                break;
            };
            if checksum(payload) != sum {
                out.warning = Some(torn("checksum mismatch"));
                break;
            }
            match serde_json::from_slice::<ChainedEvent>(payload) {
                Ok(e) => out.events.push(e),
                Err(e) => {
                    out.warning = Some(torn(&format!("unreadable record ({e})")));
                    break;
                }
            }
            at += HEADER + len;
        }
        Ok(out)
    }

    /// Forgets a drained file (the writer's own file is reopened on the
    /// next append).
    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        if path == self.own {
            self.file = None;
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditDecision;
    use crate::event::{AuditEvent, Chain, EventKind};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("palisade-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn events(n: usize) -> Vec<ChainedEvent> {
        let mut chain = Chain::new("w");
        (0..n)
            .map(|i| {
                chain.link(AuditEvent::new(
                    EventKind::ToolCall,
                    &format!("r{i}"),
                    "ns",
                    "a",
                    AuditDecision::Allow,
                ))
            })
            .collect()
    }

    #[test]
    fn appended_events_read_back_in_order() {
        let dir = tmp("roundtrip");
        let mut s = Spool::open(&dir, "w", 1 << 20).unwrap();
        let evs = events(3);
        s.append(&evs[..2]).unwrap();
        s.append(&evs[2..]).unwrap();
        let read = Spool::read(&s.files()[0]).unwrap();
        assert_eq!(read.events, evs);
        assert!(read.warning.is_none());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn own_appends_count_at_once_and_files_left_by_others_within_the_recheck() {
        let dir = tmp("empty");
        let mut s = Spool::open(&dir, "w", 1 << 20).unwrap();
        assert!(s.is_empty());
        s.append(&events(1)).unwrap();
        assert!(!s.is_empty(), "this writer's own append is seen at once");
        let own = s.files()[0].clone();
        s.remove(&own).unwrap();
        assert!(s.is_empty());
        // Another writer's file (a crashed gateway sharing the directory).
        let mut other = Spool::open(&dir, "other", 1 << 20).unwrap();
        other.append(&events(1)).unwrap();
        std::thread::sleep(RECHECK);
        assert!(!s.is_empty(), "a file left by another writer is noticed");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_torn_last_record_is_skipped_with_a_warning() {
        let dir = tmp("torn");
        let mut s = Spool::open(&dir, "w", 1 << 20).unwrap();
        s.append(&events(2)).unwrap();
        let path = s.files()[0].clone();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let read = Spool::read(&path).unwrap();
        assert_eq!(read.events.len(), 1);
        assert!(read.warning.unwrap().contains("torn record"));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_record_is_detected_by_its_checksum() {
        let dir = tmp("corrupt");
        let mut s = Spool::open(&dir, "w", 1 << 20).unwrap();
        s.append(&events(2)).unwrap();
        let path = s.files()[0].clone();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        let read = Spool::read(&path).unwrap();
        assert_eq!(read.events.len(), 1);
        assert!(read.warning.unwrap().contains("checksum mismatch"));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_spool_refuses_more() {
        let dir = tmp("full");
        let mut s = Spool::open(&dir, "w", 600).unwrap();
        assert!(s.append(&events(1)).is_ok());
        assert!(matches!(s.append(&events(5)), Err(SpoolError::Full { .. })));
        let _ = fs::remove_dir_all(dir);
    }
}
