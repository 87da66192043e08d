#include "tests/testing/subprocess.h"

#include <chrono>
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace marmot::testing {
namespace {

TEST(SanitizerReportTest, FindsEachSanitizersReportFromItsFirstLine) {
  EXPECT_EQ(SanitizerReport("I0101 marmot started\n"
                            "==7==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"
                            "#0 0x2 in f\n"),
            "==7==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n#0 0x2 in f\n");
  EXPECT_EQ(SanitizerReport("==9==ERROR: LeakSanitizer: detected memory leaks\n"),
            "==9==ERROR: LeakSanitizer: detected memory leaks\n");
  EXPECT_EQ(SanitizerReport("log\nraft/core.cc:12:3: runtime error: signed integer overflow\n"),
            "raft/core.cc:12:3: runtime error: signed integer overflow\n");
}

TEST(SanitizerReportTest, OrdinaryLogsHoldNone) {
  EXPECT_EQ(SanitizerReport(""), "");
  EXPECT_EQ(SanitizerReport("E0101 apply failed: ERROR: constraint\nRuntime error near line 1\n"),
            "");
}

TEST(SubprocessDeathTest, AChildsSanitizerReportStopsTheTest) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  ASSERT_NE(tmp, nullptr);
  EXPECT_DEATH(
      {
        Subprocess p({"/bin/sh", "-c", "echo '==1==ERROR: AddressSanitizer: SEGV' >&2"}, tmp);
        p.Wait(std::chrono::seconds(10));
      },
      "ERROR: AddressSanitizer: SEGV");
  Subprocess quiet({"/bin/sh", "-c", "echo 'nothing wrong' >&2"}, tmp);
  EXPECT_EQ(quiet.Wait(std::chrono::seconds(10)), 0);
}

}  // namespace
}  // namespace marmot::testing
