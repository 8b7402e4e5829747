# dumb-init adapter for bench/compare.sh (interface: bench/peers/common.sh).
# An init for one child: `dumb-init RUN`. It reaps and forwards signals, and
# neither supervises several services nor restarts.
dumb_init_bins() { echo dumb-init; }
dumb_init_install() { echo "apt-get install -y dumb-init"; }
dumb_init_version() { echo "dumb-init $(dpkg-query -W -f '${Version}' dumb-init) (Debian package)"; }
dumb_init_multi() { return 1; }
dumb_init_prepare() {
  if [ $# -ne 3 ]; then echo "dumb-init runs one child only" >&2; return 1; fi
  CMD=(dumb-init "$1/svc/$3/run")
}
dumb_init_procs() { echo "$1"; }
dumb_init_status() { :; }
dumb_init_restart_runs() { echo 0; }
