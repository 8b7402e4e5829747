#!/bin/sh
# Build corral's Debian package and print its path.
#
# Builds the release binary, stages what it makes in target/corral-deb/
# (its completion scripts; its s6-overlay command links, from
# `corral s6-links`, pointed at /usr/bin/corral), then packs with
# `cargo deb --no-build` (Cargo.toml, [package.metadata.deb]).
set -eu

cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "packaging/deb.sh: cargo-deb is missing; install it with: cargo install cargo-deb" >&2
    exit 1
fi

cargo build --release --locked --bin corral
bin=target/release/corral
stage=target/corral-deb
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/command" "$stage/bash" "$stage/zsh" "$stage/fish" "$stage/man"

"$bin" completions bash >"$stage/bash/corral"
ln -s corral "$stage/bash/corralctl"
"$bin" completions zsh >"$stage/zsh/_corral"
"$bin" completions fish >"$stage/fish/corral.fish"
ln -s corral.fish "$stage/fish/corralctl.fish"
chmod 644 "$stage/bash/corral" "$stage/zsh/_corral" "$stage/fish/corral.fish"

# Every command the binary answers to, as it links them itself; then each
# pointed at the installed binary.
"$bin" s6-links "$stage/command" >/dev/null
for link in "$stage"/command/*; do
    ln -sfn /usr/bin/corral "$link"
done
# corralctl, with-contenv and printcontenv also in /usr/bin (no Debian
# package has these names); the others would clash with Debian's s6.
mv "$stage/command/corralctl" "$stage/bin/corralctl"
for name in with-contenv printcontenv; do
    ln -s /usr/bin/corral "$stage/bin/$name"
done

# The linked commands' man page is corral's.
for name in corralctl with-contenv printcontenv; do
    ln -s corral.1.gz "$stage/man/$name.1.gz"
done

# Debian's changelog: this version, dated by the last commit (a
# reproducible package from a clean tree).
version=$("$bin" --version | cut -d' ' -f2)
when=$(git log -1 --format=%cD 2>/dev/null || date -R)
cat >"$stage/changelog" <<END
corral ($version-1) unstable; urgency=medium

  * Built from corral's source by packaging/deb.sh.

 -- corral maintainers <corral@localhost>  $when
END

deb=$(cargo deb --no-build --no-strip)
echo "$deb"
