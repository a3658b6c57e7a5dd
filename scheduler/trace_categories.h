// The trace categories the engine uses, apart from the recorder so that code
// which only names a category (a CUDA translation unit) needs nothing else.
#pragma once

namespace streamq {

// Categories the engine uses; `streamq profile` counts the first four as I/O
// and the last four as compute (see src/report/profile.h).
namespace trace_cat {
constexpr const char* kRead = "read";
constexpr const char* kWrite = "write";
constexpr const char* kDecompress = "decompress";
constexpr const char* kCompress = "compress";
constexpr const char* kH2D = "h2d";
constexpr const char* kD2H = "d2h";
constexpr const char* kCompute = "compute";
constexpr const char* kQuantize = "quantize";
constexpr const char* kForward = "forward";
constexpr const char* kStats = "stats";
// Neither: the compute thread waiting for I/O another lane does.
constexpr const char* kWait = "wait";
}  // namespace trace_cat

}  // namespace streamq
