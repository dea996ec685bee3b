# CPU kernels: the benchmark program (not a test: it prints figures) and the
# NEON cross test (built with Debian's aarch64 cross compiler, run under
# qemu-user), registered only where both tools are installed.
add_executable(bench_kernels ${CMAKE_SOURCE_DIR}/tests/kernels/bench_kernels.c)
target_include_directories(bench_kernels PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(bench_kernels PRIVATE bitnet_static PkgConfig::CJSON PkgConfig::PCRE2 Threads::Threads m)
target_compile_definitions(bench_kernels PRIVATE _GNU_SOURCE)
# CI runs it briefly to check that it still works, never to judge speed.
add_test(NAME bench_kernels_smoke COMMAND bench_kernels --quick --no-e2e)

find_program(BITNET_AARCH64_CC aarch64-linux-gnu-gcc)
find_program(BITNET_QEMU_AARCH64 qemu-aarch64)
if(BITNET_AARCH64_CC AND BITNET_QEMU_AARCH64)
  add_test(NAME kernels_neon_cross
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/kernels/neon_cross.sh ${CMAKE_BINARY_DIR}/neon_cross)
  set_tests_properties(kernels_neon_cross PROPERTIES PASS_REGULAR_EXPRESSION "neon_cross: PASS")
  # The conformance checker at the NEON levels: the whole engine cross-built
  # against the arm64 multiarch dependencies (scripts/deps.sh --test installs them).
  if(EXISTS /usr/lib/aarch64-linux-gnu/pkgconfig/libcjson.pc AND EXISTS /usr/lib/aarch64-linux-gnu/pkgconfig/libpcre2-8.pc
     AND EXISTS /lib/aarch64-linux-gnu/libc.so.6)
    add_test(NAME conformance_neon
             COMMAND sh ${CMAKE_SOURCE_DIR}/tests/kernels/neon_conformance.sh ${CMAKE_SOURCE_DIR}
                     ${CMAKE_BINARY_DIR}/arm64 ${CMAKE_SOURCE_DIR}/../shared/conformance)
    set_tests_properties(conformance_neon PROPERTIES PASS_REGULAR_EXPRESSION "neon_conformance: PASS" TIMEOUT 900)
  else()
    message(STATUS "conformance_neon not registered: no arm64 multiarch libcjson/libpcre2 (scripts/deps.sh --test)")
  endif()
endif()

# LUT-versus-MAD measurement (docs/PERFORMANCE.md, "CPU kernels"): built, not a
# ctest; exits 1 when its own exactness check fails. x86-64 only: the LUT
# kernel needs AVX-512 VBMI (vpermb) and VNNI, checked at run time.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  add_executable(bench_lut ${CMAKE_SOURCE_DIR}/tests/kernels/bench_lut.c)
  target_include_directories(bench_lut PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(bench_lut PRIVATE bitnet_static PkgConfig::CJSON PkgConfig::PCRE2 Threads::Threads m)
  target_compile_definitions(bench_lut PRIVATE _GNU_SOURCE)
  target_compile_options(bench_lut PRIVATE -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx512vnni -mavx2 -mfma)
endif()
