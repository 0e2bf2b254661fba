//! Test support for the audit pipeline: [`TestPostgres`], a throwaway
//! PostgreSQL server (the machine's `initdb` / `pg_ctl`, a temp dir, a free
//! port), [`Backends`] to run one suite against PostgreSQL and SQLite, and
//! the `audit-probe` binary the crash tests kill.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh temp directory (the shared test kit's).
pub use palisade_testkit::temp_dir;

fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join(name).exists() {
            return dir.join(name);
        }
    }
    for dir in std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        let candidate = dir.path().join("bin").join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL server in a temp dir on a free loopback port. PostgreSQL
/// refuses to run as root, so as root it runs as the `postgres` user.
#[derive(Debug)]
pub struct TestPostgres {
    dir: PathBuf,
    port: u16,
    as_user: Option<String>,
    fsync: bool,
}

impl TestPostgres {
    /// initdb + start; panics with the server's log if it cannot start
    /// (a test that needs Postgres must never silently skip).
    pub fn start() -> Self {
        Self::start_with_fsync(false)
    }

    /// Like [`TestPostgres::start`]; `fsync: true` keeps PostgreSQL's
    /// durable defaults (for benchmarks), `false` trades them for speed.
    pub fn start_with_fsync(fsync: bool) -> Self {
        let dir = temp_dir("pg");
        let as_user = is_root().then(|| "postgres".to_string());
        if let Some(user) = &as_user {
            let ok = Command::new("chown")
                .args(["-R", user, dir.to_str().unwrap_or_default()])
                .status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "cannot chown {} to {user}",
                dir.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(54329);
        let pg = Self {
            dir,
            port,
            as_user,
            fsync,
        };
        let data = pg.data();
        let out = pg.run(
            &pg_bin("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "palisade",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut cmd = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    fn start_server(&self) {
        let fsync = if self.fsync { "on" } else { "off" };
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run(
            &pg_bin("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `postgres://palisade@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://palisade@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this server, for one test.
    pub fn database(&self, name: &str) -> String {
        let out = self.run(
            &pg_bin("createdb"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "palisade",
                name,
            ],
        );
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://palisade@127.0.0.1:{}/{name}", self.port)
    }

    /// Kills the server the hard way (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        let out = self.run(
            &pg_bin("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.start_server();
    }

    /// Freezes the server and its backends (SIGSTOP): connections are
    /// still accepted by the kernel and writes still land in the socket
    /// buffers, but nothing answers, like a database host that hangs.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Undoes [`TestPostgres::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid_file = Path::new(&self.data()).join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(&pids)
            .status()
            .unwrap_or_else(|e| panic!("kill -{sig}: {e}"));
        assert!(status.success(), "kill -{sig} {pids:?} failed");
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.run(
            &pg_bin("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One database URL per backend, for a suite that must pass on both.
#[derive(Debug)]
pub struct Backends {
    pub postgres: TestPostgres,
    dir: PathBuf,
}

impl Backends {
    pub fn start() -> Self {
        Self {
            postgres: TestPostgres::start(),
            dir: temp_dir("sqlite"),
        }
    }

    /// `[("postgres", url), ("sqlite", url)]`, each a fresh database.
    pub fn urls(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("postgres", self.postgres.database(name)),
            (
                "sqlite",
                format!("sqlite://{}", self.dir.join(format!("{name}.db")).display()),
            ),
        ]
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An allowed tool-call event of agent `ns/agent` with request id
/// `req-{i}`.
pub fn numbered(i: usize) -> palisade_audit::AuditEvent {
    palisade_audit::AuditEvent::new(
        palisade_audit::EventKind::ToolCall,
        &format!("req-{i}"),
        "ns",
        "agent",
        palisade_audit::AuditDecision::Allow,
    )
}

/// What an `audit-probe` run was answered.
#[derive(Debug, Default)]
pub struct ProbeAnswers {
    pub acked: std::collections::HashSet<String>,
    pub refused: usize,
}

/// Runs `probe` (the `audit-probe` binary) recording `count` events, 50
/// at a time, into `url` with its spool in `spool`, while no file it
/// writes may grow past `limit_kib` KiB (`ulimit -f`, SIGXFSZ ignored: a
/// write past it ends short, then fails with EFBIG, as on a full disk).
/// `on_ack` is told the number acknowledged so far after each one. The
/// probe is killed (SIGKILL) once it has answered all `count`.
pub fn probe_under_file_limit(
    probe: &str,
    url: &str,
    spool: &Path,
    count: usize,
    limit_kib: u64,
    mut on_ack: impl FnMut(usize),
) -> ProbeAnswers {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$@\""))
        .args(["probe", probe, url])
        .arg(spool)
        .arg(count.to_string())
        .env("AUDIT_PROBE_CONCURRENT", "50")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {probe}: {e}"));
    let Some(stdout) = child.stdout.take() else {
        panic!("the probe's output is not piped");
    };
    let mut answers = ProbeAnswers::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_else(|e| panic!("the probe's output: {e}"));
        if let Some(id) = line.strip_prefix("ack ") {
            answers.acked.insert(id.to_owned());
            on_ack(answers.acked.len());
        } else if line.starts_with("refused ") {
            answers.refused += 1;
        } else if line == "done" {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    answers
}

/// Runs `probe` once more without a limit to write what the killed one
/// left (spool, journal) to `url`.
pub fn drain_with_probe(probe: &str, url: &str, spool: &Path) {
    let status = Command::new(probe)
        .arg(url)
        .arg(spool)
        .arg("0")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {probe}: {e}"));
    assert!(status.success(), "the draining probe failed: {status}");
}

/// Every acknowledged event is among `ids` (the rows' ids), and no other.
pub fn assert_exactly_answered(answers: &ProbeAnswers, ids: &[String]) {
    assert!(
        answers.refused > 0,
        "no write failed: the size limit was not reached"
    );
    assert!(!answers.acked.is_empty());
    let unanswered = ids.iter().filter(|id| !answers.acked.contains(*id)).count();
    assert_eq!(
        unanswered,
        0,
        "{unanswered} refused events recorded ({} refused, {} answered)",
        answers.refused,
        answers.acked.len()
    );
    let lost = answers.acked.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(lost, 0, "answered events lost");
}
