// The README's "Operating" curl lines, run as written (ports substituted) against a live
// 3-node cluster: the documentation cannot drift from what marmot does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

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
  std::string readme =
      testing::ReadTextFile(std::string(std::getenv("TEST_SRCDIR")) + "/marmot/README.md");
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

// Node `id`'s view of the leader of each shard (0: none known), from its GET /v1/status.
std::map<int, uint64_t> ShardLeaders(testing::LocalCluster& cluster, int id) {
  auto [code, out] = Shell(absl::StrCat("curl -fsS -H 'Authorization: ", std::getenv("AUTH_KEY"),
                                        "' 127.0.0.1:", cluster.pane_port(id), "/v1/status"));
  std::map<int, uint64_t> leaders;
  if (code != 0) return leaders;
  // ShardStatus prints its fields in field order, zeros included: "shard":0,"leader":"2",...
  static const std::regex kShard(R"re("shard"\s*:\s*"?(\d+)"?\s*,\s*"leader"\s*:\s*"?(\d+)"?)re");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), kShard); it != std::sregex_iterator();
       ++it) {
    leaders[std::stoi((*it)[1])] = std::stoull((*it)[2]);
  }
  return leaders;
}

TEST(ReadmeOperatingTest, EveryCurlExampleWorks) {
  setenv("AUTH_KEY", "Basic bWFybW90OnNlY3JldA==", 1);
  constexpr int kShards = 4;
  testing::LocalCluster cluster({.nodes = 3, .shards = kShards});
  cluster.Start();
  // Like an operator, let the cluster settle before the next call: node 1 ready, and knowing a
  // leader for every shard (leadership calls answer UNAVAILABLE, 503, while a shard has none;
  // /readyz does not say that).
  auto wait_ready = [&] {
    return testing::WaitFor(
        [&] {
          const std::string readyz =
              absl::StrCat("curl -fsS 127.0.0.1:", cluster.pane_port(1), "/readyz");
          if (Shell(readyz).first != 0) return false;
          const std::map<int, uint64_t> leaders = ShardLeaders(cluster, 1);
          return leaders.size() == kShards &&
                 std::all_of(leaders.begin(), leaders.end(),
                             [](const auto& l) { return l.second != 0; });
        },
        30s);
  };
  // A transfer is only asked for when its call returns: the old leader still leads for a
  // moment, then the shard has none until the new one takes over. Waiting for the new leader
  // keeps that gap out of the next call. (A transfer that does not complete is abandoned within
  // an election timeout, 1.2-2.4 s, and the old leader stays: 5 s cover both.)
  static const std::regex kTransfer(R"re(/v1/shards/(\d+)/leader.*"nodeId": *"(\d+)")re");
  std::vector<std::string> lines = ReadmeCurlLines();
  ASSERT_GE(lines.size(), 5u);
  const std::string dir = testing::NewTestDir("readme-curl");
  for (const std::string& line : lines) {
    ASSERT_TRUE(wait_ready());
    std::string command = absl::StrReplaceAll(
        line, {{"localhost:6010", absl::StrCat("127.0.0.1:", cluster.pane_port(1))}});
    auto [code, out] = Shell("cd " + dir + " && " + command);
    EXPECT_EQ(code, 0) << line << "\n" << out;
    std::smatch transfer;
    if (code == 0 && std::regex_search(line, transfer, kTransfer)) {
      const int shard = std::stoi(transfer[1]);
      const uint64_t to = std::stoull(transfer[2]);
      testing::WaitFor([&] { return ShardLeaders(cluster, 1)[shard] == to; }, 5s);
    }
    // Lines that save to a file (-o) print nothing; the file must then be a database.
    if (line.find(" -o ") == std::string::npos) {
      EXPECT_FALSE(out.empty()) << line;
    } else {
      std::string saved = dir + "/" + line.substr(line.find(" -o ") + 4);
      EXPECT_TRUE(Shell("sqlite3 " + saved + " 'PRAGMA integrity_check;'").second == "ok\n")
          << line;
    }
  }
}

}  // namespace
}  // namespace marmot
