// peer_bench: marmot side by side with dqlite and raw SQLite, on the workload dqlite-benchmark
// calls `kvwrite`: one worker writing `INSERT OR REPLACE INTO model (key, value)` with random
// 32-byte keys and 64-byte values, one row per transaction, for a fixed time.
//
//   raw SQLite   the same rows into one WAL-mode file, nothing else running: the limit.
//   marmot       3 marmot processes on loopback; the worker writes to node 1's file through the
//                SQLite C API (as an application does). Replicated rows/s = rows / time from
//                the first write until the last row is visible on ALL 3 nodes. Commit latency
//                is the application's local commit; replication lag is, for single probe rows
//                written after the run, the time until visible on all 3 nodes.
//   dqlite       3 `dqlite-benchmark` processes on loopback (Debian's go-dqlite), the driver on
//                the first (leader): its own figures from its result files (a write returns
//                once a quorum, 2 of 3, has it).
//
// Prints one table. `tools/dev bench` builds this with -c opt and runs it; BENCHMARKS.md has
// figures and what limits each one.
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/subprocess.h"

DEFINE_string(marmot, "", "marmot binary");
DEFINE_string(dqlite, "/usr/bin/dqlite-benchmark", "dqlite-benchmark binary ('' skips dqlite)");
DEFINE_string(dir, "/tmp/marmot-peer-bench", "work folder (wiped first)");
DEFINE_int32(seconds, 20, "duration of each write phase");
DEFINE_int32(key_size, 32, "key bytes");
DEFINE_int32(value_size, 64, "value bytes");
DEFINE_int32(shards, 16, "marmot -shards");
DEFINE_int32(probes, 50, "single rows timed until visible on every node");
DEFINE_int32(batch_rows, 100, "rows per transaction of the extra marmot phase (0 skips it)");

