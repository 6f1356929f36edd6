# Cross build for 32-bit ARM Linux (armhf: ARMv7 with hardware floating point, the
# CPU of older and low-end Android phones) with Debian's cross compiler:
#   scripts/install-deps.sh armhf   (g++-arm-linux-gnueabihf, qemu-user, and the
#                                    armhf SQLite and OpenSSL packages unpacked
#                                    into a private sysroot)
#   cmake -G Ninja -S . -B build-armhf \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake -DFIELDSYNC_SERVER=OFF
# Debian's archive does not serve armhf multiarch packages consistently (see
# docs/bindings.md), so SQLite and OpenSSL come from FIELDSYNC_ARMHF_SYSROOT, and
# the emulator is told where their shared libraries are.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(FIELDSYNC_CROSS_TRIPLET arm-linux-gnueabihf)

set(CMAKE_C_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${FIELDSYNC_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${FIELDSYNC_CROSS_TRIPLET})

if(NOT FIELDSYNC_ARMHF_SYSROOT)
  if(DEFINED ENV{FIELDSYNC_ARMHF_SYSROOT})
    set(FIELDSYNC_ARMHF_SYSROOT $ENV{FIELDSYNC_ARMHF_SYSROOT})
  else()
    set(FIELDSYNC_ARMHF_SYSROOT /opt/fieldsync-armhf-sysroot)
  endif()
endif()
set(_fs_libdir ${FIELDSYNC_ARMHF_SYSROOT}/usr/lib/${FIELDSYNC_CROSS_TRIPLET})

# SQLite: the library from the sysroot, the (architecture-independent) header of
# the same version from the host.
set(SQLite3_INCLUDE_DIR /usr/include CACHE PATH "")
set(SQLite3_LIBRARY ${_fs_libdir}/libsqlite3.so CACHE FILEPATH "")
# OpenSSL: headers and libraries from the sysroot; its arch-specific headers
# (openssl/configuration.h) sit in the multiarch include folder.
set(OPENSSL_ROOT_DIR ${FIELDSYNC_ARMHF_SYSROOT}/usr)
set(OPENSSL_INCLUDE_DIR ${FIELDSYNC_ARMHF_SYSROOT}/usr/include CACHE PATH "")
set(OPENSSL_SSL_LIBRARY ${_fs_libdir}/libssl.so CACHE FILEPATH "")
set(OPENSSL_CRYPTO_LIBRARY ${_fs_libdir}/libcrypto.so CACHE FILEPATH "")
set(CMAKE_C_FLAGS_INIT
  "-isystem ${FIELDSYNC_ARMHF_SYSROOT}/usr/include/${FIELDSYNC_CROSS_TRIPLET}")
# -Wno-psabi: silences GCC's notes that the ARM ABI for passing some std types
# changed in GCC 7.1 (everything here is built by one compiler).
set(CMAKE_CXX_FLAGS_INIT
  "-isystem ${FIELDSYNC_ARMHF_SYSROOT}/usr/include/${FIELDSYNC_CROSS_TRIPLET} -Wno-psabi")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_fs_libdir}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_fs_libdir}")

set(CMAKE_FIND_ROOT_PATH /usr/${FIELDSYNC_CROSS_TRIPLET} ${FIELDSYNC_ARMHF_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR} ${_fs_libdir}/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(Boost_NO_BOOST_CMAKE ON)

# One glibc (the cross toolchain's, see aarch64-linux-gnu.cmake), then the sysroot.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm -L /usr/${FIELDSYNC_CROSS_TRIPLET}
  -E LD_LIBRARY_PATH=/usr/${FIELDSYNC_CROSS_TRIPLET}/lib:${_fs_libdir})
