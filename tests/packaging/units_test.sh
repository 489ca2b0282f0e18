#!/usr/bin/env bash
# systemd-analyze verify on both units (ExecStart pointed at the built
# programs) and the hardening options they must carry.
# Usage: units_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
for unit in fleetd fleetd-cloud; do
  file=$src/dist/systemd/$unit.service
  for opt in "User=$unit" "ProtectSystem=strict" "ReadWritePaths=/var/lib/$unit" \
             "NoNewPrivileges=yes" "ExecReload=/bin/kill -HUP \$MAINPID"; do
    grep -qxF "$opt" "$file" || { echo "FAIL: $unit.service lacks $opt"; exit 1; }
  done
done
command -v systemd-analyze >/dev/null || { echo "SKIPPED: systemd-analyze is not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in fleetd fleetd-cloud; do
  sed "s|^ExecStart=/usr/bin/$unit |ExecStart=$build/$unit |" \
    "$src/dist/systemd/$unit.service" >"$tmp/$unit.service"
done
if ! systemd-analyze verify "$tmp/fleetd.service" "$tmp/fleetd-cloud.service" >"$tmp/log" 2>&1; then
  cat "$tmp/log"; exit 1
fi
cat "$tmp/log"
echo "ok: systemd-analyze verify"
