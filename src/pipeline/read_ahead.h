// Read-ahead hints for a loop over store chunks: the loop says which item of
// its known reading order it just consumed, and the hints run ahead of it as
// far as the store accepts (io/store/prefetch_store.h bounds the depth).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "io/store/activation_store.h"

namespace streamq {

// Asks the store to start reading (block, flow, chunk); false: not now.
using ReadAheadHint = std::function<bool(int64_t block, Flow flow, int64_t chunk)>;

class ReadAhead {
 public:
  using Order = std::vector<std::pair<Flow, int64_t>>;
  // `hint` may be empty (no read-ahead: every call is a no-op).
  ReadAhead(const ReadAheadHint& hint, int64_t block, Order order)
      : hint_(hint), block_(block), order_(std::move(order)) {}
  // Item i of the order was read (i = -1: nothing yet); hints the next ones.
  void consumed(int64_t i) {
    if (!hint_) return;
    next_ = std::max(next_, i + 1);
    while (next_ < static_cast<int64_t>(order_.size()) &&
           hint_(block_, order_[next_].first, order_[next_].second))
      ++next_;
  }

  // The stats pass reads (Fp c, Quant c) per chunk, or Quant c alone.
  static Order stats_order(int64_t nchunks, bool fp_flow) {
    Order o;
    for (int64_t c = 0; c < nchunks; ++c) {
      if (fp_flow) o.emplace_back(Flow::Fp, c);
      o.emplace_back(Flow::Quant, c);
    }
    return o;
  }
  // Propagation reads (Quant c, Fp c) per chunk, or Quant c alone.
  static Order propagate_order(int64_t nchunks, bool fp_flow) {
    Order o;
    for (int64_t c = 0; c < nchunks; ++c) {
      o.emplace_back(Flow::Quant, c);
      if (fp_flow) o.emplace_back(Flow::Fp, c);
    }
    return o;
  }

 private:
  const ReadAheadHint& hint_;
  int64_t block_;
  Order order_;
  int64_t next_ = 0;
};

}  // namespace streamq
