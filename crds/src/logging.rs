//! How both binaries log (to stderr): `text` for people, `json` (one
//! object per line: time, level, target, message and fields) for log
//! pipelines; the level from `RUST_LOG`, `info` by default.

use std::str::FromStr;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format: use text or json")),
        }
    }
}

/// The log lines' layer in `format`, writing to stderr.
pub fn layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            Box::new(fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
        }
        LogFormat::Json => Box::new(fmt.json().flatten_event(true)),
    }
}

/// The level filter: `RUST_LOG`, `info` by default.
pub fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Installs the process's logger (once; later calls do nothing).
pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(layer(format))
        .try_init();
}
