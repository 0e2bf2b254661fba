#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 180), one after the
# other, from the committed seed corpus (fuzz/corpus/<target>/). Inputs the
# fuzzer finds go to fuzz/target/corpus/<target>/ (not committed); a crash
# is written to fuzz/artifacts/<target>/ and makes the script exit 1 after
# the remaining targets ran. Prints one line per target: seconds, execs,
# crash or not (what docs/fuzzing.md records).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the stable toolchain only: cargo-fuzz's nightly flags are accepted
# on stable with RUSTC_BOOTSTRAP=1. No sanitizer: the workspace forbids
# unsafe code, so the fuzzers hunt panics, broken invariants, timeouts and
# runaway memory; debug assertions (overflow checks) are on.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-180}
shift || true

fail() {
  echo "fuzz: $*" >&2
  exit 1
}

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked ||
    fail "cannot install cargo-fuzz $CARGO_FUZZ_VERSION (cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked); the fuzz targets were NOT run"
fi
# libFuzzer itself is C++, built by libfuzzer-sys.
command -v c++ >/dev/null 2>&1 ||
  fail "no C++ compiler (c++): install g++ (Debian: apt-get install g++); the fuzz targets were NOT run"

export RUSTC_BOOTSTRAP=1
build=(-s none --debug-assertions)

started=$SECONDS
# cargo fuzz has no --locked: check the committed fuzz/Cargo.lock is
# current first, so the build uses exactly its versions.
cargo metadata --locked --format-version 1 >/dev/null ||
  fail "fuzz/Cargo.lock is out of date (cd fuzz && cargo update -w)"
cargo fuzz build "${build[@]}" || fail "the fuzz targets do not build"
echo "fuzz: built in $((SECONDS - started)) s"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || fail "no fuzz targets found"

mkdir -p target/logs
crashed=()
for t in "${targets[@]}"; do
  [ -d "corpus/$t" ] || fail "no seed corpus for $t (fuzz/corpus/$t/)"
  mkdir -p "target/corpus/$t"
  log="target/logs/$t.log"
  # The first corpus directory receives new inputs; the seeds are read only.
  # -timeout: one input taking 10 s is a finding (a CEL program or a
  # regex without a cost bound); -rss_limit_mb: so is 2 GiB of memory.
  status=0
  cargo fuzz run "${build[@]}" "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    crashed+=("$t")
    echo "fuzz: $t: ${seconds} s, ${execs:-?} execs, CRASH (exit $status; log $PWD/$log, input in $PWD/artifacts/$t/)"
    grep -m 5 -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" >&2 || true
  else
    echo "fuzz: $t: ${seconds} s, ${execs:-?} execs, no crash"
  fi
done

if [ ${#crashed[@]} -gt 0 ]; then
  fail "crashes in: ${crashed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a TARGET artifacts/TARGET/crash-...)"
fi
