#!/usr/bin/env bash
# deps.sh - installs the Debian packages oodc needs, only those missing.
# Checks first (dpkg-query), says what it installs, then apt-get installs.
# Usage: scripts/deps.sh [build|run|all]   (default: all)
set -euo pipefail

build_pkgs=(gcc make cmake pkg-config libcriterion-dev llvm-dev zlib1g-dev libopenblas-dev libstb-dev libdnnl-dev)
run_pkgs=(dataset-fashion-mnist lomiri-wallpapers-16.04)

case "${1:-all}" in
  build) want=("${build_pkgs[@]}") ;;
  run|all) want=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
  *) echo "usage: $0 [build|run|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "oodc: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "oodc: not root and no sudo; install these packages first: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
