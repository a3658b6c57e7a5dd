// An output directory that appears only when complete: everything is written
// into a staging directory beside it, which commit() renames into place.
#pragma once

#include <string>

namespace streamq {

class OutputDir {
 public:
  // Refuses (InputError naming it) an existing non-empty `path` unless
  // `overwrite`; creates the staging directory `<path>.partial-<tag>`, tag
  // the pid by default. A resumable job passes its job id as the tag, so a
  // rerun replaces what its killed predecessor left (it holds the job's lock,
  // so that predecessor is gone even if the kernel has not reaped it yet).
  OutputDir(std::string path, bool overwrite, const std::string& tag = "");
  // Removes `<path>.partial-<tag>` left by a job that will never finish (one
  // discarded by --restart): no live process owns that name.
  static void remove_abandoned_staging(std::string path, const std::string& tag);
  // Removes the staging directory when commit() was not reached.
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::string& staging_path() const { return staging_; }
  // Copies config.json, generation_config.json, tokenizer files and other small
  // non-weight files of the source model into the staging directory.
  void copy_side_files(const std::string& model_dir);
  // fsyncs and renames the staging directory to the final path (replacing an
  // old one when overwriting), then fsyncs the parent.
  void commit();

 private:
  void remove_dead_stagings() const;
  std::string path_, staging_;
  bool overwrite_;
  bool committed_ = false;
};

}  // namespace streamq
