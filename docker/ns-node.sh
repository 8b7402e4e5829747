#!/usr/bin/env bash
# A container without Docker, for the end-to-end test's fallback on hosts
# where the Docker engine is not usable (tests/serial/docker_e2e.rs):
#
#   ip netns exec NETNS setpriv --pdeathsig KILL \
#     unshare --pid --mount --uts --propagation private \
#     docker/ns-node.sh NAME LOWER UPPER WORK ROOT
#
# `unshare --pid` without --fork: this script stays outside the new PID
# namespace, and its first child is PID 1 there (so this script forks
# nothing before it: not even `mount`). That child, in the fresh mount and
# UTS namespaces (and network namespace NETNS), mounts ROOT as an overlay of
# LOWER (the base rootfs of docker/build-base.sh --rootfs, read-only, shared
# by every node) and UPPER (what the image adds: corral, its links, the
# example's files), binds /dev, mounts its namespace's /proc, sets the host
# name and execs corral, chrooted, as PID 1, as Docker runs the image's
# ENTRYPOINT. This script waits for it and exits as Docker reports a
# container's end: corral's exit code, or 128 + N when signal N killed it.
#
# The mounts belong to the mount namespace and vanish with it. Should this
# script die, corral gets SIGKILL (parent-death signal), and with PID 1 the
# whole PID namespace goes.
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 NAME LOWER UPPER WORK ROOT" >&2; exit 2; }
name=$1 lower=$2 upper=$3 work=$4 root=$5

(
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  hostname "$name"
  exec setpriv --pdeathsig KILL chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOSTNAME="$name" \
    /usr/local/bin/corral
) &
status=0
wait "$!" || status=$?
exit "$status"
