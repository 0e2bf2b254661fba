//! SQLite's journal: where a batch becomes durable before it is in the
//! database.
//!
//! With SQLite the requests waiting on a batch used to wait for its
//! commit, and, now and then, for the write-ahead log's checkpoint: two
//! fsyncs that on a small VM's disk take 4–6 ms, every ~125 ms at 1,000
//! requests a second — enough requests landed in them to own the p99
//! (docs/benchmarks.md). Instead the writer appends the batch to a journal
//! file (spool records, [`crate::spool`]) and answers its waiters once that
//! write returns; a thread of its own (the inserter) then writes the
//! batches into SQLite, larger ones, and checkpoints there, off every
//! request's path. Once a journal file's events are all in the database
//! the file is deleted; files a crashed writer left are written to the
//! database at the next start, before anything else ([`Task::drain_journals`]),
//! and, should the database refuse them then, by the database thread every
//! retry interval until it takes them.
//!
//! The journal is exactly as durable as SQLite's commit was: with
//! `synchronous=normal` (the default) the write is not fsync'd — the
//! events survive the gateway dying (SIGKILL, OOM), not a power cut;
//! with `synchronous=full` every append is fsync'd (one per batch).
//!
//! A live writer holds a lock on its journal file, so another gateway
//! starting on the same directory leaves it alone.

use super::drain::{Inserts, write_left_journals};
use super::{DB_DOWN, HEALTHY, Shared, Task, Waiter};
use crate::event::ChainedEvent;
use crate::spool::{append_whole, encode, files_named, open_append};
use crate::store::{Store, WriterConnection};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Bytes after which the writer starts a new journal file (about 4,000
/// events); a file is deleted once all of its events are in the database.
const FILE_BYTES: u64 = 4 << 20;

/// Batches handed to the inserter and not yet taken, past which the
/// writer waits for it (and, its queue filling, new requests wait for
/// room): what the journal and memory hold beyond the database is bounded.
const HANDED_BATCHES: usize = 64;

/// What the writer hands the inserter.
enum Handed {
    /// A batch already in journal file number `.1`.
    Batch(Vec<ChainedEvent>, u64),
    /// Told once everything handed before it is in the database.
    Flush(Waiter),
}

fn file_path(dir: &Path, writer: &str, n: u64) -> PathBuf {
    dir.join(format!("journal-{writer}-{n:08}.log"))
}

/// Locks `file` for this process, without waiting: `false` when another
/// live process holds it.
pub(super) fn lock(file: &File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Whether `file` is still the file at `path` (not deleted or replaced).
pub(super) fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.ino() == named.ino() && open.dev() == named.dev(),
        _ => false,
    }
}

/// The writer's side: the journal file it appends to, and the inserter.
pub(super) struct Journal {
    dir: PathBuf,
    writer: Arc<str>,
    sync: bool,
    number: u64,
    file: Option<File>,
    bytes: u64,
    to_inserter: Option<mpsc::Sender<Handed>>,
    inserter: Option<std::thread::JoinHandle<()>>,
    /// Whether the last append failed (logged once until one succeeds).
    failing: bool,
    /// Whether the inserter was found gone (logged once).
    inserter_gone: bool,
    /// Told once the inserter has tried the journals earlier runs left.
    left_tried: Option<oneshot::Receiver<()>>,
}

