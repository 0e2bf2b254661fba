//! Writes the CRD manifests generated from the Rust types to `crds/` and
//! `charts/palisade/crds/` (run from anywhere in the workspace):
//! `cargo run -p palisade-crds --bin crdgen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifests = match palisade_crds::manifests::crd_manifests() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("crdgen: cannot render CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    for dir in [PathBuf::from("crds"), PathBuf::from("charts/palisade/crds")] {
        let dir = root.join(dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (file, yaml) in &manifests {
            let path = dir.join(file);
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
