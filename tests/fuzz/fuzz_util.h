// What the fuzz targets share: a private scratch directory for the files the
// parsers under test open (they take paths, not bytes), multi-part inputs,
// and the rule for exceptions. Targets: tests/fuzz/fuzz_<parser>.cpp, run by
// scripts/fuzz.sh (libFuzzer) and replayed over their corpora by ctest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "src/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace streamq::fuzz {

// This process's directory under /dev/shm (memory, so a million inputs do
// not wear a disk), created at first use and removed at exit.
const std::string& scratch_dir();
// Empties scratch_dir(): targets that build a directory start each input
// from nothing, so no input depends on the one before.
void clear_scratch();
// Writes bytes to scratch_dir()/rel (parent folders created); returns the path.
std::string write_scratch(const std::string& rel, std::string_view bytes);

// Multi-part inputs (a tokenizer.json and the text to encode, a config.json
// and its checkpoint): parts are separated by kPartSeparator, which the
// dictionaries list so the fuzzer can add or remove one. Missing parts come
// back empty; the last part runs to the end of the input.
inline constexpr std::string_view kPartSeparator = "\n--streamq-fuzz-part--\n";
std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t nparts);

// Runs f. The parsers' documented failure for a bad input is InputError
// (`extra_ok` adds one more expected type, e.g. StoreCorruptionError for
// chunk files); any other exception is a bug: it is printed with its type and
// the process aborts, which libFuzzer records as a crash with the input.
template <class ExtraOk = InputError, class F>
void expect_input_errors(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  } catch (const ExtraOk&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unexpected exception %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
}

// Reads every byte of [p, p + n) so ASan checks a range the parser vouched for.
void touch(const void* p, size_t n);

}  // namespace streamq::fuzz
