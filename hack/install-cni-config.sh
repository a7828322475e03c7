#!/usr/bin/env bash
# Installs Berth's default CNI network (bridge berth0 on 10.88.0.0/16, host-local IPAM, masquerade,
# portmap for hostPort) into the CNI conf dir, but only when that dir holds no network config at all:
# a node's existing network setup is never touched. berthd itself never writes host network config.
#   hack/install-cni-config.sh [CONF_DIR [IPAM_DATA_DIR]]
# CONF_DIR defaults to /etc/cni/net.d; IPAM_DATA_DIR (host-local's dataDir) to the plugin's default.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

conf_dir=${1:-/etc/cni/net.d}
ipam_data_dir=${2:-}
mkdir -p "$conf_dir"
shopt -s nullglob
existing=("$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json)
if ((${#existing[@]} > 0)); then
    log "CNI config already present in $conf_dir (${existing[*]##*/}); leaving it alone"
    exit 0
fi
tmp=$(mktemp "$conf_dir/.10-berth.conflist.XXXXXX")
data_dir_line=
if [[ -n $ipam_data_dir ]]; then
    mkdir -p "$ipam_data_dir"
    data_dir_line="\"dataDir\": \"$ipam_data_dir\","
fi
cat >"$tmp" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "berth",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "berth0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",$data_dir_line
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "10.88.0.0/16" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "bandwidth", "capabilities": { "bandwidth": true } }
  ]
}
JSON
chmod 0644 "$tmp"
# Rename into place so a watcher never sees a half-written file.
mv "$tmp" "$conf_dir/10-berth.conflist"
log "installed $conf_dir/10-berth.conflist"
