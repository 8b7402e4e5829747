#!/usr/bin/env bash
# A container without Docker, for the end-to-end test's fallback on hosts
# where the Docker engine is not usable (tests/serial/docker_e2e.rs):
#
#   ip netns exec NETNS setpriv --pdeathsig KILL \
#     unshare --pid --mount --uts --propagation private \
#     docker/ns-node.sh NAME LOWER UPPER WORK ROOT [VAR=VALUE]...
#
# `unshare --pid` without --fork: this script stays outside the new PID
# namespace, and its first child is PID 1 there (so this script forks
# nothing before it: not even `mount`). That child, in the fresh mount and
# UTS namespaces (and network namespace NETNS), mounts ROOT as an overlay of
# LOWER (the base rootfs of docker/build-base.sh --rootfs, read-only, shared
# by every node) and UPPER (what the image adds: corral, its links, the
# example's files), gives it a /dev of its own (below), mounts its
# namespace's /proc, sets the host name and execs corral, chrooted, as PID 1,
# as Docker runs the image's ENTRYPOINT, with an environment as Docker makes
# it: PATH, the image's `ENV` (the VAR=VALUE arguments, e.g.
# CORRAL_SYSLOG=/dev/log), HOSTNAME. This script waits for it and exits as
# Docker reports a container's end: corral's exit code, or 128 + N when
# signal N killed it.
#
# /dev is private to the node, as Docker (runc) makes it: a tmpfs with the
# host's null, zero, full, random, urandom and tty bound onto empty files,
# a devpts instance of its own (newinstance, /dev/ptmx a link into it), a
# tmpfs on /dev/shm, and the /dev/fd, stdin, stdout, stderr links. Not the
# host's /dev: what the node creates there (corral's syslog socket,
# /dev/log) must stay in the node, and not be shared between nodes.
#
# The mounts belong to the mount namespace and vanish with it. Should this
# script die, corral gets SIGKILL (parent-death signal), and with PID 1 the
# whole PID namespace goes.
set -euo pipefail
[ $# -ge 5 ] || {
  echo "usage: $0 NAME LOWER UPPER WORK ROOT [VAR=VALUE]..." >&2
  exit 2
}
name=$1 lower=$2 upper=$3 work=$4 root=$5
shift 5
for assignment in "$@"; do
  [[ $assignment =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || {
    echo "$0: not VAR=VALUE: $assignment" >&2
    exit 2
  }
done

(
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
  dev=$root/dev
  # Docker's options for each (runc's default mounts).
  mount -t tmpfs -o nosuid,strictatime,mode=0755,size=65536k tmpfs "$dev"
  for node in null zero full random urandom tty; do
    : >"$dev/$node"
    mount --bind "/dev/$node" "$dev/$node"
  done
  mkdir "$dev/pts" "$dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$dev/pts"
  ln -s pts/ptmx "$dev/ptmx"
  mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm "$dev/shm"
  ln -s /proc/self/fd "$dev/fd"
  ln -s /proc/self/fd/0 "$dev/stdin"
  ln -s /proc/self/fd/1 "$dev/stdout"
  ln -s /proc/self/fd/2 "$dev/stderr"
  mount -t proc proc "$root/proc"
  hostname "$name"
  exec setpriv --pdeathsig KILL chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$@" \
    HOSTNAME="$name" \
    /usr/local/bin/corral
) &
status=0
wait "$!" || status=$?
exit "$status"
