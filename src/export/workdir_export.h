// `streamq export --from WORKDIR`: the GPTQ checkpoint of a finished
// resumable job, packed from its block files and the source model, so a job
// run with --format fake (or whose output was lost) can still be exported.
#pragma once

#include <iosfwd>
#include <string>

#include "src/export/gptq_export.h"

namespace streamq {

// Throws InputError when the job is not finished, a block file is damaged, or
// the model at the recorded path is no longer the one the job quantized.
GptqExportReport export_gptq_from_workdir(const std::string& workdir, const std::string& out_dir,
                                          const GptqExportOptions& opts, std::ostream* log);

}  // namespace streamq
