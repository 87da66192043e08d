// The README's "Operating" curl lines, run as written (ports substituted) against a live
// 3-node cluster: the documentation cannot drift from what marmot does.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> ReadmeCurlLines() {
  std::string readme = testing::ReadTextFile(std::string(std::getenv("TEST_SRCDIR")) + "/marmot/README.md");
  size_t section = readme.find("## Operating");
  EXPECT_NE(section, std::string::npos) << "README has no Operating section";
  size_t end = readme.find("\n## ", section + 1);
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(readme.substr(section, end - section), '\n')) {
    if (absl::StartsWith(line, "curl ")) lines.emplace_back(line);
  }
  return lines;
}

// Runs `command` with /bin/sh; returns its exit code and output.
std::pair<int, std::string> Shell(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

TEST(ReadmeOperatingTest, EveryCurlExampleWorks) {
  setenv("AUTH_KEY", "Basic bWFybW90OnNlY3JldA==", 1);
  testing::LocalCluster cluster({.nodes = 3, .shards = 4});
  cluster.Start();
  // Like an operator, let the cluster settle (every shard has a leader again after a transfer)
  // before the next call; leadership calls answer UNAVAILABLE (503) while a shard has none.
  auto wait_ready = [&] {
    return testing::WaitFor(
        [&] { return Shell(absl::StrCat("curl -fsS 127.0.0.1:", cluster.rest_port(1), "/readyz")).first == 0; },
        30s);
  };
  std::vector<std::string> lines = ReadmeCurlLines();
  ASSERT_GE(lines.size(), 5u);
  const std::string dir = testing::NewTestDir("readme-curl");
  for (const std::string& line : lines) {
    ASSERT_TRUE(wait_ready());
    std::string command = absl::StrReplaceAll(
        line, {{"localhost:6011", absl::StrCat("127.0.0.1:", cluster.rest_port(1))}});
    auto [code, out] = Shell("cd " + dir + " && " + command);
    EXPECT_EQ(code, 0) << line << "\n" << out;
    // Lines that save to a file (-o) print nothing; the file must then be a database.
    if (line.find(" -o ") == std::string::npos) {
      EXPECT_FALSE(out.empty()) << line;
    } else {
      std::string saved = dir + "/" + line.substr(line.find(" -o ") + 4);
      EXPECT_TRUE(Shell("sqlite3 " + saved + " 'PRAGMA integrity_check;'").second == "ok\n") << line;
    }
  }
}

}  // namespace
}  // namespace marmot
