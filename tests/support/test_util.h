// Shared helpers for the test suite: where fixtures live, scratch directories,
// running the streamq binary.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace streamq::test {

// The repository root and the bundled demo model (data/stories260K).
std::string source_dir();
std::string demo_model_dir();
// ../shared/fixtures next to the repository (real data the tests may read).
std::string shared_fixtures_dir();
// The streamq binary the tests run (its folder holds libstreamq_cuda.so in a CUDA build).
std::string streamq_bin();

// A fresh, empty directory under the system temp dir, removed by the destructor.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built `streamq` binary with `args` (shell-quoted for you).
CliResult run_streamq(const std::vector<std::string>& args);
// The same with `prefix` before the binary in the shell command line:
// environment assignments ("STREAMQ_TEST_KILL_AT=put:3") and/or a wrapper
// ("timeout -s KILL 0.5"). A process killed by a signal gives 128 + signal.
CliResult run_streamq_with(const std::string& prefix, const std::vector<std::string>& args);

std::string read_all(const std::string& path);
// What a byte-identity test compares of an output file: its bytes, except that
// a .safetensors file's streamq_settings metadata entry is left out (it
// records how the job was asked for, e.g. the CLI's preset or the device, not
// what the tensors hold; the tests that compare runs made differently check
// the tensors and every other header byte).
std::string output_bytes(const std::string& path);
void write_all(const std::string& path, const std::string& bytes);

// A seed for random inputs: fresh every run (logged by the caller) unless
// STREAMQ_TEST_SEED is set, so a failure can be replayed.
uint64_t fresh_seed();
// In a gtest body: declares `rng` seeded from fresh_seed() and traces the
// seed, so a failure prints the STREAMQ_TEST_SEED that replays it.
#define STREAMQ_FRESH_RNG(rng)                                                  \
  const uint64_t rng##_seed = ::streamq::test::fresh_seed();                    \
  SCOPED_TRACE("STREAMQ_TEST_SEED=" + std::to_string(rng##_seed));              \
  std::mt19937_64 rng(rng##_seed)
// ||got - ref|| / ||ref|| in float64 (sizes must match).
double relative_difference(const std::vector<float>& got, const std::vector<float>& ref);

// Whether the page holding `p` is mapped into this process now (counts in
// RSS): bit 63 of its /proc/self/pagemap entry, readable unprivileged.
bool page_mapped(const void* p);

}  // namespace streamq::test
