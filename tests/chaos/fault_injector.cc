#include "tests/chaos/fault_injector.h"

#include <glog/logging.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace marmot::chaos {

FaultInjector::FaultInjector(ChaosCluster* cluster, uint64_t seed, FaultOptions options)
    : cluster_(cluster), rng_(seed), options_(options), start_(std::chrono::steady_clock::now()) {}

void FaultInjector::Event(const std::string& what) {
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = absl::StrFormat("%7.1fs %s", t, what);
  LOG(INFO) << "chaos: " << line;
  events_.push_back(line);
}

int FaultInjector::RestartCrashed() {
  int n = 0;
  for (auto [id, code] : cluster_->ReapExited()) {
    if (cluster_->IsDiskFull(id)) {
      ++disk_full_exits_;
      Event(absl::StrCat("node ", id, " exited with code ", code, " on a full disk (log ",
                         cluster_->log_path(id), "); restarting it"));
      cluster_->StartNode(id);
      continue;
    }
    ++crashes_;
    ++n;
    Event(absl::StrCat("CRASH node ", id, " exited by itself with code ", code, " (log ",
                       cluster_->log_path(id), "); restarting it"));
    cluster_->StartNode(id);
  }
  return n;
}

bool FaultInjector::Inject(Fault* f, std::vector<bool>* busy) {
  const int n = cluster_->nodes();
  std::vector<std::pair<std::string, int>> kinds;
  if (options_.kill) kinds.insert(kinds.end(), {{"kill", 6}, {"kill-all", 1}});
  if (options_.stop) kinds.push_back({"stop", 3});
  if (options_.pause) kinds.push_back({"pause", 4});
  if (options_.partition) kinds.insert(kinds.end(), {{"isolate", 4}, {"one-way", 4}});
  if (options_.slow_disk && cluster_->has_disk_shim()) kinds.push_back({"slow-disk", 3});
  if (options_.disk_full && cluster_->has_disk_shim()) kinds.push_back({"disk-full", 2});
  if (options_.outage && outage_node_ == 0) kinds.push_back({"outage", 2});
  if (kinds.empty()) return false;
  int total = 0;
  for (auto& [k, w] : kinds) total += w;
  int r = Uniform(0, total - 1);
  for (auto& [k, w] : kinds) {
    if (r < w) {
      f->kind = k;
      break;
    }
    r -= w;
  }
  const int a = Uniform(1, n);
  int b = Uniform(1, n - 1);
  if (b >= a) ++b;
  auto free_node = [&](int id) {
    return !(*busy)[id - 1] && cluster_->IsRunning(id) && !cluster_->IsPaused(id);
  };
  if (f->kind == "kill-all") {
    for (int id = 1; id <= n; ++id) {
      if ((*busy)[id - 1]) return false;
    }
    for (int id = 1; id <= n; ++id) {
      if (cluster_->IsRunning(id)) cluster_->KillNode(id);
      (*busy)[id - 1] = true;
      f->nodes.push_back(id);
    }
    Event("kill -9 every node");
  } else if (f->kind == "slow-disk" || f->kind == "disk-full") {
    if ((*busy)[a - 1]) return false;
    (*busy)[a - 1] = true;
    f->nodes = {a};
    if (f->kind == "slow-disk") {
      const int ms = Uniform(20, 200);
      cluster_->SlowDisk(a, ms);
      Event(absl::StrCat("slow disk on node ", a, ": every sync waits ", ms, " ms"));
    } else {
      cluster_->FullDisk(a);
      Event(absl::StrCat("full disk on node ", a, ": every sync fails with ENOSPC"));
    }
  } else if (f->kind == "outage") {
    if (!free_node(a)) return false;
    (*busy)[a - 1] = true;
    f->nodes = {a};
    const int ms = Uniform(options_.min_outage_ms, options_.max_outage_ms);
    cluster_->KillNode(a);
    outage_node_ = a;
    outage_until_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    Event(absl::StrCat("kill -9 node ", a, " and keep it down for ", ms / 1000, " s"));
  } else if (f->kind == "kill" || f->kind == "stop" || f->kind == "pause" || f->kind == "isolate") {
    if (!free_node(a)) return false;
    (*busy)[a - 1] = true;
    f->nodes = {a};
    if (f->kind == "stop") {
      const auto asked = std::chrono::steady_clock::now();
      const std::optional<int> code = cluster_->StopNode(a, std::chrono::seconds(30));
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
      if (code != std::optional<int>(0)) {
        ++bad_stops_;
        Event(absl::StrFormat("BAD STOP node %d: SIGTERM %s after %.1f s (log %s)", a,
                              code ? absl::StrCat("ended it with exit code ", *code)
                                   : std::string("did not end it; killed"),
                              took, cluster_->log_path(a)));
      } else {
        Event(absl::StrFormat("SIGTERM node %d: drained and exited 0 in %.1f s", a, took));
      }
    } else if (f->kind == "kill") {
      cluster_->KillNode(a);
      Event(absl::StrCat("kill -9 node ", a));
    } else if (f->kind == "pause") {
      cluster_->PauseNode(a);
      Event(absl::StrCat("SIGSTOP node ", a));
    } else {
      for (int other = 1; other <= n; ++other) {
        if (other != a) cluster_->SetLink(a, other, LinkMode::kBlocked);
      }
      Event(absl::StrCat("isolate node ", a, " (every link cut both ways)"));
    }
  } else {  // one-way
    if ((*busy)[a - 1] || (*busy)[b - 1]) return false;
    (*busy)[a - 1] = (*busy)[b - 1] = true;
    f->nodes = {a, b};
    cluster_->SetLink(a, b, LinkMode::kStallForward);
    Event(absl::StrCat("one-way: hold traffic from node ", a, " to node ", b));
  }
  ++counts_[f->kind];
  return true;
}

