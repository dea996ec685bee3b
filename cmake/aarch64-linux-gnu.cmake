# Cross-compiling for 64-bit Arm Linux with Debian's cross toolchain
# (gcc-aarch64-linux-gnu) and the arm64 builds of the dependencies
# (dpkg --add-architecture arm64; apt-get install libcjson-dev:arm64
# libpcre2-dev:arm64 libcmocka-dev:arm64). The binaries run under qemu-user:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# The loader and libc of the multiarch install (under /), not the cross
# sysroot's: that loader picks up the multiarch libc of another build and hangs.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/)
