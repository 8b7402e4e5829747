#!/usr/bin/env bash
# ./test.sh [ARGS...]: install what the test suite needs, then run all of it
# (`cargo test ARGS...`) and print one total line.
#
# The suite runs real programs: unshare and setpriv (a PID namespace, attacks
# as uid 65534), haproxy, python3, Docker with a local Debian base image,
# shells for the completion scripts, kubernetes-validate (PyPI) for the
# Kubernetes manifests and cargo-deb for the package. A test that lacks one
# fails and names it; this script installs them first, so that on a fresh
# Debian or Ubuntu machine the suite passes. It runs as root (the tests need
# it); every step is idempotent: what is there already is kept.
#
#   ./test.sh                  everything
#   ./test.sh --test it        one test crate (any `cargo test` arguments)
#   ./test.sh --install-only   only the installs
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the suite runs as root (PID namespaces, setpriv, Docker)." >&2
  echo "Run: sudo ./test.sh" >&2
  exit 2
fi
command -v cargo >/dev/null || { echo "test.sh: no cargo: install Rust (https://rustup.rs)" >&2; exit 2; }

# Debian packages, by a program each provides.
missing=()
for tool in unshare:util-linux setpriv:util-linux prlimit:util-linux ps:procps ip:iproute2 \
            haproxy:haproxy python3:python3 debootstrap:debootstrap gcc:gcc \
            zsh:zsh fish:fish groff:groff-base; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PyPI: kubernetes-validate in a venv of its own (Debian's python refuses
# system-wide pip installs), first on PATH for the tests.
venv=${CORRAL_TEST_VENV:-/var/cache/corral-test/venv}
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "test.sh: installing kubernetes-validate (PyPI) in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
export PATH="$venv/bin:$PATH"

# crates.io: cargo-deb, for the package test (a few minutes, once).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-deb (crates.io)"
  cargo install -q --locked cargo-deb
fi

# The Docker tests' base image: built from Debian's packages the first time
# (about a minute), reused after. The tests run the same script; this only
# makes the time visible. Without Docker those tests say why and skip.
if docker info >/dev/null 2>&1; then
  time docker/build-base.sh
else
  echo "test.sh: docker info failed: the Docker tests will say why they skip" >&2
fi

if [ "${1:-}" = --install-only ]; then
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --no-fail-fast: every test crate runs, so one failure does not hide the
# rest (cargo stops after the first failing crate otherwise).
cargo test --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# Ignored tests are counted too: as root with every tool installed there
# are two: calendar::tests::local_zone_in_a_child, which its parent test
# runs in a child process with TZ set (glibc reads TZ once), and the core's
# scale bench (supervisor::core::scale_tests::scale_bench, timings of the
# pure core with 1000 and 5000 services, run by hand with --ignored).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d ignored\n", p, f, i }' "$log"
exit "$status"
