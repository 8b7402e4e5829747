# tini adapter for bench/compare.sh (interface: bench/peers/common.sh).
# An init for one child: `tini -- RUN`. It reaps and forwards signals, and
# neither supervises several services nor restarts.
tini_bins() { echo tini; }
tini_install() { echo "apt-get install -y tini"; }
tini_version() { echo "tini $(dpkg-query -W -f '${Version}' tini) (Debian package)"; }
tini_multi() { return 1; }
tini_prepare() {
  if [ $# -ne 3 ]; then echo "tini runs one child only" >&2; return 1; fi
  CMD=(tini -- "$1/svc/$3/run")
}
tini_procs() { echo "$1"; }
tini_status() { :; }
tini_restart_runs() { echo 0; }