void FaultInjector::EndOutageIfDue() {
  if (outage_node_ == 0 || std::chrono::steady_clock::now() < outage_until_) return;
  if (!cluster_->IsRunning(outage_node_)) cluster_->StartNode(outage_node_);
  Event(absl::StrCat("restart node ", outage_node_, " after its outage"));
  outage_node_ = 0;
}

void FaultInjector::Heal(const Fault& f) {
  if (f.kind == "outage") return;  // EndOutageIfDue, rounds later.
  if (f.kind == "kill" || f.kind == "stop" || f.kind == "kill-all") {
    for (int id : f.nodes) {
      if (!cluster_->IsRunning(id)) cluster_->StartNode(id);
    }
    Event(absl::StrCat("restart ",
                       f.kind != "kill-all" ? absl::StrCat("node ", f.nodes[0]) : "every node"));
  } else if (f.kind == "slow-disk" || f.kind == "disk-full") {
    cluster_->ClearDisk(f.nodes[0]);
    Event(absl::StrCat("disk of node ", f.nodes[0], " healthy again"));
  } else if (f.kind == "pause") {
    if (cluster_->IsRunning(f.nodes[0])) cluster_->ResumeNode(f.nodes[0]);
    Event(absl::StrCat("SIGCONT node ", f.nodes[0]));
  } else if (f.kind == "isolate") {
    for (int other = 1; other <= cluster_->nodes(); ++other) {
      if (other != f.nodes[0]) cluster_->SetLink(f.nodes[0], other, LinkMode::kPass);
    }
    Event(absl::StrCat("reconnect node ", f.nodes[0]));
  } else {
    cluster_->SetLink(f.nodes[0], f.nodes[1], LinkMode::kPass);
    Event(absl::StrCat("heal link ", f.nodes[0], "-", f.nodes[1]));
  }
}

void FaultInjector::Run(std::chrono::milliseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  auto sleep_until = [&](std::chrono::steady_clock::time_point t) {
    while (std::chrono::steady_clock::now() < std::min(t, deadline)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      RestartCrashed();
    }
  };
  while (std::chrono::steady_clock::now() < deadline) {
    sleep_until(std::chrono::steady_clock::now() +
                std::chrono::milliseconds(Uniform(options_.min_gap_ms, options_.max_gap_ms)));
    if (std::chrono::steady_clock::now() >= deadline) break;
    EndOutageIfDue();
    std::vector<bool> busy(cluster_->nodes(), false);
    if (outage_node_ != 0) busy[outage_node_ - 1] = true;
    std::vector<Fault> active;
    const int count = Uniform(0, 3) == 0 ? 2 : 1;
    for (int i = 0; i < count; ++i) {
      Fault f;
      if (Inject(&f, &busy)) active.push_back(f);
    }
    // The hold is drawn even when nothing was injected, so the schedule depends on the seed only.
    const int hold = Uniform(options_.min_hold_ms, options_.max_hold_ms);
    sleep_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(hold));
    for (const Fault& f : active) Heal(f);
  }
  if (outage_node_ != 0) {
    Event(absl::StrCat("end the outage of node ", outage_node_, " early"));
    outage_node_ = 0;
  }
  cluster_->HealAll();
  Event("faults stopped; every node running, every link open");
}

}  // namespace marmot::chaos
