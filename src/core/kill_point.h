// Process-wide kill points for the crash test (RocksDB's TEST_KILL_RANDOM
// style): the process SIGKILLs itself at a chosen hit of a named point, so
// that kills land in every phase of a job (reads, compute, writes, manifest
// updates) rather than wherever a timer happens to fire. Armed once at start
// (the CLI reads STREAMQ_TEST_KILL_AT, a test-only hook); unarmed, a hit is
// one relaxed atomic load. Process-wide on purpose: every layer that has a
// point reaches it without a handle threaded through its signatures.
#pragma once

#include <string>

namespace streamq {

// Every point, in one place (tests/job/test_resume.cpp kills at each):
enum class KillPoint {
  Get,           // after each activation-store get of the job loop (src/pipeline/traced_store.h)
  Put,           // after each activation-store put of the job loop
  Stats,         // after a sub-layer group's statistics are collected
  Quantize,      // after each linear's result is written to its block file
  BlockFile,     // after a block file is complete (not yet named by the manifest)
  Flush,         // after a boundary is durable on disk (not yet named by the manifest)
  Manifest,      // inside the manifest's atomic write (temp written, before rename)
  ManifestDone,  // after the manifest's rename
  Drop,          // after a committed block's input boundary is dropped
  Assemble,      // after each tensor of the final checkpoint is copied
  Commit,        // before the output directory is renamed into place
  RotatedPanel,  // after each row panel of a rotated job's embedding and head (src/pipeline/rotated_ends.h)
  Learn,         // after each training step of a --learn job (src/pipeline/block_learning.h)
};
// "get", "put", "stats", "quantize", "block-file", "flush", "manifest",
// "manifest-done", "drop", "assemble", "commit", "rotated-panel", "learn": the
// names a spec uses.
const char* to_string(KillPoint p);

// Arms the facility: "NAME:N" dies at the N-th (1-based) hit of point NAME,
// "any:N" at the N-th hit of any point; "" disarms it (and resets the
// count). InputError naming the spec for anything else, unknown names too.
// Call before the threads that hit points start.
void arm_kill_point(const std::string& spec);
// Counts a hit of `p`; raises SIGKILL on this process when it is the one.
// Safe from any thread (concurrent hits each count once).
void kill_point(KillPoint p);
bool kill_point_armed();

}  // namespace streamq
