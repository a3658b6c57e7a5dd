// Flag parsing and thread setup shared by the subcommands.
#include "tools/cli_common.h"

#include <iostream>
#include <thread>

#include "src/core/error.h"

namespace streamq::cli {

bool parse(const std::string& command, const std::string& usage, const po::options_description& opts,
           const std::vector<std::string>& args, po::variables_map* vm) {
  po::store(po::command_line_parser(args).options(opts).run(), *vm);
  if (vm->count("help")) {
    std::cout << "usage: streamq " << command << " " << usage << "\n\n" << opts << "\n";
    return false;
  }
  po::notify(*vm);
  return true;
}

std::unique_ptr<tbb::global_control> set_threads(int n) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int use = n > 0 ? n : hw;
  return std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                               static_cast<size_t>(use));
}

void require(const po::variables_map& vm, const std::vector<std::string>& flags) {
  for (const auto& f : flags)
    if (!vm.count(f)) throw InputError("--" + f + " is required (see --help)");
}

}  // namespace streamq::cli
