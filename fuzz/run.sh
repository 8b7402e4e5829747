#!/usr/bin/env bash
# Fuzz every target in fuzz/fuzz_targets/ for SECONDS each (default 60), one
# at a time, starting from its committed seeds (fuzz/corpus/TARGET). New
# inputs libFuzzer finds go to fuzz/target/corpus/TARGET (not committed), so
# each run goes on from where the last one stopped.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]
#
# Prints each target's executions; exits 1 if any target crashed (a panic,
# a broken property, a timeout or a memory limit), naming the reproducer
# under fuzz/artifacts/TARGET/. Without the nightly toolchain or cargo-fuzz it
# says how to install them and exits 0, so CI can call it unconditionally.
set -euo pipefail
seconds=${1:-60}
case $seconds in
  '' | *[!0-9]* | 0)
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] (a whole number above 0)" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (install it with: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz is not installed (install it with: cargo install cargo-fuzz)"
  exit 0
fi

# Release with debug assertions and overflow checks (cargo-fuzz's default),
# AddressSanitizer on. The binaries are then run directly: `cargo fuzz run`
# would rebuild whenever a source file changed in the meantime.
cargo +nightly fuzz build
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=fuzz/target/$host/release

fuzzer=
trap '[ -n "$fuzzer" ] && kill "$fuzzer" 2>/dev/null; exit 130' INT TERM
mkdir -p fuzz/target/logs
crashed=()
for target in $(cargo +nightly fuzz list); do
  work=fuzz/target/corpus/$target
  log=fuzz/target/logs/$target.log
  artifacts=fuzz/artifacts/$target
  mkdir -p "$work" "fuzz/corpus/$target" "$artifacts"
  echo "fuzz: $target for ${seconds}s (log: $log)"
  # One process, one job: the machine is shared. -timeout turns an input
  # that takes over 10 s into a crash (a parser must never hang).
  "$bin/$target" "$work" "fuzz/corpus/$target" -artifact_prefix="$artifacts/" \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 &
  fuzzer=$!
  status=0
  wait "$fuzzer" || status=$?
  fuzzer=
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  if [ "$status" -ne 0 ]; then
    crashed+=("$target")
    echo "fuzz: $target CRASHED after ${runs:-?} executions; the end of its log:"
    tail -n 30 "$log"
  else
    echo "fuzz: $target: ${runs:-?} executions in ${seconds}s, ${coverage:-cov: ?}, corpus $(find "$work" -type f | wc -l) inputs"
  fi
done

if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${crashed[*]} (reproduce: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE)"
  exit 1
fi
echo "fuzz: no crash"
