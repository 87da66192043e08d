// A new node catching up with a large database (issue 22, "Large databases"): how long it takes
// per GiB and how much memory the sender and the newcomer hold meanwhile.
//
//   bazel build -c opt //:marmot //tools/bench:catchup_bench
//   bazel-bin/tools/bench/catchup_bench --marmot=bazel-bin/marmot --gib=1
//
// 1. Node 1's file is filled with --gib of rows (~200 bytes each) by SQLite directly.
// 2. Node 1 founds a one-node cluster from it (-seed): every row goes through its Raft logs.
//    Timed until its logs hold no pending row, its peak RSS sampled.
// 3. A snapshot of every shard is taken (TriggerSnapshot, timed), so that its Raft logs compact
//    and node 2 catches up from snapshots, as a new node of an older cluster does.
// 4. Node 2 starts from no file at all (-join), is added (AddNode), and receives the schema and
//    every row, mostly as streamed shard snapshots. Timed until its row count matches; node 1's
//    and node 2's resident memory is sampled every 100 ms meanwhile (and VmHWM read at the end).
#include <glog/logging.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gflags/gflags.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/subprocess.h"

DEFINE_string(marmot, "bazel-bin/marmot", "the marmot binary (build it with -c opt)");
DEFINE_string(dir, "/tmp/marmot-catchup-bench", "working folder (wiped first)");
DEFINE_double(gib, 1.0, "size of node 1's rows, GiB");
DEFINE_int32(shards, 16, "-shards of both nodes");
DEFINE_int32(snapshot_entries, 10000, "-snapshot-entries of node 1 while it seeds");
DEFINE_int32(catchup_snapshot_entries, 20,
             "-snapshot-entries of both nodes from the snapshots on: node 1 restarts with it, so "
             "that its logs compact to their last entries and node 2 installs snapshots");
DEFINE_int32(timeout_seconds, 3600, "give up waiting after this long per phase");

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRowBytes = 200;
constexpr char kAuth[] = "Basic YmVuY2g6YmVuY2g=";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  CHECK_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
}

int64_t Count(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    n = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), 0 when gone.
int64_t StatusKib(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1);
  }
  return 0;
}

int64_t Fill(const std::string& path, double gib) {
  const int64_t rows = static_cast<int64_t>(gib * (1 << 30) / kRowBytes);
  sqlite3* db = nullptr;
  CHECK_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  Exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;");
  Exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, payload TEXT)");
  sqlite3_stmt* ins = nullptr;
  CHECK_EQ(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, ?, ?)", -1, &ins, nullptr), SQLITE_OK);
  const std::string pad(kRowBytes - 24, 'p');
  for (int64_t id = 1; id <= rows;) {
    Exec(db, "BEGIN");
    for (int i = 0; i < 100000 && id <= rows; ++i, ++id) {
      const std::string payload = absl::StrCat(id, pad);
      sqlite3_bind_int64(ins, 1, id);
      sqlite3_bind_int64(ins, 2, id * 7);
      sqlite3_bind_text(ins, 3, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
      CHECK_EQ(sqlite3_step(ins), SQLITE_DONE) << sqlite3_errmsg(db);
      sqlite3_reset(ins);
    }
    Exec(db, "COMMIT");
  }
  sqlite3_finalize(ins);
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  return rows;
}

struct Node {
  int id = 0, port = 0, pane_port = 0;
  std::string db, raft;
  std::unique_ptr<marmot::testing::Subprocess> proc;
};

void Start(Node& n, const std::string& bootstrap, int snapshot_entries,
           const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      FLAGS_marmot,
      absl::StrCat("-node-id=", n.id),
      absl::StrCat("-bind=127.0.0.1:", n.port),
      absl::StrCat("-bind-pane=127.0.0.1:", n.pane_port),
      absl::StrCat("-bootstrap=", bootstrap),
      absl::StrCat("-shards=", FLAGS_shards),
      absl::StrCat("-snapshot-entries=", snapshot_entries),
      "-db-path=" + n.db,
      "-raft-path=" + n.raft,
  };
  args.insert(args.end(), extra.begin(), extra.end());
  setenv("AUTH_KEY", kAuth, 1);
  n.proc = std::make_unique<marmot::testing::Subprocess>(std::move(args), FLAGS_dir);
}

