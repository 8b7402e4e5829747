# catatonit adapter for bench/compare.sh (interface: bench/peers/common.sh).
# An init for one child: `catatonit -- RUN`. It reaps and forwards signals, and
# neither supervises several services nor restarts.
catatonit_bins() { echo catatonit; }
catatonit_install() { echo "apt-get install -y catatonit"; }
catatonit_version() { echo "catatonit $(dpkg-query -W -f '${Version}' catatonit) (Debian package)"; }
catatonit_multi() { return 1; }
catatonit_prepare() {
  if [ $# -ne 3 ]; then echo "catatonit runs one child only" >&2; return 1; fi
  CMD=(catatonit -- "$1/svc/$3/run")
}
catatonit_procs() { echo "$1"; }
catatonit_status() { :; }
catatonit_restart_runs() { echo 0; }
