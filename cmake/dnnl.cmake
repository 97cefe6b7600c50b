# dnnl.cmake - oneDNN (Debian libdnnl-dev) for the CPU convolutions,
# included from the top-level CMakeLists.txt after every target exists:
#     include(cmake/dnnl.cmake)
#
# With oneDNN found, oc_runtime gets OC_HAVE_DNNL=1 (PUBLIC: the tests see
# it), its include folder and library, and runtime/cpu-dnnl.c runs the
# convolutions that measured faster through oneDNN (OC_CONV=auto|im2col|
# dnnl picks per process; see the banner of runtime/cpu-dnnl.c). Without it
# (or with -DOC_DNNL=OFF) cpu-dnnl.c compiles to stubs and every convolution
# goes through im2col + OpenBLAS (runtime/cpu-lib.c); nothing else changes.
#
# oneDNN is found by pkg-config (module dnnl, where a distribution ships
# one) or else by its header and library: Debian 12 ships no .pc file, and
# its CMake package config drags in OpenCL lookups we do not need.
#
# `oodc bench conv` (bench/conv.c) prints the per-shape im2col vs oneDNN
# table the choice is derived from.

get_property(_oc_dnnl_done GLOBAL PROPERTY OC_DNNL_CONFIGURED)
if(_oc_dnnl_done)
  return()
endif()
set_property(GLOBAL PROPERTY OC_DNNL_CONFIGURED TRUE)

option(OC_DNNL "Use oneDNN for CPU convolutions where it measured faster" ON)

if(OC_DNNL)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(OC_DNNL_PC QUIET dnnl)
  endif()
  if(OC_DNNL_PC_FOUND)
    find_library(OC_DNNL_LIB NAMES dnnl HINTS ${OC_DNNL_PC_LIBRARY_DIRS})
    find_path(OC_DNNL_INC NAMES oneapi/dnnl/dnnl.h HINTS ${OC_DNNL_PC_INCLUDE_DIRS})
  else()
    find_library(OC_DNNL_LIB NAMES dnnl)
    find_path(OC_DNNL_INC NAMES oneapi/dnnl/dnnl.h)
  endif()
endif()

if(OC_DNNL AND OC_DNNL_LIB AND OC_DNNL_INC)
  message(STATUS "oneDNN: ${OC_DNNL_LIB} (CPU convolutions: OC_CONV=auto|im2col|dnnl)")
  target_include_directories(oc_runtime SYSTEM PUBLIC ${OC_DNNL_INC})
  # dlsym (omp_set_num_threads of oneDNN's OpenMP runtime): CMAKE_DL_LIBS
  target_link_libraries(oc_runtime PUBLIC ${OC_DNNL_LIB} ${CMAKE_DL_LIBS})
  target_compile_definitions(oc_runtime PUBLIC OC_HAVE_DNNL=1)
else()
  message(STATUS "oneDNN not found (or OC_DNNL=OFF): convolutions use im2col + BLAS only")
endif()
