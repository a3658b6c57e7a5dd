// `streamq profile FILE.json [--html OUT.html]`: where a traced run's time went
// (per-category totals, I/O hidden under compute, lanes, achieved rates).
#include <iostream>

#include "tools/cli_common.h"
#include "io/file/file_util.h"
#include "src/report/profile.h"
#include "src/report/profile_html.h"

namespace streamq::cli {

int run_profile(const std::vector<std::string>& args) {
  std::string trace_path, html_path;
  bool json_out = false;
  po::options_description opts("profile flags");
  opts.add_options()
      ("help,h", "show this help")
      ("trace", po::value(&trace_path), "Chrome trace JSON (from quantize --trace, or any trace with X or B/E "
                                        "events); may also be given as the first positional argument")
      ("html", po::value(&html_path), "also write a self-contained timeline page (no network needed) here")
      ("json", po::bool_switch(&json_out), "print the summary as JSON instead of text");
  // cli::parse takes flags only; the trace file is positional here, as the
  // issue's spelling `streamq profile FILE.json` requires.
  po::positional_options_description positional;
  positional.add("trace", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(positional).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: streamq profile FILE.json [--html OUT.html] [--json]\n\n" << opts << "\n"
              << "I/O categories: read, write, decompress, compress; compute: compute, quantize, forward, stats.\n"
                 "I/O counts as hidden while a compute span runs on another lane. The busiest lane stands in\n"
                 "for the critical path. Peaks are read from the trace's otherData: peak_gflops,\n"
                 "peak_io_gbps, peak_<category>_gbps.\n";
    return 0;
  }
  po::notify(vm);
  require(vm, {"trace"});

  const nlohmann::json trace = load_trace_file(trace_path);
  const ParsedTrace parsed = parse_trace(trace, trace_path);
  const ProfileSummary summary = summarize_trace(parsed);
  if (json_out) std::cout << summary_to_json(summary).dump(2) << "\n";
  else std::cout << format_summary(summary);
  if (!html_path.empty()) {
    const std::string name = trace_path.substr(trace_path.find_last_of('/') + 1);
    atomic_write_file(html_path, render_profile_html(parsed, summary, name));
    if (!json_out) std::cout << "html " << html_path << "\n";
  }
  return 0;
}

}  // namespace streamq::cli
