// Test support: where test data and built programs are inside Bazel's runfiles.
#ifndef MARMOT_TESTS_TESTING_PATHS_H_
#define MARMOT_TESTS_TESTING_PATHS_H_

#include <string>

namespace marmot::testing {

// The `marmot` binary (the test must list `//:marmot` in `data`).
std::string MarmotBinary();

// A file of the shared datasets folder (the test must list `@datasets//:<name>` in `data`).
std::string DatasetPath(const std::string& name);

// The whole content of a file ("" when it cannot be read).
std::string ReadTextFile(const std::string& path);

// A fresh empty directory under TEST_TMPDIR.
std::string NewTestDir(const std::string& label);

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_PATHS_H_
