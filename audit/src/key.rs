//! The audit chain's key: the chain hash is an HMAC-SHA256 under a key
//! the database never holds (a file, or a Secret mounted as one), so
//! someone who can write to the database cannot recompute the hashes of
//! rows they rewrote.

use crate::error::AuditError;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The key's bytes. Its `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey(Arc<[u8]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.fingerprint())
    }
}

/// The file the standalone gateway keeps its key in by default: next to
/// its configuration (and its SQLite database), never inside the database.
pub const DEFAULT_KEY_FILE: &str = "palisade-audit.key";

impl AuditKey {
    /// Keys shorter than this are refused.
    pub const MIN_BYTES: usize = 32;

    /// A key from its bytes; surrounding whitespace (a file's trailing
    /// newline) is not part of it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        let key = bytes.trim_ascii();
        if key.len() < Self::MIN_BYTES {
            return Err(AuditError::KeyTooShort {
                source_name: "the key".into(),
                len: key.len(),
            });
        }
        Ok(Self(key.into()))
    }

    /// The key in `path` (at least 32 bytes, e.g. 64 hex characters).
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let bytes = std::fs::read(path).map_err(|source| AuditError::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            AuditError::KeyTooShort { len, .. } => AuditError::KeyTooShort {
                source_name: path.display().to_string(),
                len,
            },
            other => other,
        })
    }

    /// The key in `path`, created first (32 random bytes as hex, readable
    /// only by its owner) when there is no such file. `true` when created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), AuditError> {
        if path.exists() {
            return Ok((Self::from_file(path)?, false));
        }
        let io = |source| AuditError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let hex = hex(&random);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, format!("{hex}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok((Self(hex.into_bytes().into()), true))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Names the key in reports without revealing it: the first 16 hex
    /// characters of SHA-256("palisade-audit-key\n" + key).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"palisade-audit-key\n");
        h.update(&self.0);
        hex(&h.finalize()[..8])
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_and_a_created_key_is_read_back() {
        let err = AuditKey::from_bytes(b"too short\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("9 bytes") && err.contains("at least 32"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("palisade-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(DEFAULT_KEY_FILE);
        let (created, fresh) = AuditKey::load_or_create(&path).unwrap();
        assert!(fresh);
        let (again, fresh) = AuditKey::load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(created, again);
        assert_eq!(created.bytes().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{created:?}").contains(std::str::from_utf8(created.bytes()).unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
