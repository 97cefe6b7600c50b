# cuda.cmake - build settings of the CUDA backend (codegen/cuda*.c,
# runtime/cuda*.c, runtime/kcache.c), included from the top-level
# CMakeLists.txt after every target exists:
#     include(cmake/cuda.cmake)
# It can also be injected into an unchanged tree with
#     cmake -DCMAKE_PROJECT_INCLUDE=<repo>/cmake/cuda.cmake ...
# in which case it defers itself to the end of the top-level list.
#
# Only the toolkit's headers are used at build time. The driver
# (libcuda.so.1), NVRTC and cuBLAS are dlopen'd at run time, so build/oodc
# starts on machines without them and `--device cuda` there is a clear
# error. Without the toolkit (or with -DOC_CUDA=OFF) the CUDA sources
# compile to stubs that report "built without CUDA".
#
# With the toolkit, build/oc-gpu-bench (bench/gpu/gpu-bench.c) is built for
# bench/gpu/check.sh, and OC_GPU_CHECK (default ON) builds
# build/oc-gpu-check, the GPU conformance suite without Criterion (the test
# file tests/runtime/test-cuda-conform.c against the tiny Criterion
# stand-in in bench/gpu/shim/), for machines that have a GPU but no
# Criterion; bench/gpu/check.sh runs it.

get_property(_oc_cuda_done GLOBAL PROPERTY OC_CUDA_CONFIGURED)
if(_oc_cuda_done)
  return()
endif()
if(NOT TARGET oc_runtime)
  # injected with CMAKE_PROJECT_INCLUDE: run again once the targets exist
  # (EVAL bakes this file's path in: a deferred call's arguments are
  # otherwise expanded when it runs)
  cmake_language(EVAL CODE
    "cmake_language(DEFER DIRECTORY \"${CMAKE_SOURCE_DIR}\" CALL include \"${CMAKE_CURRENT_LIST_FILE}\")")
  return()
endif()
set_property(GLOBAL PROPERTY OC_CUDA_CONFIGURED TRUE)

# The host emulation of the device (runtime/cuda-emu.c, used by the tests
# to run generated CUDA C without a GPU) compiles kernels with a C++
# compiler at run time.
find_program(OC_HOST_CXX NAMES c++ g++ clang++)
if(OC_HOST_CXX)
  target_compile_definitions(oc_runtime PRIVATE OC_HOST_CXX="${OC_HOST_CXX}")
endif()

option(OC_CUDA "Build the CUDA backend (needs the CUDA toolkit's headers)" ON)
if(OC_CUDA)
  find_package(CUDAToolkit QUIET)
endif()

