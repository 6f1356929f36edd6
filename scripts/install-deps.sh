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
# arm64: a cross compiler, qemu-user to run the tests, and the target's SQLite and
# OpenSSL from Debian's multiarch archive (needs the foreign dpkg architecture).
# armhf: the archive does not serve armhf consistently (its security index fails to
# download and the armhf -dev packages lag the amd64 versions, so multiarch installs
# are refused); the cross compiler is installed and SQLite's and OpenSSL's armhf
# packages are unpacked into a private sysroot instead (docs/bindings.md).
foreign_archs=()
armhf_sysroot=""
for extra in "$@"; do
  case "$extra" in
    postgres) packages+=(postgresql) ;;
    arm64)
      foreign_archs+=(arm64)
      packages+=(g++-aarch64-linux-gnu qemu-user file libsqlite3-dev:arm64 libssl-dev:arm64) ;;
    armhf)
      packages+=(g++-arm-linux-gnueabihf qemu-user file)
      armhf_sysroot=${FIELDSYNC_ARMHF_SYSROOT:-/opt/fieldsync-armhf-sysroot} ;;
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown extra '$extra' (known: postgres arm64 armhf fuzz)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Unpacks SQLite's and OpenSSL's armhf packages into $armhf_sysroot. The armhf
# architecture is added only for the download and removed again, so that a
# failing armhf index never breaks later `apt-get update` runs.
install_armhf_sysroot() {
  [ -n "$armhf_sysroot" ] || return 0
  local libdir="$armhf_sysroot/usr/lib/arm-linux-gnueabihf"
  [ -f "$libdir/libsqlite3.so" ] && [ -f "$libdir/libssl.so" ] && return 0
  local added=0 tmp
  if ! dpkg --print-foreign-architectures | grep -qx armhf; then
    $SUDO dpkg --add-architecture armhf
    added=1
  fi
  $SUDO apt-get update -qq || echo "install-deps: apt-get update reported errors (armhf index); trying the download anyway" >&2
  tmp=$(mktemp -d)
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download libsqlite3-dev:armhf libsqlite3-0:armhf \
    libssl-dev:armhf libssl3:armhf) || true
  if [ "$added" -eq 1 ]; then
    $SUDO dpkg --remove-architecture armhf
    $SUDO apt-get update -qq || true
  fi
  shopt -s nullglob
  local debs=("$tmp"/*.deb)
  if [ ${#debs[@]} -eq 0 ]; then
    echo "install-deps: the archive did not serve SQLite/OpenSSL for armhf; no armhf build" >&2
    rm -rf "$tmp"
    return 1
  fi
  $SUDO mkdir -p "$armhf_sysroot"
  for deb in "${debs[@]}"; do $SUDO dpkg -x "$deb" "$armhf_sysroot"; done
  rm -rf "$tmp"
  echo "install-deps: armhf SQLite and OpenSSL unpacked into $armhf_sysroot"
}

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
  install_armhf_sysroot
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
for arch in "${foreign_archs[@]}"; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    $SUDO dpkg --add-architecture "$arch"
  fi
done
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_armhf_sysroot
