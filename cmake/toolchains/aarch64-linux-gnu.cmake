# Cross build for 64-bit ARM Linux (the CPU of nearly every Android phone) with
# Debian's cross compiler and the arm64 multiarch libraries:
#   scripts/install-deps.sh arm64   (g++-aarch64-linux-gnu, qemu-user,
#                                    libsqlite3-dev:arm64, libssl-dev:arm64)
#   cmake -G Ninja -S . -B build-arm64 \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake -DFIELDSYNC_SERVER=OFF
# Test programs run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so ctest and
# Catch2's test discovery work as on the host; see scripts/arm64-test.sh.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FIELDSYNC_CROSS_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-g++)
# Debian multiarch: the target's libraries live in /usr/lib/aarch64-linux-gnu and
# its arch-specific headers in /usr/include/aarch64-linux-gnu; header-only
# dependencies (Boost, nlohmann/json, Catch2) are shared with the host.
set(CMAKE_LIBRARY_ARCHITECTURE ${FIELDSYNC_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${FIELDSYNC_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config (FindOpenSSL asks it first) must describe the target, not the host.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${FIELDSYNC_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
# Boost's CMake config is installed per host architecture; find the headers instead.
set(Boost_NO_BOOST_CMAKE ON)

# The target's glibc must be one: -L makes qemu load the cross toolchain's ld.so,
# and LD_LIBRARY_PATH makes that ld.so take the cross toolchain's libc.so.6 too.
# Without it, the multiarch libc6:arm64 (a dependency of libsqlite3-dev:arm64, and a
# different Debian revision) is found through /etc/ld.so.cache, and the mixed pair
# hangs in pthread_create (seen: the HTTP client's resolver thread never starts).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${FIELDSYNC_CROSS_TRIPLET}
  -E LD_LIBRARY_PATH=/usr/${FIELDSYNC_CROSS_TRIPLET}/lib)
