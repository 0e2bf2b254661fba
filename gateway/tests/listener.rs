//! The listener of the real binary under hostile clients: bodies are
//! never read before the caller is authenticated, memory stays bounded
//! while hundreds of slow unauthenticated uploads are in flight, bodies in
//! flight share one byte budget, connections are capped, HTTP/2 has the
//! same header-read / idle timeout as HTTP/1, and TLS is served from a
//! certificate and key in files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "demo-key-change-me";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-listener-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn quickstart(d: &Path) -> PathBuf {
    let p = d.join("policy.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml"),
        &p,
    )
    .unwrap();
    p
}

/// The real binary on `d`'s quickstart configuration, with `extra` flags.
fn start(d: &Path, extra: &[&str]) -> Gateway {
    let config = quickstart(d);
    let mut args = vec![
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-audit",
    ];
    args.extend_from_slice(extra);
    let (child, addr) = common::spawn_gateway(&args);
    Gateway { child, addr }
}

struct Gateway {
    child: Child,
    addr: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// A line of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    fn kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }
}

/// One authenticated `POST /v1/tool-calls` on a fresh connection to
/// `addr`: the raw answer.
async fn tool_call(addr: &str) -> String {
    let body = r#"{"tool":"search_web","arguments":{}}"#;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/tool-calls HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
}

/// The gateway's `palisade_request_body_bytes_in_flight`, scraped on a
/// fresh connection.
async fn body_bytes_in_flight(addr: &str) -> u64 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
        .lines()
        .find_map(|l| l.strip_prefix("palisade_request_body_bytes_in_flight "))
        .unwrap_or_else(|| panic!("no body gauge in {answer}"))
        .trim()
        .parse()
        .unwrap()
}

