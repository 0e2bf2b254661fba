//! `palisade-gateway smoke`: checks a running gateway from the outside,
//! as an agent sees it — ready, and one tool call decided with the reason
//! code expected — retrying while the configuration is on its way. What
//! the chart's `helm test` runs; useful after any deployment.

use crate::http_client::HttpClient;
use clap::Args;
use hyper::Uri;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct SmokeArgs {
    /// The gateway's base URL, e.g.
    /// http://palisade-gateway.palisade-system.svc:8080.
    #[arg(long)]
    pub url: String,
    /// A file holding the agent's bearer token (an API key, or a
    /// ServiceAccount token, which the kubelet renews): read at each try.
    #[arg(long, value_name = "PATH")]
    pub token_file: PathBuf,
    /// The tool to ask about (with no arguments).
    #[arg(long)]
    pub tool: String,
    /// The reason code the decision must carry, e.g. tool.denied_by_rule.
    #[arg(long, value_name = "CODE")]
    pub expect_reason: String,
    /// For https://: trust only the CA certificates in this PEM file
    /// (default: the system's).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// How long to keep trying, in seconds: a new policy takes a moment to
    /// reach every gateway.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Why the check could not even start.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("--url {0:?} is not an http:// or https:// URL")]
    Url(String),
    #[error("--ca-file {path}: {message}")]
    CaFile { path: String, message: String },
}

/// Runs the check: exit 0 once the gateway is ready and decides the call
/// as expected, 1 (saying what it last saw) if that does not happen in time.
pub fn run(args: SmokeArgs) -> Result<ExitCode, super::CliError> {
    super::runtime()?.block_on(check(args))
}

async fn check(args: SmokeArgs) -> Result<ExitCode, super::CliError> {
    let base = args.url.trim_end_matches('/').to_owned();
    let uri = |path: &str| -> Result<Uri, SmokeError> {
        let uri: Uri = format!("{base}{path}")
            .parse()
            .map_err(|_| SmokeError::Url(args.url.clone()))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.host().is_some() => Ok(uri),
            _ => Err(SmokeError::Url(args.url.clone())),
        }
    };
    let (ready, decide) = (uri("/readyz")?, uri("/v1/tool-calls")?);
    let client = match &args.ca_file {
        None => HttpClient::new(),
        Some(path) => HttpClient::with_roots(roots(path)?),
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let last = match attempt(&client, &ready, &decide, &args).await {
            Ok(summary) => {
                println!("ok: {summary}");
                return Ok(ExitCode::SUCCESS);
            }
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            eprintln!(
                "palisade-gateway smoke: not as expected after {} s: {last}",
                args.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("waiting: {last}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One try: `Ok` with what was seen when all is as expected, else what
/// was seen instead.
async fn attempt(
    client: &HttpClient,
    ready: &Uri,
    decide: &Uri,
    args: &SmokeArgs,
) -> Result<String, String> {
    let timeout = Duration::from_secs(10);
    let answer = client
        .get(ready.clone(), &[], timeout)
        .await
        .map_err(|e| format!("GET {ready}: {e}"))?;
    if !answer.status.is_success() {
        return Err(format!("GET {ready}: {}", answer.status));
    }
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| format!("--token-file {}: {e}", args.token_file.display()))?;
    let body = json!({"tool": args.tool, "arguments": {}});
    let started = Instant::now();
    let answer = client
        .post_json(
            decide.clone(),
            &[("authorization", format!("Bearer {}", token.trim()))],
            body.to_string().into_bytes(),
            timeout,
        )
        .await
        .map_err(|e| format!("POST {decide}: {e}"))?;
    let status = answer.status.as_u16();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| format!("POST {decide}: {e}"))?;
    let elapsed = started.elapsed();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // A decision's answer carries its reason code at the top; a refusal's
    // (OpenAI's error shape) beside the error, in its `palisade` object.
    let reason = [
        &body["reasonCode"],
        &body["palisade"]["reasonCode"],
        &body["error"]["code"],
    ]
    .into_iter()
    .find_map(Value::as_str)
    .unwrap_or("(none)");
    if reason != args.expect_reason {
        return Err(format!(
            "POST {decide} ({}): {status} {reason}, expected {}",
            args.tool, args.expect_reason
        ));
    }
    let rule = [&body["rule"], &body["palisade"]["rule"]]
        .into_iter()
        .find_map(Value::as_str)
        .unwrap_or("none");
    Ok(format!(
        "{} ready; {} decided {status} {reason} (rule {rule}) in {} ms",
        args.url,
        args.tool,
        elapsed.as_millis()
    ))
}

fn roots(path: &std::path::Path) -> Result<rustls::RootCertStore, SmokeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let failed = |message: String| SmokeError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| failed(e.to_string()))?;
        store.add(cert).map_err(|e| failed(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(failed("no certificate in it".into()));
    }
    Ok(store)
}
