# corral adapter for bench/compare.sh (interface: bench/peers/common.sh).
# CORRAL_BIN is the binary under test. One TOML file per service; the init,
# finish and socket paths are private to the run.
corral_bins() { echo "$CORRAL_BIN"; }
corral_install() { echo "cargo build --release"; }
corral_version() {
  local dirty=""
  if [ "$(readlink -f "$CORRAL_BIN")" != "$(readlink -f target/release/corral)" ]; then
    echo "$("$CORRAL_BIN" --version), $CORRAL_BIN (not this checkout's build)"
    return
  fi
  git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2> /dev/null || dirty=" + uncommitted changes"
  echo "$("$CORRAL_BIN" --version), git $(git rev-parse --short HEAD)$dirty"
}
corral_multi() { return 0; }
corral_prepare() { # default: restart-delay 100ms doubling to 30s; fast: restart-delay = "0s"
  local d=$1 mode=$2 n
  shift 2
  mkdir -p "$d/conf" "$d/empty"
  for n in "$@"; do
    printf 'command = ["%s"]\n' "$d/svc/$n/run" > "$d/conf/$n.toml"
    if [ "$mode" = fast ]; then printf 'restart-delay = "0s"\n' >> "$d/conf/$n.toml"; fi
  done
  CMD=("$CORRAL_BIN" --services "$d/conf" --init-dir "$d/empty" --finish-dir "$d/empty" --socket "$d/corral.sock")
}
corral_procs() { echo "$1"; }
corral_status() {
  printf 'all\t%s ctl --socket %s status\n' "$CORRAL_BIN" "$1/corral.sock"
  printf 'one\t%s ctl --socket %s status s01\n' "$CORRAL_BIN" "$1/corral.sock"
}
corral_restart_runs() { echo 50; }
