// host_bench: proposals/s and commit latency of 3 NodeHosts in one process over loopback gRPC.
//
// Every proposal goes to the current leader of its shard (round robin over shards; with
// --via=any to each node in turn, followers forwarding to the leader); the
// latency is from Propose() to its callback, i.e. committed by a quorum (fsynced there) and
// applied on the leader. `--concurrency` proposals are kept in flight.
//
//   bazel run -c opt //tools/bench:host_bench -- --seconds=10 --concurrency=256
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "raft/host/node_host.h"

DEFINE_int32(shards, 16, "shards per node");
DEFINE_int32(concurrency, 256, "proposals in flight");
DEFINE_int32(seconds, 10, "measured duration");
DEFINE_int32(payload, 64, "payload bytes");
DEFINE_string(via, "leader", "propose through the shard's leader, or 'any' node (followers forward)");
DEFINE_string(dir, "/tmp/marmot-host-bench", "raft folders (wiped before and after)");

namespace marmot::raft::host {
namespace {

class CountingStateMachine : public StateMachine {
 public:
  uint64_t Open() override { return 0; }
  void Apply(const std::vector<AppliedEntry>& entries) override { applied_ += entries.size(); }
  absl::StatusOr<std::string> SaveSnapshot() override { return std::to_string(applied_); }
  absl::Status RecoverFromSnapshot(uint64_t, const std::string&) override {
    return absl::OkStatus();
  }

 private:
  uint64_t applied_ = 0;
};

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

int Run() {
  std::filesystem::remove_all(FLAGS_dir);
  std::map<uint64_t, std::string> peers;
  for (uint64_t id = 1; id <= 3; ++id) peers[id] = absl::StrCat("127.0.0.1:", FreePort());
  std::map<uint64_t, std::unique_ptr<NodeHost>> hosts;
  for (uint64_t id = 1; id <= 3; ++id) {
    NodeHostConfig c;
    c.node_id = id;
    c.bind_address = peers[id];
    c.raft_path = absl::StrCat(FLAGS_dir, "/node-", id);
    c.shards = FLAGS_shards;
    c.peers = peers;
    auto h = NodeHost::Start(c, [](uint64_t) { return std::make_unique<CountingStateMachine>(); });
    CHECK(h.ok()) << h.status();
    hosts[id] = std::move(*h);
  }
  // Wait for every shard's leader.
  std::vector<uint64_t> leader(FLAGS_shards, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (int s = 0; s < FLAGS_shards; ++s) {
    while (absl::Now() < deadline) {
      for (auto& [id, h] : hosts) {
        if (h->GetShardInfo(s).is_leader) leader[s] = id;
      }
      // Every node must know it, or followers drop forwarded proposals ("no leader").
      bool known = leader[s] != 0;
      for (auto& [id, h] : hosts) known = known && h->GetShardInfo(s).leader == leader[s];
      if (known) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    CHECK_NE(leader[s], 0u) << "no leader for shard " << s;
  }

  std::mutex mu;
  std::condition_variable cv;
  int inflight = 0;
  uint64_t ok = 0, failed = 0;
  std::map<std::string, uint64_t> failures;
  std::vector<double> latencies_us;
  latencies_us.reserve(1 << 20);
  const std::string payload(FLAGS_payload, 'x');
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(FLAGS_seconds);
  uint64_t n = 0;
  while (absl::Now() < end) {
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return inflight < FLAGS_concurrency; });
      ++inflight;
    }
    const int s = n++ % FLAGS_shards;
    const absl::Time t0 = absl::Now();
    const uint64_t via = FLAGS_via == "any" ? 1 + (n / FLAGS_shards) % 3 : leader[s];
    hosts[via]->Propose(s, payload, [&, t0](absl::Status st, uint64_t) {
      const double us = absl::ToDoubleMicroseconds(absl::Now() - t0);
      std::lock_guard<std::mutex> l(mu);
      if (st.ok()) {
        ++ok;
        latencies_us.push_back(us);
      } else {
        ++failed;
        ++failures[std::string(st.message())];
      }
      --inflight;
      cv.notify_one();
    });
  }
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return inflight == 0; });
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) {
    return latencies_us.empty() ? 0.0 : latencies_us[static_cast<size_t>(p * (latencies_us.size() - 1))];
  };
  printf("host_bench: 3 NodeHosts, %d shards, %d-byte payloads, %d in flight, via %s, %.1f s\n",
         FLAGS_shards, FLAGS_payload, FLAGS_concurrency, FLAGS_via.c_str(), secs);
  printf("  committed %llu proposals (%llu failed): %.0f proposals/s\n",
         static_cast<unsigned long long>(ok), static_cast<unsigned long long>(failed), ok / secs);
  for (const auto& [code, count] : failures) {
    printf("  failed with %s: %llu\n", code.c_str(), static_cast<unsigned long long>(count));
  }
  printf("  commit latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", pct(0.5) / 1000,
         pct(0.99) / 1000, pct(1.0) / 1000);
  for (auto& [id, h] : hosts) h->Stop();
  std::filesystem::remove_all(FLAGS_dir);
  return 0;
}

}  // namespace
}  // namespace marmot::raft::host

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_minloglevel = 1;
  return marmot::raft::host::Run();
}
