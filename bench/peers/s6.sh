# s6 adapter for bench/compare.sh (interface: bench/peers/common.sh).
# s6-svscan on the dir of service dirs; one s6-supervise per service. s6 has
# no restart setting: s6-supervise waits 1 s before restarting a run script
# that lived less than 1 s.
s6_bins() { printf "%s\n" s6-svscan s6-supervise; }
s6_install() { echo "apt-get install -y s6"; }
s6_version() { echo "s6 $(dpkg-query -W -f '${Version}' s6) (Debian package)"; }
s6_multi() { return 0; }
s6_prepare() { CMD=(s6-svscan "$1/svc"); }
s6_procs() { echo "$1"; children_named "$1" s6-supervise; }
s6_status() {
  printf 'all\tsh -c "for s in %s/svc/*/; do s6-svstat \\$s; done"\n' "$1"
  printf 'one\ts6-svstat %s/svc/s01\n' "$1"
}
s6_restart_runs() { echo 5; }
