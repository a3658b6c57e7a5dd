// What PrefetchStore and MirroredStore share about their one background I/O
// thread: how much may be in flight, whose memory its buffers use, where its
// spans go. One struct, so the job that opens either store fills it once.
#pragma once

#include <cstdint>

namespace streamq {

class MemoryBudget;
class TraceRecorder;

struct BackgroundIoOptions {
  // Chunks in flight in each direction: at most `depth` read-aheads (queued,
  // reading or read and not yet taken by get) and `depth` write-behinds
  // (queued or writing). 0: every call goes straight to the inner store (a
  // put writes through before it returns).
  int depth = 2;
  // Where the in-flight buffers' bytes are reserved. A put that does not fit
  // waits for earlier write-behinds; with none left to wait for it writes
  // through. Null: unlimited (each store says whose).
  MemoryBudget* budget = nullptr;
  // The largest chunk's float32 bytes: what a read-ahead of a chunk the store
  // has not seen put reserves before it knows the size. 0 (unknown): such
  // read-aheads are skipped unless the budget is unlimited.
  uint64_t chunk_bytes = 0;
  // Spans of the I/O thread's reads and writes (its lane is "activation io").
  TraceRecorder* trace = nullptr;
};

}  // namespace streamq
