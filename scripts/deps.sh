#!/usr/bin/env bash
# Install the Debian packages edgetune builds against, if any is missing.
# Runs apt-get (through sudo when not root), printing what it does.
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libhdf5-dev libcjson-dev libcmocka-dev)
[ "${ET_WANT_CROSS:-0}" = 1 ] && pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
[ "${ET_WANT_FUZZ:-0}" = 1 ] && pkgs+=(clang)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "edgetune: missing packages ${missing[*]} and no apt-get here; install them by hand." >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "edgetune: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
