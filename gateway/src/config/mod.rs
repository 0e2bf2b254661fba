//! Standalone configuration: read the `--config` files and compile them
//! into a bundle, with every problem reported as `file:line: message`;
//! [`reload`] serves them and swaps in every valid edit.

pub mod reload;

use palisade_crds::Compilation;
use palisade_crds::standalone::{FileDiagnostic, Source, Standalone, load};
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration that compiled, with any warnings.
#[derive(Debug)]
pub struct Loaded {
    pub config: Standalone,
    pub compilation: Compilation,
    pub warnings: Vec<FileDiagnostic>,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Lines(.0))]
    Invalid(Vec<FileDiagnostic>),
    #[error(
        "GatewaySettings spec.approvals.operators[{operator}]: the token in {var} is also the API key of agent {namespace}/{agent}; an agent must never decide approvals, give the operator a different token"
    )]
    OperatorTokenIsAgentKey {
        operator: String,
        var: String,
        namespace: String,
        agent: String,
    },
}

struct Lines<'a>(&'a [FileDiagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads and compiles the files; secrets named in `GatewaySettings` come
/// from the process environment.
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, ConfigError> {
    let texts = read_files(paths)?;
    let sources = sources(&texts);
    let env = |var: &str| std::env::var(var).ok();
    let (config, compilation, warnings) =
        load(&sources, &env, jiff::Timestamp::now()).map_err(ConfigError::Invalid)?;
    Ok(Loaded {
        config,
        compilation,
        warnings,
    })
}

/// The kill switches the files set, read even from files that do not
/// load ([`palisade_crds::standalone::kill_switches`]); none if a file
/// cannot be read.
pub fn kill_switches_in(paths: &[PathBuf]) -> Vec<palisade_policy::KillSwitches> {
    read_files(paths)
        .map(|texts| palisade_crds::standalone::kill_switches(&sources(&texts)))
        .unwrap_or_default()
}

/// Each file's name and text.
fn read_files(paths: &[PathBuf]) -> Result<Vec<(String, String)>, ConfigError> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            Ok((path.display().to_string(), text))
        })
        .collect()
}

fn sources(texts: &[(String, String)]) -> Vec<Source<'_>> {
    texts
        .iter()
        .map(|(name, text)| Source { name, text })
        .collect()
}

/// The directory of a standalone gateway's first configuration file.
fn config_dir(first_config: &Path) -> &Path {
    first_config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The SQLite file a standalone gateway audits to by default.
pub fn default_sqlite_url(first_config: &Path) -> String {
    format!(
        "sqlite://{}",
        config_dir(first_config).join("palisade-audit.db").display()
    )
}

/// The audit chain's key file of a standalone gateway by default (created
/// at its first start): next to its configuration, not in the database.
pub fn default_key_file(first_config: &Path) -> std::path::PathBuf {
    config_dir(first_config).join(palisade_audit::key::DEFAULT_KEY_FILE)
}
