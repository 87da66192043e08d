// Test support: time bounds of tests that start clusters, under a sanitizer.
#ifndef MARMOT_TESTS_TESTING_SANITIZERS_H_
#define MARMOT_TESTS_TESTING_SANITIZERS_H_

namespace marmot::testing {

// How many times a "within N seconds" bound is stretched. Under ThreadSanitizer (.bazelrc's
// --config=tsan, TESTING.md) every process of a test, each marmot node included, runs 5 to 15
// times slower; such a run checks for data races, not for speed.
#if defined(__SANITIZE_THREAD__)
inline constexpr int kSanitizerSlowdown = 10;
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_SANITIZERS_H_
