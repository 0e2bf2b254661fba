//! `verify`: walks every writer's chain and reports the first broken
//! link, and which checks ran.
//!
//! - Order: within a writer, seq runs 1, 2, 3, ... and each row's
//!   previous hash is the row before it (a deleted or reordered row).
//! - Linkage: a writer's first row links to the newest row in the
//!   database when it started; that row must still be there with that
//!   hash (the end of an earlier chain, or all of it, deleted).
//! - Hashes: each row's hash over its content, keyed (HMAC-SHA256, with
//!   the key) or, for rows written without one, plain SHA-256.

use crate::event::{ChainedEvent, GENESIS, KEYED_PREFIX, chain_hash, keyed_chain_hash, parse_link};
use crate::key::AuditKey;
use std::collections::{HashMap, HashSet};

/// The first broken link `verify` found, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub writer: String,
    pub seq: i64,
    pub id: String,
    pub problem: String,
}

/// What `verify` found, and which checks it could run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub rows: u64,
    pub writers: u64,
    pub broken: Option<BrokenLink>,
    /// Chains whose first row links to the newest row before it.
    pub linked_starts: u64,
    /// Writers whose chain starts a new history (`genesis`): the first
    /// writer, writers of releases before linkage, or a writer that
    /// started while the database was unreachable.
    pub unlinked_starts: Vec<String>,
    /// Chain ends (writer, last seq) that no later chain links to: rows
    /// deleted from their end cannot be detected (the newest writer's, or
    /// those of writers running side by side).
    pub open_ends: Vec<(String, i64)>,
    /// The fingerprint of the key keyed rows were checked with.
    pub key: Option<String>,
    /// Keyed rows whose HMAC was checked with the key.
    pub keyed_checked: u64,
    /// Keyed rows that could not be checked: no key given.
    pub keyed_unchecked: u64,
    /// Rows hashed with plain SHA-256 (no key when written).
    pub unkeyed: u64,
    /// Of those, rows newer than the oldest keyed row: written by a
    /// writer without the key, or rewritten by someone without it.
    pub unkeyed_after_keyed: u64,
}

impl VerifyReport {
    /// No broken link, and every check could run: the key was given for
    /// keyed rows, some row is keyed if a key was given, and no unkeyed
    /// row is newer than a keyed one.
    pub fn complete(&self) -> bool {
        self.keyed_unchecked == 0
            && self.unkeyed_after_keyed == 0
            && !(self.key.is_some() && self.rows > 0 && self.keyed_checked == 0)
    }
}

/// Checks `rows`, ordered by writer and seq.
pub(crate) fn check(rows: &[ChainedEvent], key: Option<&AuditKey>) -> VerifyReport {
    let mut report = VerifyReport {
        rows: rows.len() as u64,
        key: key.map(AuditKey::fingerprint),
        ..Default::default()
    };
    let position: HashMap<(&str, i64), &str> = rows
        .iter()
        .map(|r| ((r.writer.as_str(), r.seq), r.hash.as_str()))
        .collect();
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    for r in rows {
        let last = last_seq.entry(r.writer.as_str()).or_insert(r.seq);
        *last = (*last).max(r.seq);
    }
    let oldest_keyed = rows
        .iter()
        .filter(|r| r.hash.starts_with(KEYED_PREFIX))
        .map(|r| r.event.id.as_str())
        .min();
    let mut linked_to: HashSet<(String, i64)> = HashSet::new();
    let mut previous: Option<&ChainedEvent> = None;
    let mut writer_keyed = false;
    for c in rows {
        let broken = |problem: String| BrokenLink {
            writer: c.writer.clone(),
            seq: c.seq,
            id: c.event.id.clone(),
            problem,
        };
        let same_writer = previous.is_some_and(|p| p.writer == c.writer);
        let placed = if same_writer {
            let p = previous
                .map(|p| (p.seq, p.hash.as_str()))
                .unwrap_or_default();
            order(c, p.0 + 1, p.1)
        } else {
            report.writers += 1;
            start(c, &position, &last_seq, &mut report, &mut linked_to)
        };
        // A writer hashes every row the same way, keyed or not.
        let keyed = c.hash.starts_with(KEYED_PREFIX);
        if !same_writer {
            writer_keyed = keyed;
        }
        let problem = placed
            .or_else(|| (keyed != writer_keyed).then(|| mixed(writer_keyed)))
            .or_else(|| content(c, key, oldest_keyed, &mut report));
        if let Some(problem) = problem {
            report.broken = Some(broken(problem));
            return report;
        }
        previous = Some(c);
    }
    report.open_ends = last_seq
        .into_iter()
        .filter(|(w, s)| !linked_to.contains(&((*w).to_owned(), *s)))
        .map(|(w, s)| (w.to_owned(), s))
        .collect();
    report.open_ends.sort();
    report
}

/// A row after the first of its writer.
fn order(c: &ChainedEvent, expected_seq: i64, expected_prev: &str) -> Option<String> {
    if c.seq != expected_seq {
        return Some(format!(
            "expected seq {expected_seq} but found {}: rows are missing or were reordered",
            c.seq
        ));
    }
    (c.prev_hash != expected_prev).then(|| {
        "previous-hash link does not match the previous row: rows were deleted or reordered".into()
    })
}

/// A row hashed unlike the first row of its writer.
fn mixed(writer_keyed: bool) -> String {
    if writer_keyed {
        "the row has no keyed hash although its writer's first row has one: it was rewritten by someone without the key".into()
    } else {
        "the row has a keyed hash although its writer's first row has none: the chain was rewritten"
            .into()
    }
}