if(OC_CUDA AND CUDAToolkit_FOUND)
  message(STATUS "CUDA toolkit ${CUDAToolkit_VERSION}: the CUDA backend is built "
                 "(libcuda, NVRTC and cuBLAS are loaded at run time)")
  foreach(t oc_codegen oc_runtime)
    target_include_directories(${t} SYSTEM PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  endforeach()
  # PUBLIC: test executables see it and run their CUDA checks
  target_compile_definitions(oc_runtime PUBLIC OC_HAVE_CUDA=1)
  target_compile_definitions(oc_runtime PRIVATE
    OC_CUDA_LIBDIR="${CUDAToolkit_LIBRARY_DIR}"
    OC_CUDA_TOOLKIT_VERSION="${CUDAToolkit_VERSION}")
  target_link_libraries(oc_runtime PUBLIC ${CMAKE_DL_LIBS})
  # the toolkit's stub libcuda (every driver entry point, each failing):
  # the tests load it to check the driver table and its error reporting
  find_library(OC_CUDA_STUB_LIB cuda PATHS ${CUDAToolkit_LIBRARY_DIR}/stubs
    ${CUDAToolkit_LIBRARY_ROOT}/lib64/stubs ${CUDAToolkit_LIBRARY_ROOT}/lib/stubs NO_DEFAULT_PATH)
  if(OC_CUDA_STUB_LIB)
    target_compile_definitions(oc_runtime PUBLIC OC_CUDA_STUB_LIB="${OC_CUDA_STUB_LIB}")
  endif()

  option(OC_GPU_CHECK "Build oc-gpu-check, the GPU conformance suite without Criterion" ON)
  if(OC_GPU_CHECK AND EXISTS ${CMAKE_SOURCE_DIR}/tests/runtime/test-cuda-conform.c
     AND EXISTS ${CMAKE_SOURCE_DIR}/bench/gpu/shim/runner.c)
    add_executable(oc-gpu-check
      ${CMAKE_SOURCE_DIR}/tests/runtime/test-cuda-conform.c
      ${CMAKE_SOURCE_DIR}/tests/helpers/helpers.c
      ${CMAKE_SOURCE_DIR}/bench/gpu/shim/runner.c)
    # the shim's criterion/criterion.h comes first
    target_include_directories(oc-gpu-check BEFORE PRIVATE ${CMAKE_SOURCE_DIR}/bench/gpu/shim)
    target_compile_definitions(oc-gpu-check PRIVATE OC_CRITERION_SHIM=1
      OC_SOURCE_DIR="${CMAKE_SOURCE_DIR}" OC_BINARY_DIR="${CMAKE_BINARY_DIR}")
    target_link_libraries(oc-gpu-check PRIVATE oc_models oc_runtime oc_codegen oc_passes
      oc_frontend oc_ir ${M_LIB})
    set_target_properties(oc-gpu-check PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
  endif()
  # the GPU benchmarks of bench/gpu/check.sh
  add_executable(oc-gpu-bench ${CMAKE_SOURCE_DIR}/bench/gpu/gpu-bench.c)
  target_link_libraries(oc-gpu-bench PRIVATE oc_models oc_runtime oc_codegen oc_passes oc_frontend
    oc_ir ${M_LIB})
  set_target_properties(oc-gpu-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
else()
  message(STATUS "CUDA toolkit not found (or OC_CUDA=OFF): the CUDA backend is a stub")
endif()

# ---- begin: oodc compile --target cuda tests (tests/ood/test-aot-cuda.c) ----
# A stand-in driver + cuBLAS library (tests/ood/aot-fake-cuda.c, over the
# host emulation runtime/cuda-emu.c) that runs a compiled cuda scorer's
# launcher without a GPU, and ptxas (when the toolkit has it) to check the
# embedded PTX.
if(OC_TESTS AND TARGET test-ood-aot-cuda)
  add_library(oc_aot_fake_cuda SHARED ${CMAKE_SOURCE_DIR}/tests/ood/aot-fake-cuda.c
    ${CMAKE_SOURCE_DIR}/runtime/cuda-emu.c ${CMAKE_SOURCE_DIR}/ir/base.c)
  set_target_properties(oc_aot_fake_cuda PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
    C_VISIBILITY_PRESET hidden)
  target_link_libraries(oc_aot_fake_cuda PRIVATE ${CMAKE_DL_LIBS} ${M_LIB})
  if(OC_SANITIZE)
    # it is loaded into the plain (unsanitized) programs the test builds with cc
    target_compile_options(oc_aot_fake_cuda PRIVATE -fno-sanitize=all)
    target_link_options(oc_aot_fake_cuda PRIVATE -fno-sanitize=all)
  endif()
  if(OC_HOST_CXX)
    target_compile_definitions(oc_aot_fake_cuda PRIVATE OC_HOST_CXX="${OC_HOST_CXX}")
  endif()
  add_dependencies(test-ood-aot-cuda oc_aot_fake_cuda)
  target_compile_definitions(test-ood-aot-cuda PRIVATE OC_AOT_FAKE_CUDA="$<TARGET_FILE:oc_aot_fake_cuda>")
  find_program(OC_PTXAS ptxas HINTS ${CUDAToolkit_BIN_DIR} /usr/local/cuda/bin)
  if(OC_PTXAS)
    target_compile_definitions(test-ood-aot-cuda PRIVATE OC_PTXAS="${OC_PTXAS}")
  endif()
endif()
# ---- end: oodc compile --target cuda tests ----
