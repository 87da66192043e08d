// host_bench: the multi-Raft host measured as it runs, 3 node processes on loopback.
//
// The driver (this program without --node) starts itself three times as `--node=1..3`; each
// node process runs one NodeHost (16 shards, RocksDB log with fsync, real gRPC transport) with a
// state machine that only counts. The driver then measures, for every node process:
//
//   idle:  CPU use and peak RSS of the cluster doing nothing but heartbeats;
//   load:  for each payload size, every node proposes to every shard (round robin, followers
//          forwarding to the leader) with --concurrency proposals in flight. Printed: committed
//          proposals/s across the cluster, p50/p99 commit latency (Propose() to the callback on
//          the proposing node: committed by a quorum and applied there), committed log
//          entries/s (several proposals share one entry with --pack), fsyncs per committed
//          entry, CPU seconds and peak RSS per node.
//
//   bazel run -c opt //tools/bench:host_bench -- --seconds=10
//   (tools/dev bench-host does the same.)
//
// Driver and nodes talk over the nodes' stdin/stdout, one line per command:
//   node -> driver  "ready"                      every shard has a leader this node knows
//   driver -> node  "load <payload> <seconds>"   propose for that long, then
//   node -> driver  "done <ok> <failed> <fsyncs> <applied> <entries> <latency file>"
//   driver -> node  "quit"                       stop the host and exit 0
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "raft/host/grpc_node_host.h"
#include "raft/host/node_host.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/piped_process.h"
#include "tests/testing/subprocess.h"

DEFINE_int32(shards, 16, "shards per node");
DEFINE_int32(concurrency, 4096, "proposals in flight per node");
DEFINE_int32(seconds, 10, "measured duration of each load phase");
DEFINE_int32(idle_seconds, 10, "measured duration of the idle phase (0: skip)");
DEFINE_string(payloads, "64,1024", "payload sizes in bytes, one load phase each");
DEFINE_bool(pack, true,
            "pack the proposals of a shard queued together into one log entry "
            "(NodeHostConfig::pack_proposals)");
DEFINE_int32(tick_ms, 100, "NodeHostConfig::tick_interval, milliseconds");
DEFINE_int32(heartbeat_ticks, 2, "NodeHostConfig::heartbeat_ticks");
DEFINE_int32(election_ticks, 10, "NodeHostConfig::election_ticks");
DEFINE_string(dir, "/tmp/marmot-host-bench", "raft folders (wiped before and after)");
// Set by the driver for the processes it starts.
DEFINE_int32(node, 0, "internal: run as node N of the cluster");
DEFINE_string(peers, "", "internal: id=host:port,... of the cluster");

