// FaultInjector and the IoBackend wrapper that applies it: a failed op goes to
// the inner backend as a no-op and comes back carrying -errno, a shortened op
// goes with a smaller length and comes back short, so completions still flow
// through the real ring or syscall path.
#include "io/file/fault_injection.h"

#include <fcntl.h>

#include <algorithm>
#include <vector>

namespace streamq {

namespace {

constexpr uint32_t kBlock = 4096;

class FaultInjectingBackend final : public IoBackend {
 public:
  FaultInjectingBackend(std::unique_ptr<IoBackend> inner, std::shared_ptr<FaultInjector> injector)
      : inner_(std::move(inner)), injector_(std::move(injector)) {}
  std::string name() const override { return inner_->name() + " + fault injection"; }
  void register_buffers(char* base, size_t slab_bytes, size_t nslabs) override {
    inner_->register_buffers(base, slab_bytes, nslabs);
  }
  int open(const std::string& path, int flags, mode_t mode) override {
    if (injector_->reject_open(flags)) return -EINVAL;
    return inner_->open(path, flags, mode);
  }
  void queue(IoOp* op) override {
    const FaultInjector::Decision d = injector_->decide(*op);
    if (d.error > 0 || d.len != op->len) {
      std::lock_guard lk(m_);
      altered_[op] = d.error;
      if (d.error > 0) op->kind = IoKind::Nop;
      else op->len = d.len;
    }
    inner_->queue(op);
  }
  void submit() override { inner_->submit(); }
  void reap(std::vector<IoCompletion>* out, bool wait) override {
    const size_t first = out->size();
    inner_->reap(out, wait);
    std::lock_guard lk(m_);
    for (size_t i = first; i < out->size(); ++i) {
      IoCompletion& c = (*out)[i];
      // Only the result changes here: the op belongs to the engine again,
      // which rebuilds kind and length from its own request when it retries.
      auto it = altered_.find(c.op);
      if (it == altered_.end()) continue;
      if (it->second > 0) c.res = -it->second;
      altered_.erase(it);
    }
  }

 private:
  std::unique_ptr<IoBackend> inner_;
  std::shared_ptr<FaultInjector> injector_;
  std::mutex m_;  // queue() and reap() run on different threads
  std::map<IoOp*, int> altered_;  // ops shortened (0) or failed (errno)
};

}  // namespace

void FaultInjector::set_plan(const FaultPlan& p) {
  std::lock_guard lk(m_);
  plan_ = p;
}

FaultCounters FaultInjector::counters() const {
  std::lock_guard lk(m_);
  return c_;
}

bool FaultInjector::reject_open(int flags) const {
  std::lock_guard lk(m_);
  return plan_.reject_direct && (flags & O_DIRECT);
}

FaultInjector::Decision FaultInjector::decide(const IoOp& op) {
  std::lock_guard lk(m_);
  Decision d{0, op.len};
  if (op.kind == IoKind::Nop) return d;
  const bool write = op.kind == IoKind::Write;
  const int64_t index = write ? c_.writes++ : c_.reads++;
  if (plan_.interrupt_every > 0 && (index + 1) % plan_.interrupt_every == 0) {
    ++c_.injected;
    d.error = ((index + 1) / plan_.interrupt_every) % 2 ? EINTR : EAGAIN;
    return d;
  }
  if (index == (write ? plan_.fail_write_at : plan_.fail_read_at)) {
    ++c_.injected;
    d.error = plan_.error;
    return d;
  }
  if (plan_.max_transfer > 0 && d.len > plan_.max_transfer) {
    ++c_.injected;
    d.len = plan_.max_transfer;
  }
  if (write && plan_.write_budget != UINT64_MAX) {
    const uint64_t left = plan_.write_budget > c_.bytes_written ? plan_.write_budget - c_.bytes_written : 0;
    if (left < d.len) {
      ++c_.injected;
      const uint32_t fits = static_cast<uint32_t>(left / kBlock * kBlock);
      if (fits == 0) {
        d.error = plan_.error;
        return d;
      }
      d.len = fits;
    }
  }
  if (write) c_.bytes_written += d.len;
  return d;
}

std::unique_ptr<IoBackend> wrap_with_faults(std::unique_ptr<IoBackend> inner, std::shared_ptr<FaultInjector> injector) {
  return std::make_unique<FaultInjectingBackend>(std::move(inner), std::move(injector));
}

}  // namespace streamq
