#!/usr/bin/env bash
# `make deb`: berth_<version>_<arch>.deb from the built binaries, with plain dpkg-deb (no
# debhelper or cargo-deb: the tree is what `make install` lays out with PREFIX=/usr).
#
#   packaging/deb.sh [--bins DIR] [--out DIR]
#
# --bins: the built berthd, berth, berth-monitor and berth-init (default target/release; the e2e
# test packages the debug build). --out: where the .deb goes (default target/deb). Prints its path.
# DEB_COMPRESSION: dpkg-deb's -Z (default xz; the e2e test takes none for its 150 MB debug build).
#
# The package: binaries in /usr/bin (berthd finds berth-monitor and berth-init beside itself), the
# unit in /lib/systemd/system (Debian 12's place for packaged units), /etc/berth/config.toml as a
# conffile (dpkg keeps an operator's changes across upgrades and asks before replacing them), and
# maintainer scripts that enable and start nothing (deb/postinst).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
bins=$repo/target/release
out=$repo/target/deb
while (($#)); do
    case $1 in
    --bins) bins=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--bins DIR] [--out DIR]" >&2; exit 2 ;;
    esac
done

# The version of the workspace ([workspace.package] in Cargo.toml), which berthd reports too.
version=$(awk '
    /^\[/ { section = $0 }
    section == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' "$repo/Cargo.toml")
[[ -n $version ]] || { echo "deb.sh: no version in $repo/Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
BINS=$bins PREFIX=/usr DESTDIR=$stage UNITDIR=/lib/systemd/system "$here/install.sh" install

install -d -m 0755 "$stage/usr/share/doc/berth" "$stage/DEBIAN"
# The unit's Documentation= points here.
install -m 0644 "$here/../README.md" "$stage/usr/share/doc/berth/README.md"
cat >"$stage/usr/share/doc/berth/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: berth

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
for script in postinst prerm postrm; do
    install -m 0755 "$here/deb/$script" "$stage/DEBIAN/$script"
done
echo /etc/berth/config.toml >"$stage/DEBIAN/conffiles"

# The newest glibc symbol version the binaries use: the libc6 they need (berth-monitor is static).
glibc=$(objdump -T "$stage"/usr/bin/* 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
    sort -V | tail -n 1 || true)
depends="runc, containernetworking-plugins"
if [[ -n $glibc ]]; then
    depends="libc6 (>= $glibc), $depends"
fi
cat >"$stage/DEBIAN/control" <<CONTROL
Package: berth
Version: $version
Architecture: $arch
Maintainer: Berth developers <berth@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $depends
Recommends: iptables
Section: admin
Priority: optional
Homepage: https://example.invalid/berth
Description: Kubernetes CRI container runtime
 Berth serves kubelet's Container Runtime Interface (CRI runtime.v1) on a
 unix socket and runs pods with runc and CNI plugins. The package contains
 the daemon (berthd), its per-pod monitor and init, the berth command-line
 client, a systemd unit (not enabled) and a commented default configuration.
CONTROL

mkdir -p "$out"
deb=$out/berth_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
