#include "tests/testing/local_cluster.h"

#include <glog/logging.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"

namespace marmot::testing {

LocalCluster::LocalCluster(ClusterOptions options)
    : options_(std::move(options)),
      dir_(NewTestDir("cluster")),
      procs_(options_.nodes),
      joining_(options_.nodes, false) {
  for (int i = 0; i < options_.nodes; ++i) {
    ports_.push_back(FreeLoopbackPort());
    pane_ports_.push_back(FreeLoopbackPort());
  }
}

LocalCluster::~LocalCluster() {
  for (int id = 1; id <= nodes(); ++id) {
    if (IsRunning(id)) KillNode(id);
  }
}

std::string LocalCluster::address(int id) const {
  return absl::StrCat("127.0.0.1:", ports_[id - 1]);
}

int LocalCluster::StartJoiningNode(bool with_schema) {
  ports_.push_back(FreeLoopbackPort());
  pane_ports_.push_back(FreeLoopbackPort());
  procs_.emplace_back();
  joining_.push_back(true);
  int id = nodes();
  if (with_schema && !options_.schema.empty()) {
    auto out = sqlite::testing::RunSqliteCli(db_path(id), options_.schema);
    CHECK(out.ok()) << out.status();
  }
  StartNode(id);
  CHECK(WaitUntilReplicating(id, std::chrono::seconds(30))) << log(id);
  return id;
}

std::string LocalCluster::db_path(int id) const { return absl::StrCat(dir_, "/node-", id, ".db"); }
std::string LocalCluster::raft_path(int id) const { return absl::StrCat(dir_, "/raft-", id); }

std::string LocalCluster::raft_store(int id) const {
  return absl::StrCat(raft_path(id), "/node-", id);
}

std::string LocalCluster::log(int id) const {
  if (procs_[id - 1] != nullptr) return procs_[id - 1]->Stderr();
  auto exited = exited_logs_.find(id);
  return exited != exited_logs_.end() ? exited->second : "";
}

void LocalCluster::Start(const std::set<int>& refused) {
  for (int id = 1; id <= options_.nodes; ++id) {
    if (!options_.schema.empty()) {
      auto out = sqlite::testing::RunSqliteCli(db_path(id), options_.schema);
      CHECK(out.ok()) << out.status();
    }
    if (auto rows = options_.rows_before.find(id); rows != options_.rows_before.end()) {
      auto out = sqlite::testing::RunSqliteCli(db_path(id), rows->second);
      CHECK(out.ok()) << out.status();
    }
  }
  for (int id = 1; id <= options_.nodes; ++id) StartNode(id);
  for (int id = 1; id <= options_.nodes; ++id) {
    if (refused.count(id) > 0) continue;
    CHECK(WaitUntilReplicating(id, std::chrono::seconds(30)))
        << "node " << id << " did not start:\n"
        << log(id);
  }
}

bool LocalCluster::WaitUntilReplicating(int id, std::chrono::milliseconds timeout) const {
  return WaitFor([&] { return log(id).find(" replicating ") != std::string::npos; }, timeout);
}

bool LocalCluster::WaitUntilReady(int id, std::chrono::milliseconds timeout) const {
  httplib::Client pane("127.0.0.1", pane_port(id));
  pane.set_connection_timeout(std::chrono::seconds(2));
  pane.set_read_timeout(std::chrono::seconds(2));
  return WaitFor(
      [&] {
        httplib::Result ready = pane.Get("/readyz");
        return ready && ready->status == 200;
      },
      timeout);
}

void LocalCluster::StartNode(int id) {
  CHECK(!IsRunning(id)) << "node " << id << " already runs";
  std::vector<std::string> members;
  for (int i = 1; i <= options_.nodes; ++i) members.push_back(absl::StrCat(i, "@", address(i)));
  std::vector<std::string> argv = {
      MarmotBinary(),
      absl::StrCat("-node-id=", id),
      absl::StrCat("-bind=127.0.0.1:", ports_[id - 1]),
      absl::StrCat("-bind-pane=127.0.0.1:", pane_ports_[id - 1]),
      absl::StrCat("-bootstrap=", absl::StrJoin(members, ",")),
      absl::StrCat("-shards=", options_.shards),
      "-db-path=" + db_path(id),
      "-raft-path=" + raft_path(id),
  };
  if (joining_[id - 1]) argv.push_back("-join");
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  if (auto it = node_flags_.find(id); it != node_flags_.end()) {
    argv.insert(argv.end(), it->second.begin(), it->second.end());
  }
  procs_[id - 1] = std::make_unique<Subprocess>(argv, dir_);
}

std::optional<int> LocalCluster::WaitForExit(int id, std::chrono::milliseconds timeout) {
  CHECK(IsRunning(id));
  std::optional<int> code = procs_[id - 1]->Wait(timeout);
  if (code.has_value()) {
    exited_logs_[id] = procs_[id - 1]->Stderr();
    procs_[id - 1].reset();
  }
  return code;
}

int LocalCluster::StopNode(int id) {
  CHECK(IsRunning(id));
  const int code = procs_[id - 1]->Stop(SIGTERM, std::chrono::seconds(30));
  procs_[id - 1].reset();
  return code;
}

void LocalCluster::KillNode(int id) {
  CHECK(IsRunning(id));
  procs_[id - 1]->Signal(SIGKILL);
  procs_[id - 1]->Wait(std::chrono::seconds(10));
  procs_[id - 1].reset();
}

std::string LocalCluster::Sql(int id, const std::string& sql) const {
  auto out = sqlite::testing::RunSqliteCli(db_path(id), sql);
  CHECK(out.ok()) << "node " << id << ": " << out.status();
  return *out;
}

bool LocalCluster::WaitForSame(const std::string& query, std::chrono::milliseconds timeout) const {
  return WaitFor(
      [&] {
        std::string first;
        for (int id = 1; id <= nodes(); ++id) {
          auto out = sqlite::testing::RunSqliteCli(db_path(id), query);
          if (!out.ok()) return false;
          if (id == 1) {
            first = *out;
          } else if (*out != first) {
            return false;
          }
        }
        return true;
      },
      timeout);
}

bool LocalCluster::WaitForEverywhere(const std::string& query, const std::string& expected,
                                     std::chrono::milliseconds timeout) const {
  return WaitFor(
      [&] {
        for (int id = 1; id <= nodes(); ++id) {
          auto out = sqlite::testing::RunSqliteCli(db_path(id), query);
          if (!out.ok() || *out != expected) return false;
        }
        return true;
      },
      timeout);
}

std::string LocalCluster::OnEveryNode(const std::string& query) const {
  std::string out;
  for (int id = 1; id <= nodes(); ++id) {
    auto printed = sqlite::testing::RunSqliteCli(db_path(id), query);
    absl::StrAppend(&out, "node ", id, ":\n", printed.ok() ? *printed : printed.status().ToString(),
                    "\n");
  }
  return out;
}

}  // namespace marmot::testing
