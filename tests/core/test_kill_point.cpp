// The process-wide kill points: a spec names a point and a hit count; the
// process dies by SIGKILL at exactly that hit, and at no other; bad specs
// are refused naming the spec.
#include <gtest/gtest.h>

#include <csignal>

#include "src/core/error.h"
#include "src/core/kill_point.h"

namespace streamq {
namespace {

// Disarms on scope exit, so no other test in this binary inherits a spec.
struct Armed {
  explicit Armed(const std::string& spec) { arm_kill_point(spec); }
  ~Armed() { arm_kill_point(""); }
};

TEST(KillPoint, DiesAtTheNthHitOfTheNamedPointOnly) {
  EXPECT_EXIT(
      {
        Armed a("put:3");
        for (int i = 0; i < 10; ++i) kill_point(KillPoint::Get);  // other points do not count
        kill_point(KillPoint::Put);
        kill_point(KillPoint::Put);
        std::fprintf(stderr, "alive after two puts\n");
        kill_point(KillPoint::Put);
        std::fprintf(stderr, "alive after three puts\n");
        std::exit(0);
      },
      testing::KilledBySignal(SIGKILL), "alive after two puts\n$");
}

TEST(KillPoint, AnyCountsEveryPoint) {
  EXPECT_EXIT(
      {
        Armed a("any:2");
        kill_point(KillPoint::Manifest);
        kill_point(KillPoint::Commit);
        std::exit(0);
      },
      testing::KilledBySignal(SIGKILL), "");
}

TEST(KillPoint, UnarmedNeverKills) {
  arm_kill_point("");
  EXPECT_FALSE(kill_point_armed());
  for (int i = 0; i < 1000; ++i) kill_point(KillPoint::Drop);
  Armed a("drop:1000000");
  EXPECT_TRUE(kill_point_armed());
  for (int i = 0; i < 1000; ++i) kill_point(KillPoint::Drop);
}

TEST(KillPoint, BadSpecsAreRefusedNamingTheSpec) {
  for (const char* spec : {"put", "put:0", "put:-1", "put:2x", ":3", "nosuch:1"}) {
    try {
      arm_kill_point(spec);
      FAIL() << spec << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(spec), std::string::npos) << e.what();
    }
    EXPECT_FALSE(kill_point_armed()) << spec;
  }
}

TEST(KillPoint, EveryPointHasTheNameTheResumeTestUses) {
  EXPECT_STREQ(to_string(KillPoint::BlockFile), "block-file");
  EXPECT_STREQ(to_string(KillPoint::ManifestDone), "manifest-done");
  EXPECT_STREQ(to_string(KillPoint::Commit), "commit");
}

}  // namespace
}  // namespace streamq
