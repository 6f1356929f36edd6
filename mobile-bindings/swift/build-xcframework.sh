#!/usr/bin/env bash
# Builds CFieldsync.xcframework next to this script: the C ABI with the core inside
# (libfieldsync_static.a) for iOS devices (arm64), the iOS simulator (arm64, x86_64)
# and macOS (arm64, x86_64), each with fieldsync.h and its module map. Needs a Mac
# with Xcode, CMake >= 3.20, Ninja and nlohmann-json (brew install cmake ninja
# nlohmann-json). HTTP goes through URLSession (Store.setHTTPHandler), so the
# built-in Boost/OpenSSL client is left out. Not runnable on Linux.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${FIELDSYNC_XCF_WORK:-$repo/build/xcframework}
out=$here/CFieldsync.xcframework
json_dir=${NLOHMANN_JSON_DIR:-$(brew --prefix nlohmann-json)/share/cmake/nlohmann_json}

build() {  # <name> <system, "" = native> <sdk> <archs>
  local name=$1 system=$2 sdk=$3 archs=$4
  local cross=()
  [ -n "$system" ] && cross=(-DCMAKE_SYSTEM_NAME="$system")
  cmake -G Ninja -S "$repo" -B "$work/$name" -DCMAKE_BUILD_TYPE=Release \
    "${cross[@]}" -DCMAKE_OSX_SYSROOT="$sdk" \
    -DCMAKE_OSX_ARCHITECTURES="$archs" -DCMAKE_OSX_DEPLOYMENT_TARGET=13.0 \
    -Dnlohmann_json_DIR="$json_dir" \
    -DFIELDSYNC_SERVER=OFF -DFIELDSYNC_HTTP=OFF -DFIELDSYNC_TOOLS=OFF \
    -DFIELDSYNC_TESTS=OFF -DFIELDSYNC_C_STATIC=ON
  cmake --build "$work/$name" --target fieldsync_c_static
}

build ios iOS iphoneos arm64
build simulator iOS iphonesimulator "arm64;x86_64"
build macos "" macosx "arm64;x86_64"

headers=$work/headers
rm -rf "$headers" "$out"
mkdir -p "$headers"
cp "$repo/mobile-bindings/include/fieldsync.h" "$headers/"
cp "$here/module.modulemap.in" "$headers/module.modulemap"
xcodebuild -create-xcframework \
  -library "$work/ios/mobile-bindings/libfieldsync_static.a" -headers "$headers" \
  -library "$work/simulator/mobile-bindings/libfieldsync_static.a" -headers "$headers" \
  -library "$work/macos/mobile-bindings/libfieldsync_static.a" -headers "$headers" \
  -output "$out"
echo "built $out"
