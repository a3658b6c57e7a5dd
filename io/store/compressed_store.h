// The compressed activation store: each chunk converted to its storage dtype,
// byte-shuffled, zstd-compressed and checksummed into its own file (format in
// io/store/chunk_header.h), written asynchronously through IoEngine. A corrupt or
// truncated chunk is an error naming block, flow and chunk, never data.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "io/store/activation_store.h"
#include "io/store/chunk_header.h"
#include "io/file/io_backend.h"

namespace streamq {

// put() returns once the chunk is compressed and its writes are queued (the
// disk works while the caller goes on); a write that fails later is reported
// by the next put() or flush(), and its chunk is not stored. get() of a chunk
// still being written waits for it. Calls on different chunks may come from
// several threads at once; one chunk must not be put and used concurrently.
class CompressedStore : public ActivationStore {
 public:
  // Waits for every queued write, then fsyncs the chunk files written since
  // the last flush and the directory. Throws InternalError naming block, flow,
  // chunk and file for any chunk whose write failed (that chunk stays absent).
  void flush() override = 0;
  // Takes over chunk files of boundary `block` that an earlier process left
  // in the directory (a resumed job): `nchunks` chunks of each of `flows`,
  // whose headers are checked now (StoreCorruptionError naming the file when
  // one is missing or damaged) and whose data is checked by get() as always.
  void adopt(int64_t block, int64_t nchunks, const std::vector<Flow>& flows) override = 0;
  // What is held for `block`, or for all blocks when block < 0.
  StoreStats stats(int64_t block = -1) const override = 0;
  // "io_uring (registered buffers), O_DIRECT", "posix, buffered", ...
  virtual std::string io_description() const = 0;
};

// A seam for tests: wraps the chosen file layer (e.g. with fault injection).
using IoBackendWrapper = std::function<std::unique_ptr<IoBackend>(std::unique_ptr<IoBackend>)>;
std::unique_ptr<CompressedStore> open_compressed_store(const CompressedStoreOptions& opts,
                                                       const IoBackendWrapper& wrap = {});

// Where the store keeps a chunk: <dir>/b<block>.<flow>.c<chunk>.sqz
std::string compressed_chunk_path(const std::string& dir, int64_t block, Flow flow, int64_t chunk);

}  // namespace streamq
