// `streamq status`: how far the job in a workdir got, and what a resume may change.
#include <iostream>

#include "tools/cli_common.h"
#include "src/job/workdir.h"
#include "src/pipeline/resume_rules.h"

namespace streamq::cli {

int run_status(const std::vector<std::string>& args) {
  std::string workdir;
  po::options_description opts("status flags");
  opts.add_options()
      ("help,h", "show this help")
      ("workdir", po::value(&workdir), "the --workdir of a `streamq quantize` job");
  po::variables_map vm;
  if (!parse("status", "--workdir DIR", opts, args, &vm)) return 0;
  require(vm, {"workdir"});
  std::cout << describe_workdir(workdir) << describe_resume_rules();
  return 0;
}

}  // namespace streamq::cli