/// Headers of an upload of `len` bytes with `authorization` (or none).
fn upload_head(authorization: Option<&str>, len: usize) -> String {
    let auth = authorization
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// Sends `head` and then as much of `sent` body bytes as the gateway
/// takes, then keeps the connection open (the rest never comes) until
/// `release` fires; returns what the gateway answered, if anything.
async fn slow_upload(
    addr: String,
    head: String,
    sent: usize,
    uploaded: tokio::sync::mpsc::Sender<()>,
    mut release: tokio::sync::watch::Receiver<bool>,
) -> String {
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let _ = s.write_all(head.as_bytes()).await;
    let chunk = vec![b' '; 64 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        // The gateway may answer and close before taking it all.
        if s.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    let _ = uploaded.send(()).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = release.changed() => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_slow_unauthenticated_uploads_neither_exhaust_memory_nor_starve_an_agent() {
    let d = dir("slow-uploads");
    // A generous body timeout: the uploads stay in flight throughout.
    let g = start(&d, &["--body-read-timeout", "120s"]);
    assert!(tool_call(&g.addr).await.starts_with("HTTP/1.1 200"));
    let baseline = g.kib("VmRSS");

    // 500 uploads that declare (almost) the largest body allowed, send
    // 600 KiB of it and stall: half without a key, half with a wrong one.
    const UPLOADS: usize = 500;
    const SENT: usize = 600 * 1024;
    let (uploaded, mut done) = tokio::sync::mpsc::channel(UPLOADS);
    let (release, released) = tokio::sync::watch::channel(false);
    let mut uploads = Vec::new();
    for i in 0..UPLOADS {
        let auth = (i % 2 == 1).then_some("Bearer sk-not-a-key");
        uploads.push(tokio::spawn(slow_upload(
            g.addr.clone(),
            upload_head(auth, 1_000_000),
            SENT,
            uploaded.clone(),
            released.clone(),
        )));
    }
    for _ in 0..UPLOADS {
        done.recv().await.unwrap();
    }

    // While they are in flight, an agent is answered (a generous
    // deadline: this is about starvation, not speed).
    let answer = tokio::time::timeout(Duration::from_secs(60), tool_call(&g.addr))
        .await
        .expect("the agent's request was starved by unauthenticated uploads");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("tool.allowed_by_rule"), "{answer}");

    // The uploads (300 MB offered) never became the gateway's memory: its
    // peak resident set grew by far less than one upload per connection.
    let peak = g.kib("VmHWM");
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "{UPLOADS} slow unauthenticated uploads: peak RSS {} MiB, {grown_mib} MiB over the baseline",
        peak / 1024
    );
    assert!(
        grown_mib < 96,
        "the gateway's peak RSS grew by {grown_mib} MiB (baseline {} MiB, peak {} MiB) for {UPLOADS} unauthenticated uploads",
        baseline / 1024,
        peak / 1024
    );

    release.send(true).unwrap();
    for upload in uploads {
        let answer = upload.await.unwrap();
        // Each was refused on its headers (or cut off): never accepted.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_share_one_byte_budget_and_connections_are_capped() {
    let d = dir("budget");
    let g = start(
        &d,
        &[
            "--max-in-flight-body-bytes",
            "2000000",
            "--max-connections",
            "4",
            "--body-read-timeout",
            "120s",
        ],
    );
    // Two agents each declare a body of 1,000,000 bytes, send most of it
    // and stall: the whole budget of 2,000,000 bytes is theirs (a body's
    // declared length is reserved before it is read).
    let (uploaded, mut done) = tokio::sync::mpsc::channel(2);
    let (release, released) = tokio::sync::watch::channel(false);
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(tokio::spawn(slow_upload(
            g.addr.clone(),
            upload_head(Some(&format!("Bearer {KEY}")), 1_000_000),
            900_000,
            uploaded.clone(),
            released.clone(),
        )));
    }
    done.recv().await.unwrap();
    done.recv().await.unwrap();
    // Sent is not yet reserved: wait until the gateway shows both bodies
    // in `palisade_request_body_bytes_in_flight` (probing with a request
    // instead would race a reservation still to come).
    let mut in_flight = 0;
    for _ in 0..600 {
        in_flight = body_bytes_in_flight(&g.addr).await;
        if in_flight >= 2_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        in_flight, 2_000_000,
        "the two uploads' bodies never reserved"
    );
    // A third agent's body does not fit: 503 gateway.overloaded, at once.
    let answer = tool_call(&g.addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("gateway.overloaded"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );

    // Connections are capped at 4: with the two uploads and two idle
    // connections open, a fifth connection is not served...
    let idle = [
        TcpStream::connect(&g.addr).await.unwrap(),
        TcpStream::connect(&g.addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fifth = tokio::spawn({
        let addr = g.addr.clone();
        async move {
            let g = Gateway {
                child: std::process::Command::new("true").spawn().unwrap(),
                addr,
            };
            tool_call(&g.addr).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!fifth.is_finished(), "a fifth connection was served");
    // ...until one goes: then it is (a connection's bytes are released
    // before its slot), and the budget has room again.
    release.send(true).unwrap();
    for s in stalled {
        s.await.unwrap();
    }
    let answer = tokio::time::timeout(Duration::from_secs(60), fifth)
        .await
        .expect("the fifth connection was never served")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
    assert!(tool_call(&g.addr).await.starts_with("HTTP/1.1 200"));
}

#[test]
fn listener_limits_that_cannot_work_are_refused_at_start_up() {
    let d = dir("bad-limits");
    let config = quickstart(&d);
    for (flag, value, says) in [
        ("--max-in-flight-body-bytes", "1000", "at least 1048576"),
        ("--max-connections", "0", "--max-connections"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
            .args(["run", "--config", config.to_str().unwrap(), "--no-audit"])
            .args([flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}

/// Reads HTTP/2 frames until the connection closes; whether it did within
/// `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The HTTP/2 preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A HEADERS frame (stream 1, END_STREAM | END_HEADERS) for `GET /healthz`,
/// HPACK without Huffman or indexing.
fn h2_get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x04); // :path, literal value
    block.push(8);
    block.extend_from_slice(b"/healthz");
    block.push(0x01); // :authority
    block.push(1);
    block.push(b'x');
    let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x05, 0, 0, 0, 1];
    frame.extend(block);
    frame
}

#[tokio::test]
async fn http2_connections_get_the_same_header_read_and_idle_timeout_as_http1() {
    let d = dir("h2");
    let g = start(&d, &["--header-read-timeout", "1s"]);
    // A connection that sends the preface and then nothing is closed.
    let mut silent = TcpStream::connect(&g.addr).await.unwrap();
    silent.write_all(H2_PREFACE).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(20)).await,
        "a silent HTTP/2 connection was kept open"
    );
    // One that made a request and then idles is closed too.
    let mut idle = TcpStream::connect(&g.addr).await.unwrap();
    idle.write_all(H2_PREFACE).await.unwrap();
    idle.write_all(&h2_get_healthz()).await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)).await,
        "an idle HTTP/2 connection was kept open"
    );
    // And HTTP/1 likewise (hyper's own header-read timeout).
    let mut h1 = TcpStream::connect(&g.addr).await.unwrap();
    h1.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    assert!(closed_within(&mut h1, Duration::from_secs(20)).await);
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with the
/// openssl command line; (ca.crt, server.crt, server.key).
fn certificates(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=palisade-gateway",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    (d.join("ca.crt"), d.join("server.crt"), d.join("server.key"))
}

#[tokio::test]
async fn tls_is_served_from_a_certificate_and_key_in_files() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = dir("tls");
    let (ca, cert, key) = certificates(&d);
    let g = start(
        &d,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let config = d.join("policy.yaml");
    let port = g.addr.rsplit(':').next().unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let resp = client
            .post(format!("https://{host}:{port}/v1/tool-calls"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(r#"{"tool": "search_web", "arguments": {}}"#)
            .send()
            .await
            .unwrap();
        // ALPN offers HTTP/2, which the gateway speaks.
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(body["reasonCode"], "tool.allowed_by_rule", "{body}");
    }
    // A client that does not trust the CA gets no answer.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // A key that does not exist: a start-up error naming the flag.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--no-audit",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/tls.key",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--tls-key") && stderr.contains("/nonexistent/tls.key"),
        "{stderr}"
    );
    // Only one of the two: refused by the argument parser.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(["run", "--config", config.to_str().unwrap(), "--no-audit"])
        .args(["--tls-cert", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

/// Issue 27: with `--metrics-listen`, `/metrics` is served only on its
/// own port (which the chart keeps away from agents), never beside the
/// API; that port serves nothing an agent calls.
#[tokio::test]
async fn metrics_on_their_own_port_are_not_on_the_api_port() {
    let d = dir("metrics-port");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap().to_string();
    drop(free);
    let g = start(&d, &["--metrics-listen", &metrics_addr]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = get(format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("palisade_decisions_total") || body.contains("palisade_"),
        "{body}"
    );
    let (status, body) = get(format!("http://{}/metrics", g.addr)).await;
    assert_eq!(status, 404, "the API port still serves metrics: {body}");
    let (status, _) = get(format!("http://{metrics_addr}/v1/models")).await;
    assert_eq!(status, 404);
    let (status, body) = get(format!("http://{metrics_addr}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // Without the flag, /metrics stays where it was.
    let plain = start(&d, &[]);
    let (status, _) = get(format!("http://{}/metrics", plain.addr)).await;
    assert_eq!(status, 200);
}