namespace marmot::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Figures {
  std::string system;
  int64_t rows = 0;
  double rows_per_s = 0;
  double p50_ms = 0, p99_ms = 0;  // commit latency
  std::string note;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

std::string RandomText(std::mt19937_64& rng, int n) {
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(n, ' ');
  for (char& c : s) c = kAlphabet[rng() % 36];
  return s;
}

sqlite3* Open(const std::string& path) {
  sqlite3* db = nullptr;
  CHECK_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  return db;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  CHECK_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
}

int64_t Count(const std::string& path) {
  sqlite3* db = Open(path);
  int64_t n = -1;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM model", -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    n = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return n;
}

constexpr char kSchema[] = "CREATE TABLE model (key TEXT PRIMARY KEY, value TEXT);";

// Writes rows for `seconds` into `path`, `rows_per_txn` per transaction; returns the commit
// latency of each transaction.
std::vector<double> WriteFor(const std::string& path, int seconds, uint64_t seed,
                             int rows_per_txn = 1) {
  sqlite3* db = Open(path);
  sqlite3_stmt* stmt = nullptr;
  CHECK_EQ(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO model (key, value) VALUES (?1, ?2)", -1,
                              &stmt, nullptr),
           SQLITE_OK);
  std::mt19937_64 rng(seed);
  std::vector<double> latencies;
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    auto t0 = Clock::now();
    if (rows_per_txn > 1) Exec(db, "BEGIN");
    int rc = SQLITE_DONE;
    for (int i = 0; i < rows_per_txn && rc == SQLITE_DONE; ++i) {
      std::string key = RandomText(rng, FLAGS_key_size), value = RandomText(rng, FLAGS_value_size);
      sqlite3_bind_text(stmt, 1, key.data(), key.size(), SQLITE_TRANSIENT);
      sqlite3_bind_text(stmt, 2, value.data(), value.size(), SQLITE_TRANSIENT);
      rc = sqlite3_step(stmt);
      sqlite3_reset(stmt);
    }
    if (rows_per_txn > 1) Exec(db, "COMMIT");
    auto t1 = Clock::now();
    if (rc == SQLITE_DONE) latencies.push_back(Ms(t1 - t0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return latencies;
}

Figures RawSqlite(const std::string& dir) {
  const std::string path = dir + "/raw.db";
  sqlite3* db = Open(path);
  Exec(db, std::string("PRAGMA journal_mode=WAL;") + kSchema);
  sqlite3_close(db);
  std::vector<double> lat = WriteFor(path, FLAGS_seconds, 1);
  Figures f{"raw SQLite (WAL, 1 file)"};
  f.rows = static_cast<int64_t>(lat.size());
  f.rows_per_s = f.rows / static_cast<double>(FLAGS_seconds);
  f.p50_ms = Percentile(lat, 0.5);
  f.p99_ms = Percentile(lat, 0.99);
  f.note = "local commit, synchronous=FULL (default)";
  return f;
}

std::vector<Figures> Marmot(const std::string& dir) {
  const int n = 3;
  std::vector<int> ports, panes;
  for (int i = 0; i < n; ++i) {
    ports.push_back(testing::FreeLoopbackPort());
    panes.push_back(testing::FreeLoopbackPort());
  }
  std::vector<std::string> members;
  for (int i = 0; i < n; ++i) members.push_back(absl::StrCat(i + 1, "@127.0.0.1:", ports[i]));
  auto db_path = [&](int i) { return absl::StrCat(dir, "/node-", i + 1, ".db"); };
  std::vector<std::unique_ptr<testing::Subprocess>> nodes;
  for (int i = 0; i < n; ++i) {
    sqlite3* db = Open(db_path(i));
    Exec(db, kSchema);
    sqlite3_close(db);
    nodes.push_back(std::make_unique<testing::Subprocess>(
        std::vector<std::string>{FLAGS_marmot, absl::StrCat("-node-id=", i + 1),
                                 absl::StrCat("-bind=127.0.0.1:", ports[i]),
                                 absl::StrCat("-bind-pane=127.0.0.1:", panes[i]),
                                 absl::StrCat("-bootstrap=", absl::StrJoin(members, ",")),
                                 absl::StrCat("-shards=", FLAGS_shards), "-db-path=" + db_path(i),
                                 absl::StrCat("-raft-path=", dir, "/raft-", i + 1)},
        dir));
  }
  for (int i = 0; i < n; ++i) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (nodes[i]->Stderr().find(" replicating ") == std::string::npos) {
      CHECK(Clock::now() < deadline)
          << "marmot node " << i + 1 << " did not start: " << nodes[i]->stderr_path();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // leaders elected

  const auto start = Clock::now();
  std::vector<double> lat = WriteFor(db_path(0), FLAGS_seconds, 2);
  const int64_t rows = static_cast<int64_t>(lat.size());
  Clock::time_point everywhere;
  while (true) {
    bool all = true;
    for (int i = 0; i < n && all; ++i) all = Count(db_path(i)) >= rows;
    if (all) {
      everywhere = Clock::now();
      break;
    }
    CHECK(Clock::now() - start < std::chrono::seconds(FLAGS_seconds + 600))
        << "rows never reached every node";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double total_s = Ms(everywhere - start) / 1000;

  // Replication lag of single rows on an idle cluster.
  std::vector<double> lags;
  {
    sqlite3* db = Open(db_path(0));
    std::vector<sqlite3*> readers;
    for (int i = 0; i < n; ++i) readers.push_back(Open(db_path(i)));
    for (int p = 0; p < FLAGS_probes; ++p) {
      const std::string key = absl::StrCat("probe-", p);
      auto t0 = Clock::now();
      Exec(db, absl::StrCat("INSERT INTO model VALUES ('", key, "', 'x')"));
      const std::string q = absl::StrCat("SELECT count(*) FROM model WHERE key = '", key, "'");
      for (int i = 0; i < n; ++i) {
        while (true) {
          sqlite3_stmt* stmt = nullptr;
          int64_t c = 0;
          if (sqlite3_prepare_v2(readers[i], q.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
              sqlite3_step(stmt) == SQLITE_ROW) {
            c = sqlite3_column_int64(stmt, 0);
          }
          sqlite3_finalize(stmt);
          if (c == 1) break;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
      lags.push_back(Ms(Clock::now() - t0));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (sqlite3* r : readers) sqlite3_close(r);
    sqlite3_close(db);
  }
  // Extra phase: the same rows, but the application commits `batch_rows` per transaction, so its
  // own fsync stops being the limit and the replication path shows its capacity.
  Figures batched{absl::StrCat("marmot: replicated, ", FLAGS_batch_rows, " rows/txn")};
  if (FLAGS_batch_rows > 1) {
    const int64_t before = Count(db_path(0));
    const auto t0 = Clock::now();
    std::vector<double> txn = WriteFor(db_path(0), FLAGS_seconds, 3, FLAGS_batch_rows);
    const int64_t target = Count(db_path(0));
    while (true) {
      bool all = true;
      for (int i = 0; i < n && all; ++i) all = Count(db_path(i)) >= target;
      if (all) break;
      CHECK(Clock::now() - t0 < std::chrono::seconds(FLAGS_seconds + 600))
          << "rows never reached every node";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const double s = Ms(Clock::now() - t0) / 1000;
    batched.rows = target - before;
    batched.rows_per_s = batched.rows / s;
    batched.p50_ms = Percentile(txn, 0.5);
    batched.p99_ms = Percentile(txn, 0.99);
    batched.note = absl::StrFormat(
        "not kvwrite: shows the replication path's capacity; latency = local commit of a %d-row "
        "txn",
        FLAGS_batch_rows);
  }
  for (auto& node : nodes) node->Stop(SIGTERM, std::chrono::seconds(6));

  Figures local{"marmot: local commit on node 1"};
  local.rows = rows;
  local.rows_per_s = rows / static_cast<double>(FLAGS_seconds);
  local.p50_ms = Percentile(lat, 0.5);
  local.p99_ms = Percentile(lat, 0.99);
  local.note = "what the application waits for (capture triggers included)";
  Figures replicated{"marmot: replicated on all 3"};
  replicated.rows = rows;
  replicated.rows_per_s = rows / total_s;
  replicated.p50_ms = Percentile(lags, 0.5);
  replicated.p99_ms = Percentile(lags, 0.99);
  replicated.note = absl::StrFormat(
      "last row on every node %.1f s after the first write; latency = lag of %d probe rows",
      total_s, FLAGS_probes);
  if (FLAGS_batch_rows > 1) return {local, replicated, batched};
  return {local, replicated};
}

Figures Dqlite(const std::string& dir) {
  Figures f{"dqlite (go-dqlite, 3 nodes)"};
  if (FLAGS_dqlite.empty() || !std::filesystem::exists(FLAGS_dqlite)) {
    f.note = "skipped: dqlite-benchmark not found (tools/dev bench installs go-dqlite)";
    return f;
  }
  std::vector<std::string> addrs;
  for (int i = 0; i < 3; ++i)
    addrs.push_back(absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort()));
  std::vector<std::unique_ptr<testing::Subprocess>> procs;
  const std::string results = dir + "/dqlite-1";
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> argv = {FLAGS_dqlite, "--db", addrs[i], "--dir",
                                     absl::StrCat(dir, "/dqlite-", i + 1)};
    if (i == 0) {
      argv.insert(argv.end(),
                  {"--driver", "--cluster", absl::StrJoin(addrs, ","), "--workload", "kvwrite",
                   "--workers", "1", "--duration", absl::StrCat(FLAGS_seconds), "--key-size",
                   absl::StrCat(FLAGS_key_size), "--value-size", absl::StrCat(FLAGS_value_size)});
    } else {
      argv.insert(argv.end(), {"--join", addrs[0]});
    }
    std::filesystem::create_directories(absl::StrCat(dir, "/dqlite-", i + 1));
    procs.push_back(std::make_unique<testing::Subprocess>(argv, dir));
    if (i == 0) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // The driver exits when its run is done.
  if (!procs[0]->Wait(std::chrono::seconds(FLAGS_seconds + 180)).has_value()) {
    procs[0]->Stop(SIGKILL, std::chrono::seconds(10));
  }
  for (size_t i = 1; i < procs.size(); ++i) procs[i]->Stop(SIGTERM, std::chrono::seconds(6));
  // Result files `<worker>-<query>-<time>` in `<dir>/<address>/results/`: a header (n, n_err,
  // avg, max, min), then "<timestamp ns> <latency ms>" per operation.
  std::vector<double> lat;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(results)) {
    if (!entry.is_regular_file() || entry.path().parent_path().filename() != "results") continue;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      double ns = 0, ms = 0;
      if (parts.size() == 2 && absl::SimpleAtod(parts[0], &ns) && absl::SimpleAtod(parts[1], &ms)) {
        lat.push_back(ms);
      }
    }
  }
  if (lat.empty()) {
    f.note = absl::StrCat("no results (see ", procs[0]->stderr_path(), ")");
    return f;
  }
  f.rows = static_cast<int64_t>(lat.size());
  f.rows_per_s = f.rows / static_cast<double>(FLAGS_seconds);
  f.p50_ms = Percentile(lat, 0.5);
  f.p99_ms = Percentile(lat, 0.99);
  f.note = "its result files; a write returns once a quorum (2 of 3) has it";
  return f;
}

int Main() {
  CHECK(!FLAGS_marmot.empty()) << "--marmot is required";
  std::filesystem::remove_all(FLAGS_dir);
  std::filesystem::create_directories(FLAGS_dir);
  std::vector<Figures> rows;
  fprintf(stderr, "peer_bench: raw SQLite, %d s\n", FLAGS_seconds);
  rows.push_back(RawSqlite(FLAGS_dir));
  fprintf(stderr, "peer_bench: dqlite, %d s\n", FLAGS_seconds);
  Figures dq = Dqlite(FLAGS_dir);
  fprintf(stderr, "peer_bench: marmot, %d s\n", FLAGS_seconds);
  std::vector<Figures> ours_rows = Marmot(FLAGS_dir);
  rows.insert(rows.end(), ours_rows.begin(), ours_rows.begin() + 2);
  rows.push_back(dq);
  if (ours_rows.size() > 2) rows.push_back(ours_rows[2]);

  const Figures& raw = rows[0];
  const Figures& ours = rows[2];
  printf(
      "\nkvwrite: 1 worker, %d-byte keys, %d-byte values, 1 row per transaction, %d s per system, "
      "3 nodes on loopback\n\n",
      FLAGS_key_size, FLAGS_value_size, FLAGS_seconds);
  printf("| %-32s | %8s | %9s | %9s | %9s | %s |\n", "system", "rows", "rows/s", "p50 ms", "p99 ms",
         "what is measured");
  printf("|%s|%s|%s|%s|%s|%s|\n", std::string(34, '-').c_str(), std::string(10, '-').c_str(),
         std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(11, '-').c_str(),
         std::string(18, '-').c_str());
  for (const Figures& f : rows) {
    printf("| %-32s | %8lld | %9.0f | %9.3f | %9.3f | %s |\n", f.system.c_str(),
           static_cast<long long>(f.rows), f.rows_per_s, f.p50_ms, f.p99_ms, f.note.c_str());
  }
  printf("\n");
  if (dq.rows_per_s > 0)
    printf("marmot replicated / dqlite:      %.2fx rows/s\n", ours.rows_per_s / dq.rows_per_s);
  printf("marmot replicated / raw SQLite:  %.2fx rows/s\n", ours.rows_per_s / raw.rows_per_s);
  if (ours_rows.size() > 2 && dq.rows_per_s > 0) {
    printf("(marmot replicated with %d rows/txn / dqlite: %.2fx rows/s; not the same workload)\n",
           FLAGS_batch_rows, ours_rows[2].rows_per_s / dq.rows_per_s);
  }
  return 0;
}

}  // namespace
}  // namespace marmot::bench

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  return marmot::bench::Main();
}
