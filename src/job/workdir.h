// A resumable job's directory (--workdir):
//   manifest.json   what the job is (model, method, calibration), how far it
//                   got, and a checksum of every block file it names
//   blocks/         block-NNNNN.safetensors: one finished block's quantized
//                   linears (fake-quant weights and codes/scales/zeros/g_idx)
//   acts/           the compressed activation chunks of the next block's input
//   lock            flock'd while a process runs the job
// The manifest is replaced atomically (temp, fsync, rename, fsync dir) and only
// after everything it names is durable, so whatever instant a process dies at,
// the manifest on disk describes a consistent, complete prefix of the job.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/file/fd.h"

namespace streamq {

// What must match for a workdir to be resumed by a command: the model files,
// the method and its flags, the calibration tokens, and the output's shape
// (chunking of the stored activations, format). The flags that may differ
// are listed in src/pipeline/resume_rules.h.
struct JobIdentity {
  nlohmann::json model, method, calibration, output;
  nlohmann::json to_json() const;  // the compared part
  // Shown by `streamq status`, not compared: model_dir, method description,
  // calibration source (a moved model directory is still the same model).
  nlohmann::json info;
};

// The model part of a JobIdentity: the model directory's safetensors files,
// index and config.json by name, size and xxh64 of their ends.
nlohmann::json model_files_identity(const std::string& dir);

// How the job cut its calibration data; a resumed job keeps the stored one
// (its activation chunks on disk have that shape).
struct JobLayout {
  int64_t layers = 0, nsamples = 0, seqlen = 0, seqs_per_chunk = 1, nchunks = 0;
  nlohmann::json to_json() const;
  static JobLayout from_json(const nlohmann::json& j);
};

class Workdir {
 public:
  // Opens (creating) `dir` and takes its lock (InputError when another
  // process holds it). `restart`: discard any job found there. `durable`
  // false: a private scratch workdir of one run (no manifest writes, no
  // checksums; nothing will ever resume it). Manifest writes are kill points
  // (src/core/kill_point.h).
  Workdir(std::string dir, bool restart, bool durable);
  Workdir(const Workdir&) = delete;
  Workdir& operator=(const Workdir&) = delete;

  // Whether a manifest of an earlier run was found.
  bool has_job() const { return !manifest_.is_null(); }
  // Throws InputError saying which of model/method/calibration/output
  // differs (and how) from the stored job, and that --restart discards it;
  // for other BLAS kernels, the OPENBLAS_CORETYPE that resumes it.
  void check_identity(const JobIdentity& id) const;
  // Verifies every block file (and first-boundary file) the manifest names against its size and xxh64;
  // throws InputError naming the damaged file.
  void verify_block_files() const;
  // Starts a new job (no blocks done, no activations yet).
  void begin(const JobIdentity& id, const JobLayout& layout);

  JobLayout layout() const;
  int64_t completed_blocks() const;
  // Whether the input of block completed_blocks() is stored in acts/.
  bool boundary_ready() const;
  // Records that the first boundary (the embeddings) is durable in acts/,
  // with the files written beside it (names relative to dir(), durable
  // already: a rotated job's rotated embedding and head), which
  // verify_block_files then checks like the block files.
  void boundary_written(const std::vector<std::string>& files = {});
  // Records block `b` as done: its block file (durable already), its report,
  // and that boundary b+1 is durable in acts/.
  void commit_block(int64_t b, const nlohmann::json& block_report, double seconds);
  // Records that every block is done and the output is being assembled at `out`.
  void mark_finished(const std::string& out);
  bool finished() const;
  // Block reports of every completed block, in order.
  std::vector<nlohmann::json> block_reports() const;
  // A short id of this job (changes with --restart), stamped in its output.
  std::string job_id() const;
  // The id of the job --restart discarded (empty when none): its output
  // staging directory is named after it and nobody else will remove it.
  const std::string& discarded_job_id() const { return discarded_job_id_; }

  const std::string& dir() const { return dir_; }
  std::string blocks_dir() const { return dir_ + "/blocks"; }
  std::string acts_dir() const { return dir_ + "/acts"; }
  // "block-00012": the base name (no extension) of block b's file.
  static std::string block_base(int64_t b);
  std::string block_path(int64_t b) const { return blocks_dir() + "/" + block_base(b) + ".safetensors"; }

  // The manifest of `dir` for `streamq status` (InputError when there is none).
  static nlohmann::json read_manifest(const std::string& dir);

 private:
  void write_manifest();
  // Removes what no manifest names: temporaries of killed writers, block
  // files past the last completed block.
  void remove_strays() const;

  std::string dir_;
  bool durable_;
  Fd lock_;  // holds the flock while the job runs; closing it releases the lock
  nlohmann::json manifest_;
  std::string discarded_job_id_;
};

// `streamq status`: a few lines describing the job in `dir`.
std::string describe_workdir(const std::string& dir);

}  // namespace streamq
