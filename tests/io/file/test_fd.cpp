// Fd, the descriptor owner: closes on destruction and on reset, moves leave
// the source empty, release() hands the descriptor over unclosed, close()
// reports close(2)'s result, and errno survives a destructor's close.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "io/file/fd.h"

namespace streamq {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

int open_null() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /dev/null");
  return fd;
}

TEST(Fd, ClosesOnDestruction) {
  int raw = -1;
  {
    const Fd fd(open_null());
    raw = fd.get();
    EXPECT_TRUE(fd);
    EXPECT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(Fd, AFailedOpenHoldsNothing) {
  const Fd fd(::open("/nonexistent/streamq", O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(fd);
  EXPECT_EQ(Fd().get(), -1);
}

TEST(Fd, MoveConstructionTransfersOwnership) {
  Fd a(open_null());
  const int raw = a.get();
  {
    const Fd b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw)) << "the new owner closes it";
}

TEST(Fd, MoveAssignmentClosesWhatTheTargetHeld) {
  Fd a(open_null()), b(open_null());
  const int ra = a.get(), rb = b.get();
  b = std::move(a);
  EXPECT_FALSE(is_open(rb)) << "the target's old descriptor";
  EXPECT_EQ(b.get(), ra);
  EXPECT_TRUE(is_open(ra));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
  Fd& same = b;  // through a reference: the compiler warns on a literal self-move
  b = std::move(same);
  EXPECT_EQ(b.get(), ra) << "a self-move keeps the descriptor";
  EXPECT_TRUE(is_open(ra));
}

TEST(Fd, ReleaseHandsOverWithoutClosing) {
  int raw = -1;
  {
    Fd fd(open_null());
    raw = fd.release();
    EXPECT_FALSE(fd);
  }
  EXPECT_TRUE(is_open(raw));
  ::close(raw);
}

TEST(Fd, ResetAndCloseCloseNow) {
  Fd fd(open_null());
  const int first = fd.get();
  fd.reset(open_null());
  EXPECT_FALSE(is_open(first));
  const int second = fd.get();
  EXPECT_TRUE(is_open(second));
  EXPECT_EQ(fd.close(), 0);
  EXPECT_FALSE(fd);
  EXPECT_FALSE(is_open(second));
  EXPECT_EQ(fd.close(), 0) << "closing an empty Fd is a no-op";
}

TEST(Fd, DestructionLeavesErrnoAlone) {
  {
    const Fd fd(open_null());
    errno = ENOSPC;  // as if the last write failed and a message is about to read errno
  }
  EXPECT_EQ(errno, ENOSPC);
}

}  // namespace
}  // namespace streamq
