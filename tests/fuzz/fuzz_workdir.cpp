// Fuzz target: a resumable job's manifest.json (and one block file) as
// `streamq status` reads it (describe_workdir) and as a resumed quantize or an
// export opens it: Workdir's constructor (format, layout, strays), then the
// accessors the pipeline calls, the block-file check and the identity check.
// Input: manifest.json, kPartSeparator, blocks/block-00000.safetensors.
#include <nlohmann/json.hpp>

#include "src/job/workdir.h"
#include "tests/fuzz/fuzz_util.h"

using namespace streamq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split_parts(data, size, 2);
  fuzz::clear_scratch();
  const std::string dir = fuzz::scratch_dir() + "/wd";
  fuzz::write_scratch("wd/manifest.json", parts[0]);
  if (!parts[1].empty()) fuzz::write_scratch("wd/blocks/" + Workdir::block_base(0) + ".safetensors", parts[1]);
  fuzz::expect_input_errors([&] { (void)describe_workdir(dir); });
  fuzz::expect_input_errors([&] {
    Workdir wd(dir, /*restart=*/false, /*durable=*/true);
    if (!wd.has_job()) return;
    (void)wd.layout();
    (void)wd.completed_blocks();
    (void)wd.boundary_ready();
    (void)wd.finished();
    (void)wd.job_id();
    (void)wd.block_reports();
    wd.verify_block_files();
    JobIdentity id;
    id.model = {{"files", nlohmann::json::array()}};
    id.method = {{"quant", {{"bits", 4}}}};
    id.calibration = {{"tokens", 0}};
    wd.check_identity(id);
  });
  return 0;
}
