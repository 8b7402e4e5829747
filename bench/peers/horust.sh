# horust adapter for bench/compare.sh (interface: bench/peers/common.sh).
# One TOML file per service; its control socket folder in the run's dir.
# Default restart strategy is "never"; fast: strategy "always", backoff "0s".
# horustctl (a separate crate) is its status CLI.
horust_bins() { echo horust; }
horust_install() { echo "cargo install horust horustctl"; }
horust_version() {
  cargo install --list 2> /dev/null | awk '/^horust(ctl)? v/ { sub(":", ""); printf "%s%s %s", sep, $1, $2; sep = ", " } END { print " (cargo install)" }'
}
horust_multi() { return 0; }
horust_prepare() {
  local d=$1 mode=$2 n
  shift 2
  mkdir -p "$d/horust" "$d/uds"
  for n in "$@"; do
    printf 'command = "%s"\n' "$d/svc/$n/run" > "$d/horust/$n.toml"
    if [ "$mode" = fast ]; then printf '[restart]\nstrategy = "always"\nbackoff = "0s"\n' >> "$d/horust/$n.toml"; fi
  done
  CMD=(horust --services-path "$d/horust" --config-path "$d/horust-config.toml" --uds-folder-path "$d/uds")
}
horust_procs() { echo "$1"; }
horust_status() {
  if command -v horustctl > /dev/null; then
    printf 'all\t!horustctl 0.1.14 panics without a service name\n'
    printf 'one\thorustctl --uds-folder-path %s/uds --pid 1 status s01.toml\n' "$1"
  fi
}
horust_restart_runs() { echo 5; }
