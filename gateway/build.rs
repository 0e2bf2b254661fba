//! Links the gateway's executable with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR) where the C library that will load
//! it understands them (glibc 2.36 or later: Debian 12, the image's
//! distroless base). A position-independent executable carries one
//! relocation per pointer in its read-only data (≈65,000); as 24-byte
//! RELA entries they are 1.5 MB that the loader reads at every start and
//! that stay mapped, a tenth of the idle gateway's memory
//! (docs/benchmarks.md, "Idle memory"). Packed, they are a few kilobytes.
//! The executable stays position independent (address randomisation
//! unchanged).
//!
//! Built against an older glibc (Ubuntu 22.04's 2.35, say) it links the
//! usual way: an executable with DT_RELR would not start there.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target == host && target.ends_with("-linux-gnu") && host_glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (which the executable will link against
/// and, for `cargo run`, be loaded by) is 2.36 or later.
fn host_glibc_has_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
