#include "sqlite/testing/sqlite_cli.h"

#include <glog/logging.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace marmot::sqlite::testing {

std::string NewTempDir(const std::string& label) {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path dir = std::filesystem::path(base != nullptr ? base : "/tmp") /
                              absl::StrCat(label, "-", getpid(), "-", counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

absl::StatusOr<std::string> RunSqliteCli(const std::string& db_path, const std::string& sql) {
  std::string dir = NewTempDir("sqlite-cli");
  std::string in = dir + "/in.sql", out = dir + "/out.txt", err = dir + "/err.txt";
  // Like any application sharing a file with marmot, wait for locks instead of failing at once.
  std::ofstream(in) << ".timeout 10000\n" << sql;
  std::string cmd =
      absl::StrCat("sqlite3 -bail '", db_path, "' < '", in, "' > '", out, "' 2> '", err, "'");
  int rc = std::system(cmd.c_str());
  auto slurp = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  std::string output = slurp(out);
  std::string error = slurp(err);
  std::filesystem::remove_all(dir);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("sqlite3 exited with status ", WEXITSTATUS(rc), ": ", error));
  }
  return output;
}

std::string NewDatabase(const std::string& label, const std::string& sql) {
  const std::string path = NewTempDir(label) + "/test.db";
  absl::StatusOr<std::string> made = RunSqliteCli(path, sql);
  CHECK(made.ok()) << "making " << path << ": " << made.status();
  return path;
}

}  // namespace marmot::sqlite::testing
