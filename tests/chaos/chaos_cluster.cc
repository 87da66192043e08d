#include "tests/chaos/chaos_cluster.h"

#include <glog/logging.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"

namespace marmot::chaos {

ChaosCluster::ChaosCluster(ChaosClusterOptions options)
    : options_(std::move(options)),
      procs_(options_.nodes),
      paused_(options_.nodes, false),
      disk_full_(options_.nodes, false),
      starts_(options_.nodes, 0) {
  std::filesystem::create_directories(options_.dir);
  for (int i = 0; i < options_.nodes; ++i) {
    ports_.push_back(testing::FreeLoopbackPort());
    pane_ports_.push_back(testing::FreeLoopbackPort());
  }
  for (int a = 1; a <= options_.nodes; ++a) {
    for (int b = a + 1; b <= options_.nodes; ++b) {
      proxies_[{a, b}] = std::make_unique<LinkProxy>(ports_[b - 1]);
    }
  }
}

ChaosCluster::~ChaosCluster() {
  for (int id = 1; id <= nodes(); ++id) {
    if (IsRunning(id)) KillNode(id);
  }
}

std::string ChaosCluster::db_path(int id) const {
  return absl::StrCat(options_.dir, "/node-", id, ".db");
}

std::string ChaosCluster::log_path(int id) const {
  return absl::StrCat(options_.dir, "/node-", id, ".run-", starts_[id - 1], ".log");
}

int ChaosCluster::CountLogLines(const std::string& text) const {
  int n = 0;
  for (int id = 1; id <= nodes(); ++id) {
    for (int run = 1; run <= starts_[id - 1]; ++run) {
      std::ifstream f(absl::StrCat(options_.dir, "/node-", id, ".run-", run, ".log"));
      for (std::string line; std::getline(f, line);) n += line.find(text) != std::string::npos;
    }
  }
  return n;
}

bool ChaosCluster::Start(std::chrono::milliseconds timeout) {
  for (int id = 1; id <= nodes(); ++id) {
    auto out = sqlite::testing::RunSqliteCli(db_path(id), options_.schema);
    CHECK(out.ok()) << out.status();
  }
  for (int id = 1; id <= nodes(); ++id) StartNode(id);
  for (int id = 1; id <= nodes(); ++id) {
    if (!testing::WaitFor([&] { return IsReplicating(id); }, timeout)) {
      LOG(ERROR) << "node " << id << " did not start; see " << log_path(id);
      return false;
    }
  }
  return true;
}

bool ChaosCluster::IsReplicating(int id) const {
  std::ifstream f(log_path(id));
  std::stringstream s;
  s << f.rdbuf();
  return s.str().find(" replicating ") != std::string::npos;
}

void ChaosCluster::StartNode(int id) {
  CHECK(!IsRunning(id)) << "node " << id << " already runs";
  std::vector<std::string> members;
  for (int i = 1; i <= nodes(); ++i) {
    int port = i > id ? proxies_.at({id, i})->port() : ports_[i - 1];
    members.push_back(absl::StrCat(i, "@127.0.0.1:", port));
  }
  // A shell wrapper gives every run of the node its own log file, kept for post-mortems.
  ++starts_[id - 1];
  std::vector<std::string> argv = {
      "/bin/sh",
      "-c",
      absl::StrCat(options_.disk_shim.empty()
                       ? ""
                       : absl::StrCat("LD_PRELOAD='", options_.disk_shim, "' MARMOT_CHAOS_DISK='",
                                      options_.dir, "/disk-", id, "' "),
                   "exec \"$0\" \"$@\" 2>'", log_path(id), "'"),
      options_.marmot_binary,
      absl::StrCat("-node-id=", id),
      absl::StrCat("-bind=127.0.0.1:", ports_[id - 1]),
      absl::StrCat("-bind-pane=127.0.0.1:", pane_ports_[id - 1]),
      absl::StrCat("-bootstrap=", absl::StrJoin(members, ",")),
      absl::StrCat("-shards=", options_.shards),
      "-db-path=" + db_path(id),
      "-raft-path=" + absl::StrCat(options_.dir, "/raft-", id),
  };
  if (options_.snapshot_entries > 0)
    argv.push_back(absl::StrCat("-snapshot-entries=", options_.snapshot_entries));
  procs_[id - 1] = std::make_unique<testing::Subprocess>(argv, options_.dir);
  paused_[id - 1] = false;
}

void ChaosCluster::KillNode(int id) {
  CHECK(IsRunning(id));
  procs_[id - 1]->Signal(SIGKILL);
  procs_[id - 1]->Wait(std::chrono::seconds(10));
  procs_[id - 1].reset();
  paused_[id - 1] = false;
}

std::optional<int> ChaosCluster::StopNode(int id, std::chrono::milliseconds grace) {
  CHECK(IsRunning(id));
  if (paused_[id - 1]) ResumeNode(id);
  procs_[id - 1]->Signal(SIGTERM);
  std::optional<int> code = procs_[id - 1]->Wait(grace);
  if (!code.has_value()) {
    procs_[id - 1]->Signal(SIGKILL);
    procs_[id - 1]->Wait(std::chrono::seconds(10));
  }
  procs_[id - 1].reset();
  paused_[id - 1] = false;
  return code;
}

std::vector<std::pair<int, int>> ChaosCluster::ReapExited() {
  std::vector<std::pair<int, int>> exited;
  for (int id = 1; id <= nodes(); ++id) {
    if (!IsRunning(id)) continue;
    std::optional<int> code = procs_[id - 1]->Wait(std::chrono::milliseconds(0));
    if (!code.has_value()) continue;
    exited.push_back({id, *code});
    procs_[id - 1].reset();
    paused_[id - 1] = false;
  }
  return exited;
}

void ChaosCluster::PauseNode(int id) {
  CHECK(IsRunning(id));
  procs_[id - 1]->Signal(SIGSTOP);
  paused_[id - 1] = true;
}

void ChaosCluster::ResumeNode(int id) {
  CHECK(IsRunning(id));
  procs_[id - 1]->Signal(SIGCONT);
  paused_[id - 1] = false;
}

void ChaosCluster::SetLink(int a, int b, LinkMode mode) {
  if (a > b) {
    std::swap(a, b);
    if (mode == LinkMode::kStallForward) {
      mode = LinkMode::kStallBackward;
    } else if (mode == LinkMode::kStallBackward) {
      mode = LinkMode::kStallForward;
    }
  }
  proxies_.at({a, b})->SetMode(mode);
}

void ChaosCluster::SlowDisk(int id, int ms) {
  CHECK(has_disk_shim());
  std::ofstream(absl::StrCat(options_.dir, "/disk-", id)) << ms;
}

void ChaosCluster::FullDisk(int id) {
  CHECK(has_disk_shim());
  std::ofstream(absl::StrCat(options_.dir, "/disk-", id)) << "full";
  disk_full_[id - 1] = true;
}

void ChaosCluster::ClearDisk(int id) {
  std::filesystem::remove(absl::StrCat(options_.dir, "/disk-", id));
  disk_full_[id - 1] = false;
}

void ChaosCluster::HealAll() {
  for (auto& [pair, proxy] : proxies_) proxy->SetMode(LinkMode::kPass);
  for (int id = 1; id <= nodes(); ++id) ClearDisk(id);
  for (int id = 1; id <= nodes(); ++id) {
    if (!IsRunning(id)) {
      StartNode(id);
    } else if (IsPaused(id)) {
      ResumeNode(id);
    }
  }
}

}  // namespace marmot::chaos
