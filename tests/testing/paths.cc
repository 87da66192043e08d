#include "tests/testing/paths.h"

#include <glog/logging.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::testing {
namespace {

std::string Runfile(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  CHECK(srcdir != nullptr) << "TEST_SRCDIR is not set: run this test with bazel test";
  std::string path = std::string(srcdir) + "/" + workspace_relative;
  CHECK(std::filesystem::exists(path)) << "missing runfile " << path;
  return path;
}

}  // namespace

std::string MarmotBinary() { return Runfile("marmot/marmot"); }

std::string DatasetPath(const std::string& name) { return Runfile("datasets/" + name); }

std::string ReadTextFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string NewTestDir(const std::string& label) { return sqlite::testing::NewTempDir(label); }

}  // namespace marmot::testing
