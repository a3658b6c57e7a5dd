// Small file helpers shared by every writer: whole-file reads and durable,
// atomic replacement (temp name, fsync, rename, fsync the directory).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace streamq {

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_file(const std::string& path);
// Writes `content` to `path` atomically: path.tmp.<pid>, fsync, rename, fsync dir.
// `before_rename` (tests' kill points) runs once the temporary is durable.
void atomic_write_file(const std::string& path, const std::string& content,
                       const std::function<void()>& before_rename = {});
// fsyncs a directory so a rename inside it is durable.
void fsync_dir(const std::string& dir);
// Creates a directory (and parents); throws InputError naming it on failure.
void make_dirs(const std::string& dir);

}  // namespace streamq
