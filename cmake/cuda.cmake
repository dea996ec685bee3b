# The CUDA backend (src/kernels/cuda/). Included by the top-level
# CMakeLists.txt after the library targets exist, when BITNET_CUDA is ON.
#
# When nvcc is found: the .cu files become an object library whose objects go
# into both bitnet_static and bitnet_shared, the CUDA runtime is linked
# statically (so the library needs only the driver at run time), and
# BITNET_HAVE_CUDA is defined, which makes the engine offer --device cuda.
# When nvcc is not found the build goes on without the backend.
#
# Targets: sm_80, sm_86, sm_89 and sm_90a machine code plus compute_90 PTX for
# newer GPUs. sm_90a (not sm_90) because the H100/H200 GEMM uses wgmma, which
# exists only in arch-specific sm_90a code; the same image runs everything
# else on those GPUs. Override with -DCMAKE_CUDA_ARCHITECTURES=90a for a quick
# build (with 90 the backend still works, on the mma.sync GEMM).

include(CheckLanguage)

# nvcc is often installed outside PATH.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(BITNET_NVCC nvcc HINTS /usr/local/cuda/bin /opt/cuda/bin ENV CUDA_HOME ENV CUDA_PATH
               PATH_SUFFIXES bin)
  if(BITNET_NVCC)
    set(CMAKE_CUDA_COMPILER ${BITNET_NVCC})
  endif()
endif()

check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(STATUS "bitnet: no CUDA compiler (nvcc) found: building without the CUDA backend")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90a-real;90-virtual")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "bitnet: CUDA backend enabled (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")

file(GLOB BITNET_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
add_library(bitnet_cuda_obj OBJECT ${BITNET_CUDA_SOURCES})
# The directory-wide -Wall/-Wextra/-Werror are host-compiler flags that nvcc
# does not take directly: replace them with their nvcc spelling.
set_target_properties(bitnet_cuda_obj PROPERTIES
  COMPILE_OPTIONS ""
  POSITION_INDEPENDENT_CODE ON
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_SEPARABLE_COMPILATION OFF)
target_compile_options(bitnet_cuda_obj PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --expt-relaxed-constexpr -lineinfo>)
if(BITNET_WERROR)
  target_compile_options(bitnet_cuda_obj PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
endif()
target_include_directories(bitnet_cuda_obj PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(bitnet_cuda_obj PRIVATE _GNU_SOURCE BITNET_HAVE_CUDA)
target_link_libraries(bitnet_cuda_obj PRIVATE CUDA::cudart_static)

# Every target of this directory (library, CLI, tests) sees BITNET_HAVE_CUDA:
# the CUDA tests use it to know that the backend is built in.
add_compile_definitions(BITNET_HAVE_CUDA)

foreach(t bitnet_static bitnet_shared)
  target_sources(${t} PRIVATE $<TARGET_OBJECTS:bitnet_cuda_obj>)
  # These targets were created before CUDA was enabled, so they did not pick
  # up CMAKE_CUDA_ARCHITECTURES when it is set above rather than by the user.
  set_target_properties(${t} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endforeach()
# PRIVATE on a static library still passes the runtime on to whatever links
# it (the CLI, the tests).
target_link_libraries(bitnet_static PRIVATE CUDA::cudart_static)
target_link_libraries(bitnet_shared PRIVATE CUDA::cudart_static)

# Benchmark on a synthetic 2B4T-shaped model (scripts/gpu-check.sh runs it).
# Built by default so that CI keeps it compiling; it needs a GPU to run.
add_executable(bench_cuda ${CMAKE_SOURCE_DIR}/tests/cuda/bench_cuda.c)
target_include_directories(bench_cuda PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
target_compile_definitions(bench_cuda PRIVATE _GNU_SOURCE)
target_link_libraries(bench_cuda PRIVATE bitnet_static CUDA::cudart_static PkgConfig::CJSON PkgConfig::PCRE2
                      Threads::Threads m)