/// A writer's first row: seq 1, and its link (if any) to a row that is
/// still there with the hash it had.
fn start(
    c: &ChainedEvent,
    position: &HashMap<(&str, i64), &str>,
    last_seq: &HashMap<&str, i64>,
    report: &mut VerifyReport,
    linked_to: &mut HashSet<(String, i64)>,
) -> Option<String> {
    if c.seq != 1 {
        return Some(format!(
            "expected seq 1 but found {}: rows are missing or were reordered",
            c.seq
        ));
    }
    if c.prev_hash == GENESIS {
        report.unlinked_starts.push(c.writer.clone());
        return None;
    }
    let Some(head) = parse_link(&c.prev_hash) else {
        return Some(format!(
            "the first row's previous hash is neither {GENESIS:?} nor a link to an earlier row: the row was edited"
        ));
    };
    report.linked_starts += 1;
    linked_to.insert((head.writer.clone(), head.seq));
    let (w, s) = (&head.writer, head.seq);
    match position.get(&(w.as_str(), s)) {
        Some(hash) if *hash == head.hash => None,
        Some(_) => Some(format!(
            "this chain starts from writer {w} seq {s}, whose hash is no longer the one linked to: that row was rewritten"
        )),
        None => Some(match last_seq.get(w.as_str()) {
            Some(last) => format!(
                "this chain starts from writer {w} seq {s}, which is missing: writer {w} now ends at seq {last}, so its last rows were deleted"
            ),
            None => format!(
                "this chain starts from writer {w} seq {s}, but no row of writer {w} is left: its whole chain was deleted"
            ),
        }),
    }
}

/// The row's content against its hash: keyed (with the key) or plain.
fn content(
    c: &ChainedEvent,
    key: Option<&AuditKey>,
    oldest_keyed: Option<&str>,
    report: &mut VerifyReport,
) -> Option<String> {
    if c.hash.starts_with(KEYED_PREFIX) {
        let Some(key) = key else {
            report.keyed_unchecked += 1;
            return None;
        };
        report.keyed_checked += 1;
        return (keyed_chain_hash(key, &c.event, &c.writer, c.seq, &c.prev_hash) != c.hash).then(
            || {
                "row content does not match its keyed hash: the row was edited (or the key given is not the key it was written with)".into()
            },
        );
    }
    report.unkeyed += 1;
    if oldest_keyed.is_some_and(|oldest| c.event.id.as_str() > oldest) {
        report.unkeyed_after_keyed += 1;
    }
    (chain_hash(&c.event, &c.writer, c.seq, &c.prev_hash) != c.hash)
        .then(|| "row content does not match its hash: the row was edited".into())
}

/// The report as `palisade-gateway audit verify` prints it: one line per
/// check, then the result.
pub fn render(r: &VerifyReport) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut out = format!(
        "audit chain: {} from {}\n",
        plural(r.rows, "row", "rows"),
        plural(r.writers, "writer", "writers")
    );
    if let Some(b) = &r.broken {
        out.push_str(&format!(
            "result: BROKEN at writer {} seq {} (event {}): {}\n",
            b.writer, b.seq, b.id, b.problem
        ));
        return out;
    }
    out.push_str("- order within each writer (seq, previous-hash links): checked\n");
    let unlinked = r.unlinked_starts.len() as u64;
    out.push_str(&format!(
        "- linkage between writers: checked: {} of {} starts from the newest row before it; {} a new history (the first writer, a writer of a release before linkage, or one that started while the database was unreachable{})\n",
        r.linked_starts,
        plural(r.writers, "chain", "chains"),
        plural(unlinked, "starts", "start"),
        if unlinked > 0 {
            format!(": {}", r.unlinked_starts.join(", "))
        } else {
            String::new()
        }
    ));
    out.push_str(&format!(
        "- chain ends no later writer links to (rows deleted from their end cannot be detected): {}\n",
        if r.open_ends.is_empty() {
            "0".to_owned()
        } else {
            let ends: Vec<String> = r
                .open_ends
                .iter()
                .map(|(w, s)| format!("writer {w} at seq {s}"))
                .collect();
            format!("{} ({})", r.open_ends.len(), ends.join(", "))
        }
    ));
    let keyed = match (&r.key, r.keyed_checked, r.keyed_unchecked) {
        (_, 0, 0) => "none of the rows is keyed".to_owned(),
        (Some(fp), n, _) => format!("checked with key {fp}: {}", plural(n, "row", "rows")),
        (None, _, n) => format!(
            "NOT checked for {}: no key given (--key-file or PALISADE_AUDIT_KEY_FILE)",
            plural(n, "row", "rows")
        ),
    };
    out.push_str(&format!("- keyed hashes (HMAC-SHA256): {keyed}\n"));
    let unkeyed = match (r.unkeyed, r.unkeyed_after_keyed) {
        (0, _) => "none".to_owned(),
        (n, 0) => format!(
            "{} older than every keyed row, checked with SHA-256 only: someone with write access to the database could have rewritten them",
            plural(n, "row", "rows")
        ),
        (n, after) => format!(
            "{}, {after} of them newer than keyed rows: written by a writer without the key, or rewritten by someone without it",
            plural(n, "row", "rows")
        ),
    };
    out.push_str(&format!("- unkeyed rows (plain SHA-256): {unkeyed}\n"));
    out.push_str(if r.complete() {
        "result: intact\n"
    } else {
        "result: no broken link found, but not every check ran\n"
    });
    out
}
