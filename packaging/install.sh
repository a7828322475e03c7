#!/usr/bin/env bash
# `make install` and `make uninstall`; `make deb` (packaging/deb.sh) stages its tree with it too.
#
#   packaging/install.sh install      copy the built binaries, the systemd unit and a default config
#   packaging/install.sh uninstall    remove them again (a config that was changed stays)
#
# Environment:
#   PREFIX   where binaries go, $PREFIX/bin (default /usr/local)
#   DESTDIR  staging root prepended to every path (default empty: the real system)
#   BINS     directory with the built berthd, berth, berth-monitor, berth-init (default target/release)
#   UNITDIR  directory of the unit (default $PREFIX/lib/systemd/system for /usr and /usr/local,
#            which systemd searches, else /etc/systemd/system)
#
# All four binaries go to one directory: berthd looks for berth-monitor and berth-init beside its
# own executable. The configuration always goes to /etc/berth, where berthd reads it whatever the
# prefix. Nothing is built here: run `make build` first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINS=${BINS:-$repo/target/release}
case $PREFIX in
/usr | /usr/local) UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system} ;;
*) UNITDIR=${UNITDIR:-/etc/systemd/system} ;;
esac

BINARIES=(berthd berth berth-monitor berth-init)
bindir=$DESTDIR$PREFIX/bin
unit=$DESTDIR$UNITDIR/berthd.service
config_dir=$DESTDIR/etc/berth
config=$config_dir/config.toml

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# The default configuration as a file of comments: berthd's own documented defaults
# (`berthd config default`, so it cannot drift from the code) with every setting commented out,
# so that the file changes nothing until the operator uncomments a line, and a newer berthd's
# defaults apply to what was never uncommented.
default_config() {
    local berthd=$1
    cat <<'EOF'
# /etc/berth/config.toml: the configuration of berthd (Berth's CRI runtime daemon).
#
# Every setting is commented out and shows its default: uncomment a line to change it. Drop-ins in
# /etc/berth/config.d/*.toml override this file; `berthd config show` prints the effective
# configuration. After a change, `systemctl reload berthd` applies what can change live (registry
# settings, pinned images, log level) and `systemctl restart berthd` the rest; pods keep running.
#
EOF
    "$berthd" config default | sed -E '/^[[:space:]]*(#|$)/!s/^/# /'
}

# Writes the default config to $2 and checks that berthd's own loader accepts it.
write_default_config() {
    local berthd=$1 out=$2
    default_config "$berthd" >"$out"
    "$berthd" --config "$out" config show >/dev/null ||
        die "berthd does not accept the generated default config $out"
}

install_all() {
    local bin
    for bin in "${BINARIES[@]}"; do
        [[ -x $BINS/$bin ]] || die "$BINS/$bin is missing: run \`make build\` first (or set BINS)"
    done
    for bin in "${BINARIES[@]}"; do
        install -D -m 0755 "$BINS/$bin" "$bindir/$bin"
    done
    install -d -m 0755 "$(dirname "$unit")"
    sed "s|^ExecStart=/usr/bin/berthd|ExecStart=$PREFIX/bin/berthd|" "$here/berthd.service" >"$unit.tmp"
    chmod 0644 "$unit.tmp"
    mv "$unit.tmp" "$unit"
    # config.d/ for drop-ins (a Helm chart's config sync writes one), empty until someone does.
    install -d -m 0755 "$config_dir" "$config_dir/config.d"
    if [[ -e $config ]]; then
        echo "install.sh: keeping the existing $config"
    else
        write_default_config "$BINS/berthd" "$config.tmp"
        chmod 0644 "$config.tmp"
        mv "$config.tmp" "$config"
    fi
    if [[ -z $DESTDIR ]]; then
        echo "install.sh: installed; nothing was enabled or started. To run berthd under systemd:"
        echo "  systemctl daemon-reload && systemctl enable --now berthd"
    fi
}

uninstall_all() {
    local bin pristine
    # The config goes only if nobody changed it: compare with what this berthd would install.
    if [[ -f $config ]]; then
        if [[ -x $bindir/berthd ]] && pristine=$(default_config "$bindir/berthd") &&
            [[ $pristine == "$(cat "$config")" ]]; then
            rm -f "$config"
        else
            echo "install.sh: keeping $config (changed since installed)"
        fi
    fi
    rmdir "$config_dir/config.d" 2>/dev/null || true
    rmdir "$config_dir" 2>/dev/null || true
    for bin in "${BINARIES[@]}"; do
        rm -f "$bindir/$bin"
    done
    rm -f "$unit"
}

case ${1:-} in
install) install_all ;;
uninstall) uninstall_all ;;
*) die "usage: $0 install|uninstall" ;;
esac
