#!/usr/bin/env bash
# Installs the Debian bookworm packages fieldsync needs to build and test.
# Idempotent: packages already present are skipped, and apt is not touched at
# all when nothing is missing. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libsqlite3-dev libboost1.81-dev nlohmann-json3-dev catch2
  libssl-dev libzstd-dev libcli11-dev libpq-dev zlib1g-dev
  openssl python3 default-jdk-headless
)
# Extra sets, asked for by name: `install-deps.sh postgres arm64`.
for extra in "$@"; do
  case "$extra" in
    postgres) packages+=(postgresql) ;;
    arm64) packages+=(g++-aarch64-linux-gnu qemu-user) ;;
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown extra '$extra' (known: postgres arm64 fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# javac may come from a JDK that is not a Debian package; accept it.
if command -v javac >/dev/null 2>&1; then
  missing=("${missing[@]/default-jdk-headless}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
