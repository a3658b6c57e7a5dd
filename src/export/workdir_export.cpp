// Export from a workdir: assemble the fake-quant checkpoint, then pack it.
#include "src/export/workdir_export.h"

#include <filesystem>

#include "src/core/error.h"
#include "io/file/file_util.h"
#include "src/methods/quant_config_json.h"
#include "src/model/model.h"
#include "src/job/block_files.h"
#include "src/export/model_source.h"
#include "src/export/quant_output.h"
#include "src/job/output_dir.h"
#include "src/job/workdir.h"

namespace fs = std::filesystem;

namespace streamq {

GptqExportReport export_gptq_from_workdir(const std::string& workdir, const std::string& out_dir,
                                          const GptqExportOptions& opts, std::ostream* log) {
  Workdir wd(workdir, false, true);  // the lock: no quantize runs on it meanwhile
  if (!wd.has_job()) throw InputError("--from " + workdir + ": no job here (no manifest.json)");
  const JobLayout layout = wd.layout();
  if (wd.completed_blocks() < layout.layers)
    throw InputError("--from " + workdir + ": the job has finished " + std::to_string(wd.completed_blocks()) + " of " +
                     std::to_string(layout.layers) + " blocks; rerun its quantize command to finish it first");
  wd.verify_block_files();
  const nlohmann::json manifest = Workdir::read_manifest(workdir);
  const std::string model_path = manifest.at("info").at("model_dir").get<std::string>();
  const QuantConfig quant = quant_config_from_json(manifest.at("identity").at("method").at("quant"),
                                                   workdir + "/manifest.json");
  OutputDir out(out_dir, opts.overwrite);
  const ModelSource source(model_path, out.staging_path(), log);
  if (model_files_identity(source.dir()) != manifest.at("identity").at("model"))
    throw InputError("--from " + workdir + ": the model at " + model_path +
                     " is not the one this job quantized (its files changed)");
  Model model(source.dir());
  const std::string fq = out.staging_path() + "/.fakequant";
  make_dirs(fq);
  AssembleInput in;
  in.cfg = &model.config();
  in.source = &model.tensors();
  in.quant = quant;
  in.block_path = [&](int64_t b) { return wd.block_path(b); };
  // The job's settings as its manifest froze them (the preset that filled
  // them is not part of a job's identity).
  const nlohmann::json& id = manifest.at("identity");
  const std::string settings = nlohmann::json{{"quantizer", std::string("streamq ") + STREAMQ_VERSION},
                                              {"preset", nullptr},
                                              {"method", id.at("method")},
                                              {"calibration", id.at("calibration")},
                                              {"output", id.value("output", nlohmann::json())},
                                              {"from_workdir", workdir}}
                                   .dump();
  in.fq_metadata = {{"format", "pt"}, {"streamq", quant.describe()}, {kSettingsMetadataKey, settings}};
  in.qr_metadata = {{"format", "streamq-quant"}, {"streamq", quant.describe()},
                    {"quant_config", quant_config_to_json(quant).dump()}, {kSettingsMetadataKey, settings}};
  assemble_checkpoint(in, fq);
  out.copy_side_files(source.dir());
  atomic_write_file(fq + "/config.json", read_file(out.staging_path() + "/config.json"));
  GptqExportReport rep = write_gptq_checkpoint(fq, out.staging_path(), opts, log);
  fs::remove_all(fq);
  rep.quant_dir = workdir;
  rep.out_dir = out_dir;
  atomic_write_file(out.staging_path() + "/" + kGptqExportReportName, rep.to_json().dump(1) + "\n");
  out.commit();
  return rep;
}

}  // namespace streamq
