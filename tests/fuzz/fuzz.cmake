# Fuzz targets of every parser that reads files from outside (tests/fuzz/README.md).
# Included by the top-level CMakeLists.txt when STREAMQ_FUZZ is ON, before the
# libraries are defined, so that with clang the flags below reach every one.
#   clang: libFuzzer targets; the whole build carries -fsanitize=fuzzer-no-link
#          (coverage) plus ASan and UBSan; scripts/fuzz.sh mutates with them.
#   other compilers (GCC): each target is linked with tests/fuzz/replay_main.cpp,
#          which runs the files and directories it is given once, so the
#          sanitizer build of CI (scripts/sanitize.sh, GCC) replays the corpora
#          without needing clang.
# Either way every target is a ctest (label "fuzz") that replays its corpus,
# tests/fuzz/corpus/<target>/: a regression fails the suite.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(STREAMQ_FUZZ_ENGINE libfuzzer)
  # UBSan fatal: a report must stop the run, or the fuzzer would not see it.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
else()
  set(STREAMQ_FUZZ_ENGINE replay)
endif()
message(STATUS "streamq: fuzz targets (${STREAMQ_FUZZ_ENGINE})")

add_library(streamq_fuzz_util STATIC ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_util.cpp)
target_link_libraries(streamq_fuzz_util PUBLIC streamq_core)
if(STREAMQ_FUZZ_ENGINE STREQUAL "replay")
  target_sources(streamq_fuzz_util PRIVATE ${CMAKE_SOURCE_DIR}/tests/fuzz/replay_main.cpp)
endif()

# streamq_fuzz_target(<parser> <libraries>): tests/fuzz/fuzz_<parser>.cpp.
function(streamq_fuzz_target parser)
  set(name fuzz_${parser})
  add_executable(${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/${name}.cpp)
  target_link_libraries(${name} PRIVATE streamq_fuzz_util ${ARGN})
  set(corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
  if(STREAMQ_FUZZ_ENGINE STREQUAL "libfuzzer")
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    # -runs=0: execute the corpus once, mutate nothing.
    add_test(NAME ${name}_corpus COMMAND ${name} -runs=0 ${corpus})
  else()
    add_test(NAME ${name}_corpus COMMAND ${name} ${corpus})
  endif()
  set_tests_properties(${name}_corpus PROPERTIES LABELS "fuzz" TIMEOUT 300)
  add_dependencies(streamq_fuzz ${name})
endfunction()

enable_testing()
add_custom_target(streamq_fuzz)
streamq_fuzz_target(safetensors       streamq_io_formats)
streamq_fuzz_target(safetensors_index streamq_io_formats)
streamq_fuzz_target(npy               streamq_io_formats)
streamq_fuzz_target(gguf              streamq_io_formats streamq_tokenizer)
streamq_fuzz_target(tokenizer         streamq_tokenizer)
streamq_fuzz_target(chunk             streamq_io_store PkgConfig::XXHASH)
streamq_fuzz_target(quant_config      streamq_methods)
streamq_fuzz_target(workdir           streamq_job)
streamq_fuzz_target(gptq_import       streamq_export)
