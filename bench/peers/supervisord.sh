# supervisord adapter for bench/compare.sh (interface: bench/peers/common.sh).
# supervisord -n with one [program:NAME] each; its log, pid file, child logs
# and socket in the run's dir. Defaults: startsecs=1, startretries=3 (a program
# that exits within 1 s is retried after 1, 2, 3 s, then FATAL). fast:
# startsecs=0 and autorestart=true, so every exit is restarted at once.
supervisord_bins() { echo supervisord; }
supervisord_install() { echo "apt-get install -y supervisor"; }
supervisord_version() {
  echo "supervisor $(dpkg-query -W -f '${Version}' supervisor) (Debian package) on $(python3 --version 2>&1 | head -n 1; true) ($(head -n 1 "$(command -v supervisord)" | cut -c3-))"
}
supervisord_multi() { return 0; }
supervisord_prepare() {
  local d=$1 mode=$2 n
  shift 2
  {
    printf '[unix_http_server]\nfile=%s/supervisor.sock\nchmod=0700\n\n' "$d"
    printf '[supervisord]\nnodaemon=true\nuser=root\nlogfile=%s/supervisord.log\npidfile=%s/supervisord.pid\nchildlogdir=%s\n\n' "$d" "$d" "$d"
    printf '[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n'
    printf '[supervisorctl]\nserverurl=unix://%s/supervisor.sock\n\n' "$d"
    for n in "$@"; do
      printf '[program:%s]\ncommand=%s\n' "$n" "$d/svc/$n/run"
      if [ "$mode" = fast ]; then printf 'startsecs=0\nautorestart=true\n'; fi
      printf '\n'
    done
  } > "$d/supervisord.conf"
  CMD=(supervisord -n -c "$d/supervisord.conf")
}
supervisord_procs() { echo "$1"; }
supervisord_status() { printf 'all\tsupervisorctl -c %s/supervisord.conf status\n' "$1"; printf 'one\tsupervisorctl -c %s/supervisord.conf status s01\n' "$1"; }
supervisord_restart_runs() { echo 5; }
