# cmake/fuzz.cmake - libFuzzer targets for every loader of untrusted files
# (tests/fuzz/fuzz-*.c -> <build>/fuzz/fuzz-*), built only with -DOC_FUZZ=ON
# and clang. Included at the end of CMakeLists.txt, after every target
# exists: it instruments the layer libraries for coverage
# (-fsanitize=fuzzer-no-link) and ASan + UBSan, and links every executable
# of the build with the sanitizer runtimes, so -DOC_FUZZ=ON is enough on its
# own (with or without OC_SANITIZE). scripts/fuzz.sh configures, builds and
# runs one target; tests/fuzz/RESULTS.md records the runs.
include_guard(GLOBAL)
option(OC_FUZZ "Build the libFuzzer targets in tests/fuzz (clang only)" OFF)
if(NOT OC_FUZZ)
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "OC_FUZZ needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang "
                      "(Debian: apt-get install clang libclang-rt-dev), or use scripts/fuzz.sh")
endif()

set(OC_FUZZ_SAN -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)

# Everything already defined in this directory: libraries get coverage and
# sanitizer instrumentation, executables the sanitizer runtimes.
get_property(oc_fuzz_all DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY BUILDSYSTEM_TARGETS)
foreach(t ${oc_fuzz_all})
  get_target_property(kind ${t} TYPE)
  if(kind STREQUAL "STATIC_LIBRARY")
    target_compile_options(${t} PRIVATE -fsanitize=fuzzer-no-link ${OC_FUZZ_SAN})
  elseif(kind STREQUAL "EXECUTABLE")
    target_compile_options(${t} PRIVATE ${OC_FUZZ_SAN})
    target_link_options(${t} PRIVATE -fsanitize=address,undefined)
  endif()
endforeach()

file(GLOB oc_fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz-*.c)
add_custom_target(fuzz)
foreach(src ${oc_fuzz_srcs})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer ${OC_FUZZ_SAN})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE oc_ood oc_models oc_runtime oc_codegen oc_passes
                        oc_frontend oc_ir)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  add_dependencies(fuzz ${name})
endforeach()