// Waits for `done`, sampling the peak VmRSS of `nodes` every 100 ms; the seconds it took, or a
// negative number after --timeout_seconds.
template <typename Done>
double WaitSampling(Done done, const std::vector<Node*>& nodes, std::vector<int64_t>& peak_kib) {
  peak_kib.assign(nodes.size(), 0);
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(FLAGS_timeout_seconds);
  int polls = 0;
  while (Clock::now() < deadline) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      const int64_t rss = StatusKib(nodes[i]->proc->pid(), "VmRSS");
      if (rss == 0) {  // Gone (a zombie has none).
        LOG(ERROR) << "node " << nodes[i]->id << " ended; see " << nodes[i]->proc->stderr_path();
        return -1;
      }
      peak_kib[i] = std::max(peak_kib[i], rss);
    }
    if (++polls % 10 == 0 && done()) return Seconds(Clock::now() - start);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  std::filesystem::remove_all(FLAGS_dir);
  std::filesystem::create_directories(FLAGS_dir);
  Node n1{.id = 1,
          .port = marmot::testing::FreeLoopbackPort(),
          .pane_port = marmot::testing::FreeLoopbackPort()};
  Node n2{.id = 2,
          .port = marmot::testing::FreeLoopbackPort(),
          .pane_port = marmot::testing::FreeLoopbackPort()};
  n1.db = FLAGS_dir + "/node-1.db";
  n1.raft = FLAGS_dir + "/raft-1";
  n2.db = FLAGS_dir + "/node-2.db";
  n2.raft = FLAGS_dir + "/raft-2";

  auto t0 = Clock::now();
  const int64_t rows = Fill(n1.db, FLAGS_gib);
  const double file_gib = static_cast<double>(std::filesystem::file_size(n1.db)) / (1 << 30);
  std::printf("filled node 1: %lld rows, file %.2f GiB, %.1f s\n", static_cast<long long>(rows),
              file_gib, Seconds(Clock::now() - t0));
  std::fflush(stdout);

  const std::string bootstrap1 = absl::StrCat("1@127.0.0.1:", n1.port);
  Start(n1, bootstrap1, FLAGS_snapshot_entries, {"-seed"});
  std::vector<int64_t> peak;
  // Every copied row shipped (the log keeps its newest row, marked shipped).
  const std::string log_rows =
      "SELECT count(*) FROM \"__marmot__t_change_log\" WHERE \"__marmot__state\" = 0";
  const double seeded = WaitSampling([&] { return Count(n1.db, log_rows) == 0; }, {&n1}, peak);
  CHECK_GE(seeded, 0) << "node 1 did not ship its rows; see " << n1.proc->stderr_path();
  std::printf("seeded a one-node cluster: %.1f s (%.0f rows/s), node 1 peak RSS %.0f MiB\n", seeded,
              rows / seeded, peak[0] / 1024.0);
  std::fflush(stdout);

  // A seed makes few entries per shard (thousands of rows each), fewer than a compaction keeps
  // (1,000, or -snapshot-entries if fewer): node 1 restarts with a small -snapshot-entries, so
  // that the snapshots below compact its logs and node 2 catches up from them.
  n1.proc->Stop(SIGTERM, std::chrono::seconds(30));
  Start(n1, bootstrap1, FLAGS_catchup_snapshot_entries, {});
  // One shard at a time: a snapshot of each shard reads the whole table (an error while node 1
  // starts, or a snapshot is still being taken; asked again, it answers once that one is done).
  const auto snapshot_start = Clock::now();
  for (int shard = 0; shard < FLAGS_shards; ++shard) {
    const std::string snapshot = absl::StrCat(
        "curl -sf -o /dev/null -m 60 -X POST -H 'Content-Type: application/json' -H "
        "'Authorization: ",
        kAuth, "' http://127.0.0.1:", n1.pane_port, "/v1/snapshots -d '{\"shard\": ", shard, "}'");
    int tries = 0;
    while (std::system(snapshot.c_str()) != 0) {
      CHECK_LT(++tries, 120) << "TriggerSnapshot failed; see " << n1.proc->stderr_path();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  std::printf("snapshot of every shard: %.1f s\n", Seconds(Clock::now() - snapshot_start));
  std::fflush(stdout);

  Start(n2, absl::StrCat("1@127.0.0.1:", n1.port, ",2@127.0.0.1:", n2.port),
        FLAGS_catchup_snapshot_entries, {"-join"});
  const std::string add = absl::StrCat(
      "curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -H 'Authorization: ",
      kAuth, "' http://127.0.0.1:", n1.pane_port, "/v1/nodes -d '{\"nodeId\": \"2\", ",
      "\"address\": \"127.0.0.1:", n2.port, "\"}'");
  const double cpu1 = marmot::testing::ProcessCpuSeconds(n1.proc->pid());
  bool added = false;
  for (int i = 0; i < 100 && !added; ++i) {
    added = std::system(add.c_str()) == 0;
    if (!added) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  CHECK(added) << "AddNode failed; see " << n1.proc->stderr_path();
  const std::string count = "SELECT count(*) FROM t";
  const double caught_up =
      WaitSampling([&] { return Count(n2.db, count) == rows; }, {&n1, &n2}, peak);
  CHECK_GE(caught_up, 0) << "node 2 did not catch up; see " << n2.proc->stderr_path();
  const double send_cpu = marmot::testing::ProcessCpuSeconds(n1.proc->pid()) - cpu1;
  const double recv_cpu = marmot::testing::ProcessCpuSeconds(n2.proc->pid());
  const int64_t hwm1 = StatusKib(n1.proc->pid(), "VmHWM"),
                hwm2 = StatusKib(n2.proc->pid(), "VmHWM");
  int installed = 0;  // Shard snapshots node 2 installed (each logs one line).
  {
    std::ifstream err(n2.proc->stderr_path());
    for (std::string line; std::getline(err, line);) {
      installed += line.find("installed a snapshot") != std::string::npos ? 1 : 0;
    }
  }
  double load = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    CHECK_EQ(std::fscanf(f, "%lf", &load), 1);
    std::fclose(f);
  }
  std::printf(
      "\nA new node catching up with %.2f GiB (%lld rows of ~%d B, %d shards), load average %.1f\n"
      "| measure | value |\n|---|---|\n"
      "| catch-up, s | %.1f |\n| s per GiB of file | %.1f |\n| rows/s | %.0f |\n"
      "| node 2 (newcomer) peak RSS, MiB (sampled / VmHWM) | %.0f / %.0f |\n"
      "| node 1 (sender) peak RSS during catch-up, MiB (sampled / VmHWM since start) | %.0f / %.0f "
      "|\n"
      "| CPU s: node 1 sending / node 2 receiving | %.1f / %.1f |\n"
      "| shard snapshots node 2 installed | %d of %d |\n",
      file_gib, static_cast<long long>(rows), kRowBytes, FLAGS_shards, load, caught_up,
      caught_up / file_gib, rows / caught_up, peak[1] / 1024.0, hwm2 / 1024.0, peak[0] / 1024.0,
      hwm1 / 1024.0, send_cpu, recv_cpu, installed, FLAGS_shards);
  n2.proc->Stop(SIGTERM, std::chrono::seconds(30));
  n1.proc->Stop(SIGTERM, std::chrono::seconds(30));
  return 0;
}
