//! Links the gateway's executable with packed relative relocations
//! (`-z pack-relative-relocs`, DT_RELR) when it is built for this machine
//! and this machine's glibc understands them (2.36 or later: Debian 12,
//! as in the image's build stage and its distroless base). A
//! position-independent executable carries one relocation per pointer in
//! its read-only data (≈65,000); as 24-byte RELA entries they are 1.5 MB
//! that the loader reads at every start and that stay mapped, about 7 %
//! of the idle gateway's memory (docs/benchmarks.md, "Idle memory").
//! Packed, they are 24 KB. The executable stays position independent
//! (address randomisation unchanged), and needs glibc 2.36 to start.
//!
//! On an older glibc (Ubuntu 22.04's 2.35, say), for another target, or
//! for musl it links the usual way. The check is of the building
//! machine's glibc: a build pointed at an older one (a `--sysroot`, or
//! cargo-zigbuild's `x86_64-unknown-linux-gnu.2.17`) gets packed
//! relocations all the same, and an executable that says "version
//! `GLIBC_ABI_DT_RELR' not found" where that glibc runs it: build it with
//! `PALISADE_PACKED_RELOCS=0`.
//!
//! A release build for x86-64 Linux is also linked with its code in the
//! order of `code-order.txt` (rust-lld's `--symbol-ordering-file`): the
//! functions requests run, then those start-up runs, then the rest. The
//! kernel maps an executable's code in 64 KB at a time around each page
//! it runs, so with the few megabytes a standalone gateway runs spread
//! over 18 MB it maps in most of them; packed together, only those.
//! `bench/code_order.sh` writes the file from callgrind profiles; a name a
//! build no longer has is skipped. It needs rust-lld, the default linker
//! of that target since Rust 1.90: with another linker configured
//! (`target.*.linker`, `-C linker-features=-lld`) it is left out, and
//! `PALISADE_CODE_ORDER=0` leaves it out too.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PALISADE_PACKED_RELOCS");
    let wanted = std::env::var("PALISADE_PACKED_RELOCS").as_deref() != Ok("0");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if wanted && target == host && target.ends_with("-linux-gnu") && host_glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    order_code(&target);
}

/// `--symbol-ordering-file=code-order.txt` for a release build linked by
/// rust-lld.
fn order_code(target: &str) {
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-env-changed=PALISADE_CODE_ORDER");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let rustflags = env("CARGO_ENCODED_RUSTFLAGS");
    let rust_lld = target == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !rustflags.contains("linker-features=-lld")
        && !rustflags.contains("link-self-contained=-linker");
    if env("PALISADE_CODE_ORDER") == "0" || env("PROFILE") != "release" || !rust_lld {
        return;
    }
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("code-order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this machine's glibc (which `cargo run` and the tests load the
/// executable with) is 2.36 or later.
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