impl Journal {
    /// Starts the inserter's thread, with a connection of its own.
    pub(super) fn start(
        dir: &Path,
        writer: Arc<str>,
        sync: bool,
        store: Store,
        shared: Arc<Shared>,
        config: &super::WriterConfig,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(HANDED_BATCHES);
        let (tried, left_tried) = oneshot::channel();
        let inserter = Inserter {
            store,
            conn: None,
            shared,
            dir: dir.to_path_buf(),
            writer: Arc::clone(&writer),
            kept_from: 0,
            linger: config.linger,
            batch_max: config.batch_max.max(1),
            retry: config.retry_interval,
            timeout: config.database_timeout,
            // Listed before this writer's own first file exists.
            left: files_named(dir, "journal-"),
            left_due: Instant::now(),
            left_failing: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("palisade-audit-db".into())
            .spawn(move || {
                super::yield_to_requests();
                runtime.block_on(inserter.run(rx, tried));
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writer,
            sync,
            number: 0,
            file: None,
            bytes: 0,
            to_inserter: Some(tx),
            inserter: Some(thread),
            failing: false,
            inserter_gone: false,
            left_tried: Some(left_tried),
        })
    }

    /// Appends a batch (fsync'd if the database's commits are): once this
    /// returns Ok the batch survives the process dying.
    fn append(&mut self, events: &[ChainedEvent]) -> io::Result<()> {
        let buf = encode(events)?;
        if self.file.is_some() && self.bytes + buf.len() as u64 > FILE_BYTES {
            self.file = None;
            self.number += 1;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let path = file_path(&self.dir, &self.writer, self.number);
                let f = open_append(&path, self.sync)?;
                // Locked, and still the file at that path: a writer
                // starting meanwhile may have taken (and deleted) it
                // between its creation and the lock.
                if !lock(&f) || !same_file(&f, &path) {
                    return Err(io::Error::other(format!(
                        "{} was taken by another process",
                        path.display()
                    )));
                }
                self.bytes = f.metadata()?.len();
                self.file.insert(f)
            }
        };
        append_whole(file, &buf, self.bytes, self.sync)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Waits for the inserter to write everything handed over, then ends
    /// it.
    pub(super) fn close(mut self) {
        self.file = None;
        self.to_inserter = None;
        if let Some(thread) = self.inserter.take()
            && thread.join().is_err()
        {
            tracing::error!(
                "the audit database thread panicked; its batches stay in the journal for the next start"
            );
        }
    }
}

impl Task {
    /// Makes a batch durable in the journal, tells its waiters, and hands
    /// it (and the flushes, told once it is in the database) to the
    /// inserter.
    pub(super) async fn journaled(
        &mut self,
        events: Vec<ChainedEvent>,
        waiters: Vec<Waiter>,
        mut flushes: Vec<Waiter>,
    ) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let n = events.len();
        let started = Instant::now();
        let result = if events.is_empty() {
            Ok(())
        } else {
            journal.append(&events)
        };
        let result = match result {
            Ok(()) => {
                if std::mem::take(&mut journal.failing) {
                    tracing::info!("the audit journal takes writes again");
                }
                self.shared
                    .metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) => {
                // The file may end in part of this batch now: what comes
                // next goes to a new one, so that reading the file back
                // (after a crash) stops at nothing that was answered.
                journal.file = None;
                journal.number += 1;
                if !std::mem::replace(&mut journal.failing, true) {
                    tracing::error!(error = %e, dir = %journal.dir.display(), "the audit journal cannot be written: events are refused until it can");
                }
                self.shared.metrics.failed.inc_by(n as u64);
                Err(format!("cannot write the audit journal: {e}"))
            }
        };
        self.shared.metrics.queue_depth.sub(n as i64);
        let written = result.is_ok();
        self.receipts.resolve(waiters, result.clone());
        self.shared.room.notify_waiters();
        let Some(tx) = &journal.to_inserter else {
            return;
        };
        if !written {
            self.receipts.resolve(flushes, result);
            return;
        }
        let mut handed = Vec::with_capacity(flushes.len() + 1);
        if n > 0 {
            handed.push(Handed::Batch(events, journal.number));
        }
        handed.extend(flushes.drain(..).map(Handed::Flush));
        for h in handed {
            // Refused only if the inserter is gone (its thread died, or
            // gave up on a database that refused writes at shutdown): the
            // batch stays in the journal for the next start, a flush is
            // told no.
            if tx.send(h).await.is_err() && !std::mem::replace(&mut journal.inserter_gone, true) {
                tracing::error!(
                    "the audit database thread has stopped: answered events stay in the journal and are written to the database at the next start"
                );
            }
        }
    }

    /// Writes the journal files that earlier runs left to the database
    /// before this writer's chain follows the newest row; a live writer's
    /// (locked) files are left alone. With SQLite the database thread
    /// does it (and tries again, every retry interval, what the database
    /// refuses now); otherwise the writer, once per start.
    pub(super) async fn drain_journals(&mut self) {
        if let Some(journal) = &mut self.journal {
            if let Some(tried) = journal.left_tried.take() {
                let _ = tried.await;
            }
            return;
        }
        let mut left = files_named(self.spool.dir(), "journal-");
        let (written, result) = write_left_journals(self, &mut left).await;
        self.shared.metrics.drained.inc_by(written);
        if let Err(e) = result {
            tracing::error!(files = left.len(), error = %e, "cannot write an earlier run's audit journal to the database; it is tried again at the next start");
        }
    }
}

/// The inserter's thread: writes handed batches into SQLite.
struct Inserter {
    store: Store,
    conn: Option<WriterConnection>,
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Arc<str>,
    /// The oldest of this writer's journal files not yet deleted.
    kept_from: u64,
    /// How long the first batch waits for others to join it, up to
    /// `batch_max` events.
    linger: Duration,
    batch_max: usize,
    retry: Duration,
    /// How long connecting, or writing one transaction, may take.
    timeout: Duration,
    /// Journal files earlier runs left that are not yet in the database.
    left: Vec<PathBuf>,
    /// When to try `left` again.
    left_due: Instant,
    /// Whether the database refused `left` (logged once).
    left_failing: bool,
}

