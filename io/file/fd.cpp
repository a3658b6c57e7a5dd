// Fd's closing.
#include "io/file/fd.h"

#include <unistd.h>

#include <cerrno>

namespace streamq {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) {
    const int saved = errno;
    ::close(fd_);
    errno = saved;
  }
  fd_ = fd;
}

int Fd::close() noexcept { return fd_ >= 0 ? ::close(std::exchange(fd_, -1)) : 0; }

}  // namespace streamq
