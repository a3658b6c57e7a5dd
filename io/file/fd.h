// Fd: the one owner of a file descriptor in streamq. Closed when the owner
// goes, on every path out including throws; move-only, so a descriptor has
// exactly one owner at a time.
#pragma once

#include <utility>

namespace streamq {

class Fd {
 public:
  Fd() = default;
  // Takes ownership of `fd`; a negative value (a failed open) holds nothing.
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it; the caller owns it now.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // Closes what is held (its close error is lost: use close() where a write
  // may be reported late) and holds `fd` instead. errno is left as it was, so
  // an error message built after an Fd goes out of scope still reads the
  // failure that caused it.
  void reset(int fd = -1) noexcept;
  // Closes now and returns close(2)'s result (0, or -1 with errno set):
  // writers check it because close can report a deferred write error (NFS,
  // quota). Holds nothing afterwards, even on error (Linux frees the
  // descriptor either way, so retrying could close someone else's).
  int close() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace streamq