namespace marmot::raft::host {
namespace {

// ---------------------------------------------------------------------------------------------
// Node process.

// Counts applied proposals and log entries (a pack is one entry of several proposals).
struct AppliedCounts {
  std::atomic<uint64_t> proposals{0};
  std::atomic<uint64_t> entries{0};
};

class CountingStateMachine : public StateMachine {
 public:
  explicit CountingStateMachine(AppliedCounts* applied) : applied_(applied) {}
  uint64_t Open() override { return 0; }
  absl::Status Apply(const std::vector<AppliedEntry>& entries, ApplyRound*) override {
    uint64_t distinct = 0;
    for (const AppliedEntry& e : entries) {
      if (e.index != last_index_) ++distinct;
      last_index_ = e.index;
    }
    applied_->proposals.fetch_add(entries.size(), std::memory_order_relaxed);
    applied_->entries.fetch_add(distinct, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  absl::Status SaveSnapshot(SnapshotSink& out, ApplyRound*) override { return out.Write("count"); }
  absl::Status RecoverFromSnapshot(uint64_t, const SnapshotSource&, ApplyRound*) override {
    return absl::OkStatus();
  }

 private:
  AppliedCounts* applied_;
  uint64_t last_index_ = 0;
};

class FsyncCounter : public HostObserver {
 public:
  void OnLogWrite(absl::Duration, bool synced) override {
    if (synced) fsyncs.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> fsyncs{0};
};

std::map<uint64_t, std::string> ParsePeers(const std::string& s) {
  std::map<uint64_t, std::string> peers;
  for (absl::string_view item : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    uint64_t id = 0;
    CHECK(kv.size() == 2 && absl::SimpleAtoi(kv[0], &id)) << "bad --peers item " << item;
    peers[id] = kv[1];
  }
  return peers;
}

// Proposes to every shard in turn for `seconds`, `concurrency` in flight; writes the latencies
// (microseconds, one double each) to `latency_file`.
std::string RunLoad(NodeHost& host, int payload_bytes, int seconds, const std::string& latency_file,
                    FsyncCounter& fsyncs, AppliedCounts& applied) {
  std::mutex mu;
  std::condition_variable cv;
  int inflight = 0;
  uint64_t ok = 0, failed = 0;
  std::map<std::string, uint64_t> failures;
  std::vector<double> latencies_us;
  latencies_us.reserve(1 << 22);
  const std::string payload(payload_bytes, 'x');
  const uint64_t fsyncs0 = fsyncs.fsyncs.load();
  const uint64_t applied0 = applied.proposals.load();
  const uint64_t entries0 = applied.entries.load();
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  // Refilled in bursts: the generator sleeps until a quarter of the window completed, so it
  // is not woken once per completed proposal.
  const int refill_at = FLAGS_concurrency - std::max(1, FLAGS_concurrency / 4);
  bool waiting = false;
  uint64_t n = 0;
  while (absl::Now() < end) {
    int room;
    {
      std::unique_lock<std::mutex> l(mu);
      waiting = true;
      cv.wait(l, [&] { return inflight <= refill_at; });
      waiting = false;
      room = FLAGS_concurrency - inflight;
      inflight = FLAGS_concurrency;
    }
    for (int i = 0; i < room; ++i) {
      const absl::Time t0 = absl::Now();
      host.Propose(n++ % host.shards(), payload, [&, t0](absl::Status st, uint64_t) {
        const double us = absl::ToDoubleMicroseconds(absl::Now() - t0);
        std::lock_guard<std::mutex> l(mu);
        if (st.ok()) {
          ++ok;
          latencies_us.push_back(us);
        } else {
          ++failed;
          ++failures[std::string(st.message())];
        }
        if (--inflight == refill_at && waiting) cv.notify_one();
        if (inflight == 0) cv.notify_one();
      });
    }
  }
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return inflight == 0; });
  }
  for (const auto& [why, count] : failures) {
    LOG(WARNING) << "node " << host.node_id() << ": " << count << " proposals failed: " << why;
  }
  std::ofstream out(latency_file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(latencies_us.data()),
            static_cast<std::streamsize>(latencies_us.size() * sizeof(double)));
  return absl::StrCat("done ", ok, " ", failed, " ", fsyncs.fsyncs.load() - fsyncs0, " ",
                      applied.proposals.load() - applied0, " ", applied.entries.load() - entries0,
                      " ", latency_file);
}

int RunNode() {
  const uint64_t me = FLAGS_node;
  std::map<uint64_t, std::string> peers = ParsePeers(FLAGS_peers);
  CHECK(peers.count(me)) << "--peers lacks node " << me;
  AppliedCounts applied;
  FsyncCounter fsyncs;
  NodeHostConfig c;
  c.node_id = me;
  c.bind_address = peers[me];
  c.raft_path = absl::StrCat(FLAGS_dir, "/node-", me);
  c.shards = FLAGS_shards;
  c.peers = peers;
  c.observer = &fsyncs;
  c.pack_proposals = FLAGS_pack;
  c.tick_interval = absl::Milliseconds(FLAGS_tick_ms);
  c.heartbeat_ticks = FLAGS_heartbeat_ticks;
  c.election_ticks = FLAGS_election_ticks;
  auto host =
      StartNodeHost(c, [&](uint64_t) { return std::make_unique<CountingStateMachine>(&applied); });
  CHECK(host.ok()) << host.status();
  // Ready when every shard has a leader this node knows (else proposals are dropped).
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  for (int s = 0; s < FLAGS_shards; ++s) {
    while ((*host)->GetShardInfo(s).leader == 0) {
      CHECK(absl::Now() < deadline) << "node " << me << ": no leader for shard " << s;
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    if (words[0] == "quit") break;
    int payload = 0, seconds = 0;
    CHECK(words[0] == "load" && words.size() == 3 && absl::SimpleAtoi(words[1], &payload) &&
          absl::SimpleAtoi(words[2], &seconds))
        << "bad command: " << line;
    std::cout << RunLoad(**host, payload, seconds,
                         absl::StrCat(FLAGS_dir, "/latencies-", me, "-", payload), fsyncs, applied)
              << std::endl;
  }
  (*host)->Stop();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Driver.

// One node process, driven over its stdin and stdout.
class NodeProcess {
 public:
  NodeProcess(uint64_t id, const std::string& peers)
      : id_(id),
        proc_({std::filesystem::read_symlink("/proc/self/exe").string(),
               absl::StrCat("--node=", id), absl::StrCat("--peers=", peers),
               absl::StrCat("--shards=", FLAGS_shards),
               absl::StrCat("--concurrency=", FLAGS_concurrency), absl::StrCat("--dir=", FLAGS_dir),
               absl::StrCat("--pack=", FLAGS_pack), absl::StrCat("--tick_ms=", FLAGS_tick_ms),
               absl::StrCat("--heartbeat_ticks=", FLAGS_heartbeat_ticks),
               absl::StrCat("--election_ticks=", FLAGS_election_ticks)}) {}

  void Send(const std::string& line) { proc_.Send(line); }
  std::string Receive() {
    std::string line = proc_.ReadLine();
    CHECK(!line.empty()) << "node " << id_ << " went away";
    return line;
  }
  // Waits for a clean exit after "quit".
  void Quit() {
    Send("quit");
    CHECK_EQ(proc_.Wait(), 0) << "node " << id_ << " exited badly";
  }

  // User + system CPU seconds so far.
  double CpuSeconds() const { return ::marmot::testing::ProcessCpuSeconds(proc_.pid()); }
  // Peak and current resident set size, MiB.
  std::pair<double, double> RssMiB() const {
    std::ifstream f(absl::StrCat("/proc/", proc_.pid(), "/status"));
    std::string line;
    double peak = 0, now = 0;
    while (std::getline(f, line)) {
      if (line.rfind("VmHWM:", 0) == 0) peak = std::stod(line.substr(6)) / 1024;
      if (line.rfind("VmRSS:", 0) == 0) now = std::stod(line.substr(6)) / 1024;
    }
    return {peak, now};
  }
  uint64_t id() const { return id_; }

 private:
  uint64_t id_;
  ::marmot::testing::PipedProcess proc_;
};

std::vector<double> ReadLatencies(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<double> v(data.size() / sizeof(double));
  memcpy(v.data(), data.data(), v.size() * sizeof(double));
  return v;
}

int RunDriver() {
  std::filesystem::remove_all(FLAGS_dir);
  std::filesystem::create_directories(FLAGS_dir);
  std::string peers;
  for (uint64_t id = 1; id <= 3; ++id) {
    absl::StrAppend(&peers, id == 1 ? "" : ",", id,
                    "=127.0.0.1:", ::marmot::testing::FreeLoopbackPort());
  }
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  for (uint64_t id = 1; id <= 3; ++id) nodes.push_back(std::make_unique<NodeProcess>(id, peers));
  for (auto& n : nodes) CHECK_EQ(n->Receive(), "ready");
  printf(
      "host_bench: 3 node processes on loopback, %d shards each, RocksDB log with fsync, %d "
      "proposals in flight per node, %s\n",
      FLAGS_shards, FLAGS_concurrency,
      FLAGS_pack ? "proposals queued together packed into one entry" : "one entry per proposal");

  if (FLAGS_idle_seconds > 0) {
    absl::SleepFor(absl::Seconds(2));  // let elections and the first snapshots settle
    std::vector<double> cpu0;
    for (auto& n : nodes) cpu0.push_back(n->CpuSeconds());
    absl::SleepFor(absl::Seconds(FLAGS_idle_seconds));
    printf("\nidle for %d s (target: under 1%% CPU and 64 MiB RSS per node)\n", FLAGS_idle_seconds);
    printf("  %-6s %10s %10s\n", "node", "CPU %", "RSS MiB");
    for (size_t i = 0; i < nodes.size(); ++i) {
      const double cpu = (nodes[i]->CpuSeconds() - cpu0[i]) / FLAGS_idle_seconds * 100;
      printf("  %-6llu %10.2f %10.1f\n", static_cast<unsigned long long>(nodes[i]->id()), cpu,
             nodes[i]->RssMiB().second);
    }
  }

  for (absl::string_view p : absl::StrSplit(FLAGS_payloads, ',', absl::SkipEmpty())) {
    int payload = 0;
    CHECK(absl::SimpleAtoi(p, &payload)) << "bad --payloads";
    std::vector<double> cpu0;
    for (auto& n : nodes) cpu0.push_back(n->CpuSeconds());
    const absl::Time start = absl::Now();
    for (auto& n : nodes) n->Send(absl::StrCat("load ", payload, " ", FLAGS_seconds));
    uint64_t ok = 0, failed = 0, fsyncs = 0;
    std::vector<double> latencies;
    struct PerNode {
      uint64_t ok, fsyncs, applied, entries;
      double cpu, peak_rss;
    };
    std::vector<PerNode> per_node;
    for (size_t i = 0; i < nodes.size(); ++i) {
      std::vector<std::string> w = absl::StrSplit(nodes[i]->Receive(), ' ');
      CHECK(w.size() == 7 && w[0] == "done") << "unexpected answer from node " << nodes[i]->id();
      PerNode pn{std::stoull(w[1]),
                 std::stoull(w[3]),
                 std::stoull(w[4]),
                 std::stoull(w[5]),
                 nodes[i]->CpuSeconds() - cpu0[i],
                 nodes[i]->RssMiB().first};
      ok += pn.ok;
      failed += std::stoull(w[2]);
      fsyncs += pn.fsyncs;
      per_node.push_back(pn);
      std::vector<double> l = ReadLatencies(w[6]);
      latencies.insert(latencies.end(), l.begin(), l.end());
    }
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double q) {
      return latencies.empty() ? 0.0
                               : latencies[static_cast<size_t>(q * (latencies.size() - 1))] / 1000;
    };
    printf("\n%d-byte payloads, %.1f s (target for 64 B: 200,000 proposals/s)\n", payload, secs);
    printf("  committed %llu proposals/s (%llu failed), commit latency p50 %.2f ms p99 %.2f ms\n",
           static_cast<unsigned long long>(ok / secs), static_cast<unsigned long long>(failed),
           pct(0.5), pct(0.99));
    printf("  %-6s %12s %12s %12s %14s %10s %12s\n", "node", "proposed/s", "applied/s", "entries/s",
           "fsyncs/entry", "CPU s", "peak RSS MiB");
    for (size_t i = 0; i < nodes.size(); ++i) {
      const PerNode& pn = per_node[i];
      printf("  %-6llu %12.0f %12.0f %12.0f %14.4f %10.2f %12.1f\n",
             static_cast<unsigned long long>(nodes[i]->id()), pn.ok / secs, pn.applied / secs,
             pn.entries / secs, pn.entries == 0 ? 0.0 : static_cast<double>(pn.fsyncs) / pn.entries,
             pn.cpu, pn.peak_rss);
    }
  }
  for (auto& n : nodes) n->Quit();
  std::filesystem::remove_all(FLAGS_dir);
  return 0;
}

}  // namespace
}  // namespace marmot::raft::host

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_minloglevel = 1;
  signal(SIGPIPE, SIG_IGN);
  return FLAGS_node > 0 ? marmot::raft::host::RunNode() : marmot::raft::host::RunDriver();
}
