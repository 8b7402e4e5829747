# runit adapter for bench/compare.sh (interface: bench/peers/common.sh).
# runsvdir on the dir of service dirs; one runsv per service. runit has no
# restart setting: runsv waits 1 s before restarting a run script that exited
# at once.
runit_bins() { printf "%s\n" runsvdir runsv; }
runit_install() { echo "apt-get install -y runit"; }
runit_version() { echo "runit $(dpkg-query -W -f '${Version}' runit) (Debian package)"; }
runit_multi() { return 0; }
runit_prepare() { CMD=(runsvdir "$1/svc"); }
runit_procs() { echo "$1"; children_named "$1" runsv; }
runit_status() {
  local d=$1 all="" s
  for s in "$d"/svc/*/; do all+=" ${s%/}"; done
  printf 'all\tsv status%s\n' "$all"
  printf 'one\tsv status %s/svc/s01\n' "$d"
}
runit_restart_runs() { echo 5; }
