#!/usr/bin/env bash
# cpack builds the fleetd and fleetd-cloud Debian packages; dpkg-deb shows
# each holds its programs, unit, example config, copyright and maintainer
# scripts. gzip here: xz of the programs takes minutes on 2 cores.
# Usage: deb_test.sh BUILD_DIR VERSION [lintian]
set -euo pipefail
build=$1 version=$2 mode=${3:-contents}
for tool in cpack dpkg-deb; do
  command -v $tool >/dev/null || { echo "SKIPPED: $tool is not installed"; exit 77; }
done
if [[ $mode == lintian ]] && ! command -v lintian >/dev/null; then
  echo "SKIPPED: lintian is not installed"; exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if ! (cd "$build" && cpack -G DEB -B "$out" -D CPACK_DEBIAN_COMPRESSION_TYPE=gzip) >"$out/cpack.log" 2>&1; then
  cat "$out/cpack.log"; exit 1
fi
check() {
  local name=$1; shift
  local deb=("$out"/${name}_"$version"_*.deb)
  [[ -f ${deb[0]} ]] || { echo "FAIL: no ${name}_${version}_*.deb"; ls "$out"; exit 1; }
  if [[ $mode == lintian ]]; then
    lintian --fail-on error "${deb[0]}"
    return
  fi
  local contents
  contents=$(dpkg-deb --contents "${deb[0]}")
  for f in "$@"; do
    if [[ $f == !* ]]; then
      ! grep -q " \.${f#!}\$" <<<"$contents" || { echo "FAIL: $name holds ${f#!}"; exit 1; }
    else
      grep -q " \.$f\$" <<<"$contents" || { echo "FAIL: $name lacks $f"; echo "$contents"; exit 1; }
    fi
  done
  [[ $(dpkg-deb -f "${deb[0]}" Package) == "$name" ]] || { echo "FAIL: package name"; exit 1; }
  [[ $(dpkg-deb -f "${deb[0]}" Version) == "$version" ]] || { echo "FAIL: version"; exit 1; }
  local ctrl
  ctrl=$(dpkg-deb --ctrl-tarfile "${deb[0]}" | tar -t)
  for f in ./postinst ./conffiles; do
    grep -qx "$f" <<<"$ctrl" || { echo "FAIL: $name lacks control file $f"; exit 1; }
  done
  echo "ok: $(basename "${deb[0]}"): $(grep -c . <<<"$contents") entries"
}
check fleetd /usr/bin/fleetd /usr/bin/fleetctl /etc/fleetd/edge.ini \
  /lib/systemd/system/fleetd.service /usr/share/doc/fleetd/copyright \
  '!/usr/bin/fleetd-cloud'
check fleetd-cloud /usr/bin/fleetd-cloud /etc/fleetd/cloud.ini \
  /lib/systemd/system/fleetd-cloud.service \
  /usr/share/doc/fleetd-cloud/copyright '!/usr/bin/fleetd'
