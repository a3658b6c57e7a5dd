// Shared pieces of the streamq subcommands: parsing helpers and thread setup.
#pragma once

#include <boost/program_options.hpp>
#include <memory>
#include <string>
#include <vector>

#include <tbb/global_control.h>

namespace streamq::cli {

namespace po = boost::program_options;

// Parses args (without the subcommand) against `opts`; prints help to stdout and
// returns false when --help was given. Unknown flags throw po::error (exit 2).
bool parse(const std::string& command, const std::string& usage, const po::options_description& opts,
           const std::vector<std::string>& args, po::variables_map* vm);

// Limits oneTBB (all CPU compute runs on it; OpenBLAS is single-threaded) to
// n threads (n <= 0: all cores). The returned object keeps the limit alive.
std::unique_ptr<tbb::global_control> set_threads(int n);

// Throws InputError "--flag is required" when absent.
void require(const po::variables_map& vm, const std::vector<std::string>& flags);

int run_quantize(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_export(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_layer(const std::vector<std::string>& args);
int run_profile(const std::vector<std::string>& args);
int run_status(const std::vector<std::string>& args);
int run_synth(const std::vector<std::string>& args);
int run_tokenize(const std::vector<std::string>& args);

}  // namespace streamq::cli
