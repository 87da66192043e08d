// A fresh folder for the running test, for tests that write files.
#ifndef MARMOT_RAFT_HOST_TEST_DIR_H_
#define MARMOT_RAFT_HOST_TEST_DIR_H_

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace marmot::raft::host {

// <TempDir>/<name of the running test>, emptied first.
inline std::string FreshTestDir() {
  std::string d = absl::StrCat(::testing::TempDir(), "/",
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_TEST_DIR_H_
