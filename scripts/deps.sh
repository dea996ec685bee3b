#!/usr/bin/env bash
# Installs the Debian packages bitnet.c needs to build and test, when missing.
# Safe to run repeatedly; does nothing when everything is present.
# `scripts/deps.sh --test` adds what the test suite needs beyond the build:
# the aarch64 cross compiler and qemu-user, which run the NEON kernels' tests,
# and (on x86-64) the arm64 multiarch builds of the libraries, against which the
# whole engine is cross-built for the NEON conformance test.
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 libcjson-dev libpcre2-dev libcmocka-dev)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ "${1:-}" = "--test" ]; then
  pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  if [ "$(dpkg --print-architecture)" = amd64 ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
    pkgs+=(libcjson-dev:arm64 libpcre2-dev:arm64 libcmocka-dev:arm64)
  fi
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