impl Inserts for Inserter {
    async fn insert_chunk(&mut self, events: &[ChainedEvent]) -> Result<u64, crate::AuditError> {
        let n = self.insert(events).await?;
        if let Some(conn) = &mut self.conn {
            conn.checkpoint_if_due();
        }
        Ok(n)
    }

    fn chunk(&self) -> usize {
        self.batch_max
    }
}

impl Inserter {
    async fn run(mut self, mut rx: mpsc::Receiver<Handed>, left_tried: oneshot::Sender<()>) {
        self.write_left().await;
        let _ = left_tried.send(());
        let mut newest = 0;
        loop {
            let first = if self.left.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout_at(self.left_due.into(), rx.recv()).await {
                    Ok(h) => h,
                    Err(_) => {
                        self.write_left().await;
                        continue;
                    }
                }
            };
            let Some(first) = first else { break };
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            let mut take = |h: Handed, events: &mut Vec<ChainedEvent>| match h {
                Handed::Batch(mut batch, number) => {
                    events.append(&mut batch);
                    newest = number;
                    false
                }
                Handed::Flush(w) => {
                    flushes.push(w);
                    true
                }
            };
            // Larger transactions write fewer log pages per event: wait a
            // linger for more, unless the batch is full or a flush waits.
            let mut flush = take(first, &mut events);
            let deadline = tokio::time::Instant::now() + self.linger;
            while !flush && events.len() < self.batch_max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(h)) => flush = take(h, &mut events),
                    Ok(None) | Err(_) => break,
                }
            }
            while let Ok(h) = rx.try_recv() {
                take(h, &mut events);
            }
            if !self.write(&events, &rx).await {
                // Shutting down with the database refusing: the batches
                // stay in the journal for the next start.
                return;
            }
            for w in flushes {
                let _ = w.send(Ok(()));
            }
            // Every file before the newest batch's is in the database.
            self.delete_files(newest);
            if !self.left.is_empty() && Instant::now() >= self.left_due {
                self.write_left().await;
            }
        }
        // Every handle is gone and everything handed over is written.
        self.delete_files(newest + 1);
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// Writes until the database takes the batch (`true`), retrying every
    /// retry interval; `false` if it refuses while the writer is shutting
    /// down.
    async fn write(&mut self, events: &[ChainedEvent], rx: &mpsc::Receiver<Handed>) -> bool {
        let mut down_since = None;
        loop {
            match self.insert(events).await {
                Ok(_) => break,
                Err(e) => {
                    if down_since.is_none() {
                        tracing::warn!(error = %e, "the audit database does not take writes; events wait in the journal, new requests for room");
                        down_since = Some(Instant::now());
                        self.shared.set_state_from(HEALTHY, DB_DOWN);
                    }
                    if rx.is_closed() || self.shared.closing.load(Ordering::Acquire) {
                        tracing::error!(error = %e, "the audit database does not take writes; the journal is written to it at the next start");
                        return false;
                    }
                    tokio::time::sleep(self.retry).await;
                }
            }
        }
        if let Some(since) = down_since {
            tracing::info!(down_for = ?since.elapsed(), "the audit database takes writes again");
            self.shared.set_state_from(DB_DOWN, HEALTHY);
        }
        self.shared.metrics.written.inc_by(events.len() as u64);
        if let Some(conn) = &mut self.conn {
            conn.checkpoint_if_due();
        }
        true
    }

    /// Writes the journal files earlier runs left; what the database
    /// refuses is tried again a retry interval later.
    async fn write_left(&mut self) {
        if self.left.is_empty() {
            return;
        }
        let mut left = std::mem::take(&mut self.left);
        let (written, result) = write_left_journals(self, &mut left).await;
        self.shared.metrics.drained.inc_by(written);
        match result {
            Ok(()) => {
                if left.is_empty() && std::mem::take(&mut self.left_failing) {
                    tracing::info!("the journals earlier runs left are in the audit database now");
                }
            }
            Err(e) if !std::mem::replace(&mut self.left_failing, true) => {
                tracing::error!(files = left.len(), error = %e, "cannot write the journals an earlier run left to the audit database; tried again every retry interval");
            }
            Err(e) => {
                tracing::debug!(error = %e, "the journals an earlier run left are still refused")
            }
        }
        self.left = left;
        self.left_due = Instant::now() + self.retry;
    }

    async fn insert(&mut self, events: &[ChainedEvent]) -> Result<u64, crate::AuditError> {
        if events.is_empty() {
            return Ok(0);
        }
        super::database::insert_kept(&mut self.conn, &self.store, events, self.timeout).await
    }

    /// Deletes this writer's journal files numbered below `before`.
    fn delete_files(&mut self, before: u64) {
        while self.kept_from < before {
            let path = file_path(&self.dir, &self.writer, self.kept_from);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot remove a written audit journal file");
                    return;
                }
            }
            self.kept_from += 1;
        }
    }
}
