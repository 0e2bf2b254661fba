//! Hostile inputs for the built-in tools: a path-traversal corpus against
//! the file sandbox (with a symbolic link swapped while it is read), and
//! writes, attachments, pragmas, extensions, multi-statement strings and
//! runaway recursive queries against `sql_query` — each refused or
//! bounded, and the files outside the root and the database's bytes
//! unchanged afterwards.

use super::{Failure, files, sql};
use palisade_policy::{FileAccess, FileRoot, NameGlobs, SqlDatabase, SqlEngine, SqlTool};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

const SECRET: &str = "CANARY-outside-the-root";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `base/root` with files, links and a directory; `base/secret.txt`
/// outside it.
fn sandbox(name: &str, access: FileAccess) -> (PathBuf, FileRoot) {
    let base = scratch(name);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(base.join("secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("ok.txt"), "inside").unwrap();
    std::fs::write(root.join("sub/inner.md"), "inner").unwrap();
    symlink("/etc/passwd", root.join("link_etc")).unwrap();
    symlink(base.join("secret.txt"), root.join("link_out")).unwrap();
    symlink("..", root.join("link_up")).unwrap();
    symlink("../..", root.join("sub/link_up2")).unwrap();
    symlink("ok.txt", root.join("link_in")).unwrap();
    std::fs::hard_link(base.join("secret.txt"), root.join("hard")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let r = FileRoot {
        name: "notes".into(),
        path: root.to_str().unwrap().into(),
        access,
        globs: None,
    };
    (base, r)
}

fn traversal_corpus(base: &Path) -> Vec<String> {
    let mut corpus: Vec<String> = [
        "../secret.txt",
        "sub/../../secret.txt",
        "sub/../ok.txt",
        "./ok.txt",
        "sub/./inner.md",
        "..",
        ".",
        "",
        "/etc/passwd",
        "/",
        "%2e%2e/secret.txt",
        "..%2fsecret.txt",
        "%2e%2e%2fsecret.txt",
        "..\\secret.txt",
        "sub//inner.md",
        "sub/",
        "ok.txt\0",
        "ok.txt\0/../../secret.txt",
        "link_etc",
        "link_out",
        "link_up/secret.txt",
        "sub/link_up2/secret.txt",
        "link_in",
        "hard",
        "fifo",
        "sub",
        "/proc/self/root/etc/passwd",
        "\u{2024}\u{2024}/secret.txt",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    corpus.push(base.join("secret.txt").to_str().unwrap().to_owned());
    corpus.push("a".repeat(300));
    corpus.push("x/".repeat(2100) + "ok.txt");
    corpus
}

#[test]
fn every_path_of_the_traversal_corpus_is_refused_and_nothing_outside_is_read() {
    let (base, root) = sandbox("read", FileAccess::Read);
    for path in traversal_corpus(&base) {
        match files::read(&root, &path, 1 << 20) {
            Ok(bytes) => panic!("{path:?} was read: {:?}", String::from_utf8_lossy(&bytes)),
            Err(failure) => {
                assert!(!failure.message().contains(SECRET), "{failure:?}");
                assert_ne!(failure.code().as_str(), "tool.executed");
            }
        }
    }
    // The ones the sandbox itself must catch say so (not "not found").
    for path in [
        "../secret.txt",
        "sub/./inner.md",
        "/etc/passwd",
        "link_out",
        "link_etc",
        "link_up/secret.txt",
        "sub/link_up2/secret.txt",
        "link_in",
        "hard",
        "fifo",
        "ok.txt\0",
    ] {
        let failure = files::read(&root, path, 1 << 20).unwrap_err();
        assert!(
            matches!(failure, Failure::PathRefused(_)),
            "{path:?}: {failure:?}"
        );
    }
    assert_eq!(files::read(&root, "ok.txt", 1 << 20).unwrap(), b"inside");
    assert_eq!(
        files::read(&root, "sub/inner.md", 1 << 20).unwrap(),
        b"inner"
    );
    let too_big = files::read(&root, "ok.txt", 3).unwrap_err();
    assert!(matches!(too_big, Failure::TooLarge(_)), "{too_big:?}");
}

#[test]
fn globs_limit_which_files_of_a_root_are_used() {
    let (_base, mut root) = sandbox("globs", FileAccess::Read);
    root.globs = Some(NameGlobs::new(["*.md"]).unwrap());
    assert_eq!(files::read(&root, "sub/inner.md", 100).unwrap(), b"inner");
    let refused = files::read(&root, "ok.txt", 100).unwrap_err();
    assert!(matches!(refused, Failure::PathRefused(_)), "{refused:?}");
}

#[test]
fn a_symbolic_link_swapped_in_while_reading_never_leads_out() {
    let (base, root) = sandbox("swap", FileAccess::Read);
    let target = PathBuf::from(&root.path).join("flip");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, target, secret) = (stop.clone(), target.clone(), base.join("secret.txt"));
        std::thread::spawn(move || {
            let staged = target.with_extension("staged");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // The regular file appears whole (renamed into place),
                // then a link to the secret replaces it.
                std::fs::write(&staged, "inside").unwrap();
                std::fs::rename(&staged, &target).unwrap();
                let _ = symlink(&secret, &staged);
                std::fs::rename(&staged, &target).unwrap();
            }
        })
    };
    let mut read_inside = 0;
    for _ in 0..3000 {
        if let Ok(bytes) = files::read(&root, "flip", 100) {
            assert_eq!(bytes, b"inside", "read through the swapped link");
            read_inside += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    eprintln!("{read_inside} of 3000 reads found the regular file");
}

#[test]
fn writes_stay_below_a_read_write_root_and_replace_files_atomically() {
    let (base, root) = sandbox("write", FileAccess::ReadWrite);
    for path in traversal_corpus(&base) {
        // Encoded forms are names like any other: written below the root.
        let _ = files::write(&root, &path, b"EVIL", 1 << 20);
    }
    for path in [
        "../secret.txt",
        "sub/../../secret.txt",
        "/etc/passwd",
        "link_out",
        "link_etc",
        "link_up/secret.txt",
        "sub/link_up2/secret.txt",
        "hard",
        "fifo",
    ] {
        let failure = files::write(&root, path, b"EVIL", 1 << 20).unwrap_err();
        assert!(
            matches!(failure, Failure::PathRefused(_)),
            "{path:?}: {failure:?}"
        );
    }
    let outside: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        outside.len(),
        2,
        "files appeared beside the root: {outside:?}"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("secret.txt")).unwrap(),
        SECRET
    );
    assert_eq!(
        std::fs::read_to_string("/etc/passwd")
            .map(|p| p.contains("EVIL"))
            .ok(),
        Some(false)
    );
    files::write(&root, "sub/new.md", b"first", 100).unwrap();
    files::write(&root, "sub/new.md", b"second", 100).unwrap();
    assert_eq!(
        std::fs::read_to_string(base.join("root/sub/new.md")).unwrap(),
        "second"
    );
    let left: Vec<_> = std::fs::read_dir(base.join("root/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".palisade-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let missing_dir = files::write(&root, "nowhere/x.md", b"x", 100).unwrap_err();
    assert!(matches!(missing_dir, Failure::Failed(_)), "{missing_dir:?}");
    let big = files::write(&root, "big.md", &[b'x'; 101], 100).unwrap_err();
    assert!(matches!(big, Failure::TooLarge(_)), "{big:?}");
    let (_, read_only) = sandbox("write-ro", FileAccess::Read);
    let refused = files::write(&read_only, "ok.txt", b"x", 100).unwrap_err();
    assert!(matches!(refused, Failure::PathRefused(_)), "{refused:?}");
}

fn sqlite_tool(path: &Path, timeout_ms: u64) -> SqlTool {
    SqlTool {
        databases: vec![SqlDatabase {
            name: "clinic".into(),
            engine: SqlEngine::Sqlite {
                path: path.to_str().unwrap().into(),
            },
        }],
        max_rows: 50,
        max_result_bytes: 64 * 1024,
        timeout_ms,
    }
}

#[tokio::test]
async fn sqlite_refuses_every_write_and_escape_and_bounds_runaway_queries() {
    let dir = scratch("sql");
    let db_path = dir.join("clinic.db");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch(
            "CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT);
             CREATE INDEX patients_name ON patients (name);
             INSERT INTO patients VALUES (1, 'Ann'), (2, 'Bo');",
        )
        .unwrap();
    }
    let before = std::fs::read(&db_path).unwrap();
    let tool = sqlite_tool(&db_path, 500);
    let db = &tool.databases[0];
    let attach_target = dir.join("attached.db");
    let vacuum_target = dir.join("copy.db");
    let hostile = [
        "INSERT INTO patients VALUES (3, 'Eve')".to_owned(),
        "UPDATE patients SET name = 'Eve'".into(),
        "DELETE FROM patients".into(),
        "DROP TABLE patients".into(),
        "CREATE TABLE t (x)".into(),
        "CREATE TEMP TABLE t (x)".into(),
        format!("ATTACH DATABASE '{}' AS a", attach_target.display()),
        "PRAGMA query_only = OFF".into(),
        "PRAGMA writable_schema = ON".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "SELECT load_extension('/tmp/evil.so')".into(),
        "SELECT 1; DELETE FROM patients".into(),
        "SELECT 1; SELECT 2".into(),
        "BEGIN".into(),
        "VACUUM".into(),
        format!("VACUUM INTO '{}'", vacuum_target.display()),
        "REINDEX".into(),
        "ANALYZE".into(),
        "WITH x AS (SELECT 1) INSERT INTO patients SELECT 9, 'x' FROM x".into(),
        "REPLACE INTO patients VALUES (1, 'Eve')".into(),
    ];
    for query in &hostile {
        let failure = match sql::run(&tool, db, query).await {
            Ok(answer) => panic!("{query:?} ran: {answer}"),
            Err(failure) => failure,
        };
        assert!(
            matches!(failure, Failure::QueryRefused(_) | Failure::Failed(_)),
            "{query:?}: {failure:?}"
        );
    }
    assert!(!attach_target.exists(), "ATTACH created a file");
    assert!(!vacuum_target.exists(), "VACUUM INTO wrote a copy");

    // A recursive CTE that never ends is cut at the row cap ...
    let rows = sql::run(
        &tool,
        db,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
    )
    .await
    .unwrap();
    assert_eq!(rows["rowCount"], 50);
    assert_eq!(rows["truncated"], true);
    // ... and one that never yields a row is stopped at the timeout.
    let started = std::time::Instant::now();
    let failure = sql::run(
        &tool,
        db,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    .await
    .unwrap_err();
    assert!(matches!(failure, Failure::Timeout(_)), "{failure:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let big = sql::run(&tool, db, "SELECT randomblob(100000000)")
        .await
        .unwrap_err();
    assert!(
        matches!(big, Failure::QueryRefused(_) | Failure::Failed(_)),
        "{big:?}"
    );

    let answer = sql::run(&tool, db, "SELECT id, name FROM patients ORDER BY id")
        .await
        .unwrap();
    assert_eq!(answer["columns"], serde_json::json!(["id", "name"]));
    assert_eq!(answer["rows"], serde_json::json!([[1, "Ann"], [2, "Bo"]]));
    assert_eq!(answer["truncated"], false);
    let schema = sql::run(&tool, db, "PRAGMA table_info(patients)")
        .await
        .unwrap();
    assert_eq!(schema["rowCount"], 2);
    assert_eq!(
        std::fs::read(&db_path).unwrap(),
        before,
        "the database file changed"
    );
}
