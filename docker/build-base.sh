#!/usr/bin/env bash
# Build the local base image for the examples, offline from any container
# registry: a Debian rootfs made by debootstrap from Debian's own packages,
# with haproxy, serf and node.js installed, imported with `docker import`.
#
#   docker/build-base.sh            # builds corral-base:bookworm, or reuses it
#   docker/build-base.sh --rootfs   # no Docker needed: the same rootfs as a
#                                   # directory in the cache; prints its path
#
# Idempotent. The image carries a label with the hash of its inputs (this
# script, the suite, the mirror, the package list); an image whose label
# matches is reused as is. The finished rootfs tarball is also kept in
# $CORRAL_IMAGE_CACHE (default /var/cache/corral-images), so after a
# `docker rmi` or on a machine that kept that directory, the image is
# re-imported in seconds instead of bootstrapped again.
#
# Needs root (debootstrap, chroot) and, but for --rootfs, a Docker engine.
# Installs debootstrap with apt-get when it is missing.
#
# Environment (all optional):
#   CORRAL_BASE_IMAGE   image tag to build           (corral-base:bookworm)
#   CORRAL_IMAGE_CACHE  where tarballs are kept      (/var/cache/corral-images)
#   DEBIAN_MIRROR       Debian mirror                (http://deb.debian.org/debian)
#   DEBIAN_SECURITY     Debian security mirror       (http://deb.debian.org/debian-security)
set -euo pipefail

ROOTFS_ONLY=false
case "${1:-}" in
  --rootfs) ROOTFS_ONLY=true ;;
  "") ;;
  *) echo "usage: $0 [--rootfs]" >&2; exit 2 ;;
esac

IMAGE=${CORRAL_BASE_IMAGE:-corral-base:bookworm}
CACHE=${CORRAL_IMAGE_CACHE:-/var/cache/corral-images}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
# What the example images run, and what their tests use inside a container:
# ps (procps) to count zombies, curl for probes, ip (iproute2) to debug.
PACKAGES=(haproxy serf nodejs ca-certificates procps iproute2 curl)
LABEL=org.corral.base-inputs

say() { printf 'build-base: %s\n' "$*" >&2; }

# The hash of everything the image is made from.
inputs_hash() {
  {
    cat "$0"
    printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY" "${PACKAGES[@]}"
  } | sha256sum | cut -c1-16
}

HASH=$(inputs_hash)
TARBALL="$CACHE/corral-base-$SUITE-$HASH.tar.gz"
ROOTFS_DIR="$CACHE/corral-base-$SUITE-$HASH.rootfs"

import() {
  say "importing $TARBALL as $IMAGE"
  docker import \
    --change "LABEL $LABEL=$HASH" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$IMAGE" >/dev/null
  say "done: $(docker image inspect --format '{{.Id}} {{.Size}} bytes' "$IMAGE")"
}

# --rootfs: the tarball unpacked once into the cache (for a read-only lower
# layer of overlay mounts), older ones removed.
unpack() {
  if [ ! -d "$ROOTFS_DIR" ]; then
    say "unpacking $TARBALL into $ROOTFS_DIR"
    local tmp
    tmp=$(mktemp -d "$ROOTFS_DIR.XXXXXX")
    tar --numeric-owner -xzf "$TARBALL" -C "$tmp"
    chmod 0755 "$tmp"
    # Another run may have unpacked it meanwhile: keep theirs.
    mv -T "$tmp" "$ROOTFS_DIR" 2>/dev/null || rm -rf "$tmp"
  else
    say "the rootfs for inputs $HASH is in the cache"
  fi
  find "$CACHE" -maxdepth 1 -name "corral-base-$SUITE-*.rootfs" ! -name "$(basename "$ROOTFS_DIR")" \
    -exec rm -rf {} +
  echo "$ROOTFS_DIR"
}

if $ROOTFS_ONLY; then
  if [ -s "$TARBALL" ]; then
    unpack
    exit 0
  fi
  say "no rootfs tarball for inputs $HASH: building it"
else
  docker info >/dev/null 2>&1 || { say "the Docker engine is not reachable (docker info failed)"; exit 1; }
  have=$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$HASH" ]; then
    say "$IMAGE is up to date (inputs $HASH): reusing it"
    exit 0
  fi
  if [ -n "$have" ]; then
    say "$IMAGE was built from other inputs ($have, now $HASH): rebuilding"
  else
    say "$IMAGE not found: building it (inputs $HASH)"
  fi
  if [ -s "$TARBALL" ]; then
    say "found the rootfs tarball in the cache"
    import
    exit 0
  fi
fi

[ "$(id -u)" = 0 ] || { say "debootstrap and chroot need root"; exit 1; }
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
rootfs="$work/rootfs"
cleanup() {
  # Never leave a mount behind, then drop the scratch rootfs.
  for m in dev/pts proc; do
    mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
say "debootstrap --variant=minbase $SUITE into $rootfs from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  say "debootstrap failed"
  exit 1
}
say "debootstrap took $(($(date +%s) - start))s"

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
# No daemon may start inside the chroot (invoke-rc.d asks this file).
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod +x "$rootfs/usr/sbin/policy-rc.d"
# Keep the image lean: no docs, man pages or translations.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-lean" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$rootfs/etc/apt/apt.conf.d/01-lean"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"

say "installing ${PACKAGES[*]}"
in_root() { chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get -o Acquire::Check-Valid-Until=false update -qq >"$work/apt.log" 2>&1 \
  && in_root apt-get install -y -qq "${PACKAGES[@]}" >>"$work/apt.log" 2>&1 || {
  tail -n 30 "$work/apt.log" >&2
  say "apt-get in the chroot failed"
  exit 1
}
in_root apt-get clean
umount "$rootfs/proc"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
  "$rootfs/usr/sbin/policy-rc.d"
# Docker writes its own resolv.conf, hosts and hostname into every container.
: >"$rootfs/etc/resolv.conf"
for bin in haproxy serf node ps curl; do
  in_root sh -c "command -v $bin" >/dev/null || { say "$bin missing from the rootfs"; exit 1; }
done
say "installed: $(in_root dpkg-query -W -f '${Package} ${Version}\n' haproxy serf nodejs | paste -sd, - | sed 's/,/, /g')"

say "packing the rootfs into $TARBALL"
tar --numeric-owner -C "$rootfs" -czf "$TARBALL.tmp" .
mv "$TARBALL.tmp" "$TARBALL"
# Older tarballs of this cache are for inputs that changed.
find "$CACHE" -maxdepth 1 -name "corral-base-$SUITE-*.tar.gz" ! -name "$(basename "$TARBALL")" -delete
say "rootfs built from scratch in $(($(date +%s) - start))s"
if $ROOTFS_ONLY; then
  unpack
else
  import
  say "built from scratch in $(($(date +%s) - start))s"
fi
