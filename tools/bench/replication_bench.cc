// replication_bench: end-to-end figures of 3 real `marmot` processes on loopback.
//
//   (a) throughput: rows of ~100 bytes in 1,000-row transactions on node 1 (and spread over all
//       nodes), rows/s until every node holds every row; baselines in the same run: raw SQLite
//       inserts without and with marmot's capture triggers (no marmot process).
//   (b) latency: 1,000 single-row writes/s on node 1, time until each row is visible on nodes 2
//       and 3 (pollers read both databases continuously); then lone writes, 5/s, each one alone
//       on an otherwise idle cluster.
//   (c) app overhead: the writer's insert rate on node 1 while marmot runs, against raw SQLite;
//       once with every process sharing every CPU (all three nodes on the application's machine)
//       and once closer to a deployment, where the application's machine runs one marmot and
//       nodes 2 and 3 are other machines: the writer alone on CPU 0, the marmot processes on the
//       other CPUs, nodes 2 and 3 there with SCHED_IDLE (they run when node 1 leaves CPU time;
//       --followers_idle=false shares it equally). That run also prints how fast marmot
//       replicated meanwhile, so a marmot starved into doing nothing would show. The baselines
//       and this run go in --rounds rounds (raw, triggers only, with marmot), each figure the
//       median of its rounds; every round is printed too.
//       Then once more right after node 1 restarted with --restart_rows rows written while it
//       was down: the writer runs while node 1 ships that backlog.
//   (d) catch-up: a new node (-join, then AddNode over REST) receiving every row of the cluster.
//   idle: first of all, CPU % (utime + stime from /proc) and RSS of every node over
//       --idle_seconds with nothing written, right after the cluster is ready; beside it the
//       bare multi-Raft host's idle figure (host_bench, same shards, run before the cluster
//       starts). --idle_only runs that and the lone writes of (b), nothing else.
//
//   bazel build -c opt //:marmot //tools/bench:replication_bench //tools/bench:host_bench
//   bazel-bin/tools/bench/replication_bench --marmot=bazel-bin/marmot --rows=200000
//   bazel-bin/tools/bench/replication_bench --marmot=bazel-bin/marmot --idle_only
//
// Everything runs in --dir (wiped before; kept afterwards with the nodes' logs, proc-*.err, for
// inspection).
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/subprocess.h"

DEFINE_string(marmot, "bazel-bin/marmot", "the marmot binary (build it with -c opt)");
DEFINE_string(dir, "/tmp/marmot-replication-bench", "working folder (wiped first)");
DEFINE_int32(shards, 16, "-shards of every node");
DEFINE_int64(rows, 200000, "rows per throughput run (a) and per baseline");
DEFINE_int32(txn_rows, 1000, "rows per writer transaction");
DEFINE_int32(latency_seconds, 5, "duration of the latency run (b) at --latency_rate");
DEFINE_int32(latency_rate, 1000, "single-row writes per second in (b)");
DEFINE_int32(lone_writes, 25, "lone writes in (b), 5 per second");
DEFINE_int64(catchup_rows, 1000000, "rows the cluster holds when the new node joins (d); 0 skips");
DEFINE_int32(timeout_seconds, 300, "give up waiting for replication after this long");
DEFINE_int32(rounds, 5,
             "rounds of the baselines and of (c) on its own core; the median is reported");
DEFINE_int64(restart_rows, 200000,
             "(c) once more after node 1 restarts with this many rows written meanwhile; 0 skips");
DEFINE_bool(spread, true, "also run (a) with a writer on every node");
DEFINE_bool(own_core, true, "also run (c) with the writer alone on CPU 0 (needs 2 or more CPUs)");
DEFINE_bool(followers_idle, true,
            "in that run, nodes 2 and 3 get only CPU time node 1 leaves (SCHED_IDLE)");
DEFINE_int32(idle_seconds, 20,
             "idle phase: CPU and RSS of every node over this long, nothing written (0 skips)");
DEFINE_int32(idle_settle_seconds, 5,
             "idle phase: wait this long after the cluster is ready before measuring");
DEFINE_bool(idle_only, false, "run only the idle phase and the lone writes of (b)");
DEFINE_string(host_bench, "bazel-bin/tools/bench/host_bench",
              "the bare multi-Raft host's idle figure beside the idle phase (host_bench with no "
              "load phase, run before the cluster starts); empty or missing skips it");
DEFINE_string(host_bench_flags, "--tick_ms=200 --heartbeat_ticks=2 --election_ticks=6",
              "host_bench's Raft timing, space-separated: marmot's (replicator.cc)");

namespace marmot::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, payload TEXT NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS lat (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);";

// ~100 bytes a row: an 8-byte key, an integer and an 88-character text.
std::string Payload(int64_t id) {
  std::string p = absl::StrCat("row-", id, "-");
  while (p.size() < 88) p.push_back(static_cast<char>('a' + (id + p.size()) % 26));
  return p;
}

sqlite3* OpenDb(const std::string& path) {
  sqlite3* db = nullptr;
  CHECK_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK) << path;
  sqlite3_busy_timeout(db, 10000);
  return db;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  CHECK_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << err;
}

int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  CHECK_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_BUSY)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK_EQ(rc, SQLITE_ROW) << sql << ": " << sqlite3_errmsg(db);
  int64_t v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

// CPU affinity for the (c) run on its own core. Threads a process starts later inherit the
// affinity of the thread that starts them, so pinning every current thread pins the process.
cpu_set_t CpuSet(bool cpu0, bool others) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  for (int cpu = 0; cpu < n; ++cpu) {
    if (cpu == 0 ? cpu0 : others) CPU_SET(cpu, &set);
  }
  return set;
}

// Sets the CPUs and the scheduling policy (SCHED_OTHER or SCHED_IDLE) of every thread of `pid`.
void PlaceProcess(pid_t pid, const cpu_set_t& set, int policy) {
  const sched_param param{.sched_priority = 0};
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
    const pid_t tid = static_cast<pid_t>(std::stol(task.path().filename().string()));
    // ESRCH: the thread ended meanwhile.
    if (sched_setaffinity(tid, sizeof set, &set) != 0 && errno != ESRCH) {
      PLOG(WARNING) << "sched_setaffinity " << tid;
    }
    if (sched_setscheduler(tid, policy, &param) != 0 && errno != ESRCH) {
      PLOG(WARNING) << "sched_setscheduler " << tid;
    }
  }
}

// Inserts ids [first, first + count) into `t` in transactions of --txn_rows, on CPU 0 alone
// when `cpu0_only`; returns rows/s.
double InsertRows(const std::string& path, int64_t first, int64_t count, bool cpu0_only = false) {
  cpu_set_t before;
  CHECK_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  if (cpu0_only) {
    const cpu_set_t only0 = CpuSet(true, false);
    CHECK_EQ(sched_setaffinity(0, sizeof only0, &only0), 0);
  }
  sqlite3* db = OpenDb(path);
  sqlite3_stmt* ins = nullptr;
  CHECK_EQ(
      sqlite3_prepare_v2(db, "INSERT INTO t (id, n, payload) VALUES (?, ?, ?)", -1, &ins, nullptr),
      SQLITE_OK);
  const auto start = Clock::now();
  for (int64_t done = 0; done < count;) {
    Exec(db, "BEGIN IMMEDIATE");
    for (int i = 0; i < FLAGS_txn_rows && done < count; ++i, ++done) {
      const int64_t id = first + done;
      std::string p = Payload(id);
      sqlite3_bind_int64(ins, 1, id);
      sqlite3_bind_int64(ins, 2, id * 7);
      sqlite3_bind_text(ins, 3, p.data(), static_cast<int>(p.size()), SQLITE_TRANSIENT);
      CHECK_EQ(sqlite3_step(ins), SQLITE_DONE) << sqlite3_errmsg(db);
      sqlite3_reset(ins);
    }
    Exec(db, "COMMIT");
  }
  const double secs = Seconds(Clock::now() - start);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  if (cpu0_only) CHECK_EQ(sched_setaffinity(0, sizeof before, &before), 0);
  return static_cast<double>(count) / secs;
}

struct Node {
  int id = 0;
  int port = 0, pane_port = 0;  // pane_port: gRPC and REST
  std::string db, raft;
  std::unique_ptr<::marmot::testing::Subprocess> proc;  // null when not running
  std::string log() const { return proc ? proc->stderr_path() : "(not running)"; }
};

class Cluster {
 public:
  explicit Cluster(std::string dir) : dir_(std::move(dir)) {}
  ~Cluster() {
    for (Node& n : nodes_) Stop(n);
  }

  Node& Add() {
    Node n;
    n.id = static_cast<int>(nodes_.size()) + 1;
    n.port = ::marmot::testing::FreeLoopbackPort();
    n.pane_port = ::marmot::testing::FreeLoopbackPort();
    n.db = absl::StrCat(dir_, "/node-", n.id, ".db");
    n.raft = absl::StrCat(dir_, "/raft-", n.id);
    sqlite3* db = OpenDb(n.db);
    Exec(db, kSchema);
    sqlite3_close(db);
    nodes_.push_back(std::move(n));
    return nodes_.back();
  }

  void Start(Node& n, const std::string& bootstrap, bool join) {
    std::vector<std::string> args = {
        FLAGS_marmot,
        absl::StrCat("-node-id=", n.id),
        absl::StrCat("-bind=127.0.0.1:", n.port),
        absl::StrCat("-bind-pane=127.0.0.1:", n.pane_port),
        absl::StrCat("-bootstrap=", bootstrap),
        absl::StrCat("-shards=", FLAGS_shards),
        "-db-path=" + n.db,
        "-raft-path=" + n.raft,
    };
    if (join) args.push_back("-join");
    setenv("AUTH_KEY", kAuth, 1);  // the REST API's credentials, inherited by the node
    n.proc = std::make_unique<::marmot::testing::Subprocess>(std::move(args), dir_);
  }

  std::string Members() const {
    std::string s;
    for (const Node& n : nodes_)
      absl::StrAppend(&s, s.empty() ? "" : ",", n.id, "@127.0.0.1:", n.port);
    return s;
  }

  // Waits until the node answers /readyz with 200 (every shard has a leader, caught up).
  void WaitReady(const Node& n) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      std::string cmd =
          absl::StrCat("curl -sf -o /dev/null http://127.0.0.1:", n.pane_port, "/readyz");
      if (std::system(cmd.c_str()) == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    LOG(FATAL) << "node " << n.id << " not ready within 60 s; see " << n.log();
  }

  bool AddNode(const Node& leader_side, const Node& joining) {
    std::string cmd = absl::StrCat(
        "curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -H 'Authorization: ",
        kAuth, "' http://127.0.0.1:", leader_side.pane_port, "/v1/nodes -d '{\"nodeId\": \"",
        joining.id, "\", \"address\": \"127.0.0.1:", joining.port, "\"}'");
    return std::system(cmd.c_str()) == 0;
  }

  void Stop(Node& n) {
    if (n.proc == nullptr) return;
    n.proc->Stop(SIGTERM, std::chrono::seconds(30));
    n.proc.reset();
  }

  std::vector<Node>& nodes() { return nodes_; }

  static constexpr char kAuth[] = "Basic YmVuY2g6YmVuY2g=";

 private:
  std::string dir_;
  std::vector<Node> nodes_;
};

// Waits until `count_sql` returns `want` on every listed database; returns the time it
// happened (polled every 20 ms), or nothing after --timeout_seconds.
std::optional<Clock::time_point> WaitForCount(const std::vector<std::string>& dbs,
                                              const std::string& count_sql, int64_t want) {
  std::vector<sqlite3*> conns;
  for (const std::string& p : dbs) conns.push_back(OpenDb(p));
  std::vector<bool> done(dbs.size(), false);
  const auto deadline = Clock::now() + std::chrono::seconds(FLAGS_timeout_seconds);
  std::optional<Clock::time_point> result;
  while (Clock::now() < deadline) {
    bool all = true;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (!done[i]) done[i] = QueryInt(conns[i], count_sql) >= want;
      all = all && done[i];
    }
    if (all) {
      result = Clock::now();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (sqlite3* c : conns) sqlite3_close(c);
  if (!result) {
    std::string counts;
    for (const std::string& p : dbs) {
      sqlite3* c = OpenDb(p);
      absl::StrAppend(&counts, " ", QueryInt(c, count_sql));
      sqlite3_close(c);
    }
    LOG(ERROR) << "timed out waiting for " << want << " from `" << count_sql << "`; have" << counts;
  }
  return result;
}

// Writes `total` single-row transactions with ids from `first` on node 1 at `rate` per second;
// returns, for nodes 2 and 3, the time from each local commit until the row was seen there (ms).
std::vector<double> MeasureLatency(const std::vector<std::string>& dbs, int64_t first, int total,
                                   int rate) {
  std::vector<Clock::time_point> written(total + 1);  // by id - first + 1
  std::vector<std::atomic<bool>> is_written(total + 1);
  std::mutex mu;
  std::vector<double> latencies_ms;
  auto poll = [&](const std::string& path) {
    sqlite3* db = OpenDb(path);
    sqlite3_stmt* q = nullptr;
    CHECK_EQ(sqlite3_prepare_v2(db, "SELECT id FROM lat WHERE id >= ?", -1, &q, nullptr),
             SQLITE_OK);
    std::vector<bool> seen(total + 1, false);
    int64_t low = first;
    int seen_count = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(total / rate + 30);
    std::vector<double> mine;
    while (seen_count < total && Clock::now() < deadline) {
      sqlite3_bind_int64(q, 1, low);
      int rc;
      std::vector<int64_t> ids;
      while ((rc = sqlite3_step(q)) == SQLITE_ROW) ids.push_back(sqlite3_column_int64(q, 0));
      sqlite3_reset(q);
      const auto now = Clock::now();
      for (int64_t id : ids) {
        const int64_t k = id - first + 1;
        if (k < 1 || k > total || seen[k]) continue;
        while (!is_written[k].load()) std::this_thread::yield();  // Commit time not yet stored.
        seen[k] = true;
        ++seen_count;
        mine.push_back(std::chrono::duration<double, std::milli>(now - written[k]).count());
      }
      while (low < first + total && seen[low - first + 1]) ++low;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    std::lock_guard<std::mutex> lock(mu);
    latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    if (seen_count < total) LOG(ERROR) << path << ": saw only " << seen_count << " of " << total;
  };
  std::thread p2(poll, dbs[1]), p3(poll, dbs[2]);
  {
    sqlite3* db = OpenDb(dbs[0]);
    sqlite3_stmt* ins = nullptr;
    CHECK_EQ(
        sqlite3_prepare_v2(db, "INSERT INTO lat (id, payload) VALUES (?, ?)", -1, &ins, nullptr),
        SQLITE_OK);
    const auto start = Clock::now();
    const auto period = std::chrono::nanoseconds(1000000000LL / rate);
    for (int k = 1; k <= total; ++k) {
      std::this_thread::sleep_until(start + period * (k - 1));
      const int64_t id = first + k - 1;
      std::string p = Payload(id);
      sqlite3_bind_int64(ins, 1, id);
      sqlite3_bind_text(ins, 2, p.data(), static_cast<int>(p.size()), SQLITE_TRANSIENT);
      CHECK_EQ(sqlite3_step(ins), SQLITE_DONE) << sqlite3_errmsg(db);
      sqlite3_reset(ins);
      written[k] = Clock::now();
      is_written[k].store(true);
    }
    const double achieved = total / Seconds(Clock::now() - start);
    fprintf(stderr, "(b) wrote %d single-row transactions at %.0f/s\n", total, achieved);
    sqlite3_finalize(ins);
    sqlite3_close(db);
  }
  p2.join();
  p3.join();
  return latencies_ms;
}

struct Row {
  std::string what, value, baseline, ratio, target;
};

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Context switches of every thread of `pid` so far (voluntary and not): its wakeups, a figure
// that the machine's load moves much less than CPU time.
int64_t ContextSwitches(pid_t pid) {
  int64_t switches = 0;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream f(task.path() / "status");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
          line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
        switches += std::stoll(line.substr(line.find(':') + 1));
      }
    }
  }
  return switches;
}

// The resident set of `pid` now, MiB.
double RssMiB(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

// The first three fields of /proc/loadavg: the load the figures were taken under.
std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string one, five, fifteen;
  f >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

// The bare host's idle CPU % and RSS MiB per node: host_bench's idle table ("  <node> <cpu>
// <rss>" after its "idle for" line), or nothing when it is missing or failed.
std::optional<std::vector<std::pair<double, double>>> HostIdle() {
  if (FLAGS_host_bench.empty() || !std::filesystem::exists(FLAGS_host_bench)) return std::nullopt;
  std::vector<std::string> argv = {
      FLAGS_host_bench, absl::StrCat("--idle_seconds=", FLAGS_idle_seconds),
      "--payloads=", absl::StrCat("--shards=", FLAGS_shards), "--dir=" + FLAGS_dir + "/host-bench"};
  for (absl::string_view flag : absl::StrSplit(FLAGS_host_bench_flags, ' ', absl::SkipEmpty())) {
    argv.emplace_back(flag);
  }
  const ::marmot::testing::RunResult r =
      ::marmot::testing::Run(std::move(argv), std::chrono::seconds(FLAGS_idle_seconds + 120));
  if (r.exit_code != 0) {
    LOG(ERROR) << "host_bench failed (" << r.exit_code << "): " << r.err;
    return std::nullopt;
  }
  std::vector<std::pair<double, double>> nodes;
  std::istringstream out(r.out);
  std::string line;
  bool in_table = false;
  while (std::getline(out, line)) {
    if (line.rfind("idle for", 0) == 0) in_table = true;
    std::istringstream fields(line);
    int node = 0;
    double cpu = 0, rss = 0;
    if (in_table && fields >> node >> cpu >> rss) nodes.emplace_back(cpu, rss);
  }
  if (nodes.empty()) return std::nullopt;
  return nodes;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int Run() {
  std::filesystem::remove_all(FLAGS_dir);
  std::filesystem::create_directories(FLAGS_dir);
  CHECK(std::filesystem::exists(FLAGS_marmot)) << "no marmot binary at " << FLAGS_marmot;
  std::vector<Row> table;

  const bool own_core = FLAGS_own_core && std::thread::hardware_concurrency() >= 2;
  std::optional<std::vector<std::pair<double, double>>> host_idle;
  if (FLAGS_idle_seconds > 0) {
    fprintf(stderr, "bare host idle (host_bench), load average %s\n", LoadAverage().c_str());
    host_idle = HostIdle();
  }
  Cluster cluster(FLAGS_dir);
  for (int i = 0; i < 3; ++i) cluster.Add();
  const std::string members = cluster.Members();
  for (Node& n : cluster.nodes()) cluster.Start(n, members, false);
  for (Node& n : cluster.nodes()) cluster.WaitReady(n);
  fprintf(stderr, "cluster of 3 ready\n");
  std::vector<std::string> dbs;
  for (Node& n : cluster.nodes()) dbs.push_back(n.db);
  int64_t next_id = 1;

  // Idle: nothing written yet; what every node costs a machine while its application only reads.
  if (FLAGS_idle_seconds > 0) {
    std::this_thread::sleep_for(std::chrono::seconds(FLAGS_idle_settle_seconds));
    const std::string load = LoadAverage();
    std::vector<double> cpu;
    std::vector<int64_t> switches;
    for (Node& n : cluster.nodes()) {
      cpu.push_back(::marmot::testing::ProcessCpuSeconds(n.proc->pid()));
      switches.push_back(ContextSwitches(n.proc->pid()));
    }
    const auto start = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(FLAGS_idle_seconds));
    const double secs = Seconds(Clock::now() - start);
    fprintf(stderr, "idle for %.1f s, load average %s at the start, %s at the end\n", secs,
            load.c_str(), LoadAverage().c_str());
    for (size_t i = 0; i < cluster.nodes().size(); ++i) {
      const Node& n = cluster.nodes()[i];
      const double pct =
          (::marmot::testing::ProcessCpuSeconds(n.proc->pid()) - cpu[i]) / secs * 100;
      const double rss = RssMiB(n.proc->pid());
      // Threads that ended meanwhile take their switches with them: a lower bound.
      const double wakeups =
          static_cast<double>(ContextSwitches(n.proc->pid()) - switches[i]) / secs;
      std::string host;
      if (host_idle && i < host_idle->size()) {
        host = Fmt("%.2f %% bare host", (*host_idle)[i].first);
      }
      fprintf(stderr, "idle node %d: CPU %.2f %%, RSS %.1f MiB, %.0f context switches/s%s%s\n",
              n.id, pct, rss, wakeups, host.empty() ? "" : "; ", host.c_str());
      table.push_back({absl::StrCat("idle CPU %, node ", n.id, ", ", FLAGS_idle_seconds, " s"),
                       Fmt("%.2f", pct), host, "", "< 0.5"});
      table.push_back(
          {absl::StrCat("idle RSS MiB, node ", n.id), Fmt("%.1f", rss),
           host_idle && i < host_idle->size() ? Fmt("%.1f bare host", (*host_idle)[i].second) : "",
           "", ""});
      table.push_back(
          {absl::StrCat("idle context switches/s, node ", n.id), Fmt("%.0f", wakeups), "", "", ""});
    }
  }

  if (!FLAGS_idle_only) {
    // Baselines: the same writer on plain files, without and with capture triggers. One burst of
    // --rows moves by 20 % between runs on a shared machine: --rounds rounds, each a raw and a
    // triggers-only run on fresh files and (c) on its own core right after them, so that the
    // machine's drift reaches all three alike; the median of each is kept. The idle cluster stays
    // off CPU 0 meanwhile.
    auto baseline = [&](bool capture, int round) {
      const std::string path =
          absl::StrCat(FLAGS_dir, "/baseline-", capture ? "capture" : "raw", "-", round, ".db");
      sqlite3* db = OpenDb(path);
      Exec(db, "PRAGMA journal_mode=WAL");
      Exec(db, kSchema);
      sqlite3_close(db);
      if (capture) {
        absl::StatusOr<sqlite::Database> d = sqlite::Database::Open(path);
        CHECK(d.ok()) << d.status();
        absl::StatusOr<sqlite::CaptureReport> r = sqlite::InstallCapture(*d);
        CHECK(r.ok()) << r.status();
      }
      const double rate = InsertRows(path, 1, FLAGS_rows, own_core);
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
      return rate;
    };
    // (c) on its own core: the writer on CPU 0, every marmot process on the other CPUs, followers
    // idle-scheduled there. Returns the writer's rate.
    // Every marmot off CPU 0, the followers idle-scheduled there.
    auto place_own_core = [&] {
      for (Node& n : cluster.nodes()) {
        PlaceProcess(n.proc->pid(), CpuSet(false, true),
                     n.id != 1 && FLAGS_followers_idle ? SCHED_IDLE : SCHED_OTHER);
      }
    };
    auto own_core_run = [&] {
      const int64_t first = next_id;
      place_own_core();
      const auto start = Clock::now();
      const double rate = InsertRows(dbs[0], first, FLAGS_rows, true);
      next_id += FLAGS_rows;
      auto end = WaitForCount(
          dbs, absl::StrCat("SELECT count(*) FROM t WHERE id >= ", first, " AND id < ", next_id),
          FLAGS_rows);
      fprintf(stderr, "(c) writer alone on CPU 0: app %.0f rows/s, replicated %.0f rows/s\n", rate,
              end ? FLAGS_rows / Seconds(*end - start) : 0.0);
      return rate;
    };
    std::vector<double> raw_rates, cap_rates, own_core_rates;
    CHECK_GE(FLAGS_rounds, 1) << "--rounds";
    for (int round = 0; round < FLAGS_rounds; ++round) {
      for (Node& n : cluster.nodes())
        PlaceProcess(n.proc->pid(), CpuSet(!own_core, true), SCHED_OTHER);
      raw_rates.push_back(baseline(false, round));
      cap_rates.push_back(baseline(true, round));
      if (own_core) own_core_rates.push_back(own_core_run());
      fprintf(stderr, "round %d: raw %.0f, triggers only %.0f (%.3fx raw)", round + 1,
              raw_rates.back(), cap_rates.back(), cap_rates.back() / raw_rates.back());
      if (own_core) {
        fprintf(stderr, ", (c) alone on CPU 0 %.0f (%.3fx raw, %.3fx triggers only)",
                own_core_rates.back(), own_core_rates.back() / raw_rates.back(),
                own_core_rates.back() / cap_rates.back());
      }
      fprintf(stderr, "\n");
    }
    const double raw_rate = Percentile(raw_rates, 0.5), cap_rate = Percentile(cap_rates, 0.5);
    fprintf(stderr, "baseline (median of %d): raw %.0f rows/s, with capture triggers %.0f rows/s\n",
            FLAGS_rounds, raw_rate, cap_rate);
    // (c) after a restart: node 1's marmot stops, its application writes --restart_rows rows, the
    // marmot starts again, and the writer runs alone on CPU 0 while node 1 ships that backlog.
    double restart_rate = 0;
    if (own_core && FLAGS_restart_rows > 0) {
      Node& n1 = cluster.nodes()[0];
      CHECK_EQ(n1.proc->Stop(SIGTERM, std::chrono::seconds(30)), 0) << n1.log();
      const int64_t backlog_first = next_id;
      InsertRows(dbs[0], backlog_first, FLAGS_restart_rows, true);
      next_id += FLAGS_restart_rows;
      cluster.Start(n1, members, false);
      cluster.WaitReady(n1);
      place_own_core();
      restart_rate = InsertRows(dbs[0], next_id, FLAGS_rows, true);
      next_id += FLAGS_rows;
      WaitForCount(
          dbs,
          absl::StrCat("SELECT count(*) FROM t WHERE id >= ", backlog_first, " AND id < ", next_id),
          next_id - backlog_first);
      fprintf(stderr,
              "(c) after node 1 restarted with %lld rows to ship: app %.0f rows/s (%.3fx triggers "
              "only)\n",
              static_cast<long long>(FLAGS_restart_rows), restart_rate, restart_rate / cap_rate);
    }
    for (Node& n : cluster.nodes()) PlaceProcess(n.proc->pid(), CpuSet(true, true), SCHED_OTHER);

    // (a), and (c) with every process on every CPU: one writer on node 1.
    double app_rate = 0;
    {
      // Node 1 deletes the rows of its log once they are replicated and its writer paused: the
      // previous run's deletions are not this run's CPU, and this run's are. (Rows marked done
      // stay: the newest, and the ones each start adds to move the ids up to the clock.)
      const std::string pruned =
          "SELECT count(*) = 0 FROM \"__marmot__t_change_log\" WHERE \"__marmot__state\" = 0";
      WaitForCount({dbs[0]}, pruned, 1);
      const int64_t first = next_id;
      std::vector<double> cpu;
      for (Node& n : cluster.nodes())
        cpu.push_back(::marmot::testing::ProcessCpuSeconds(n.proc->pid()));
      const auto start = Clock::now();
      app_rate = InsertRows(dbs[0], first, FLAGS_rows);
      next_id += FLAGS_rows;
      auto end = WaitForCount(
          dbs, absl::StrCat("SELECT count(*) FROM t WHERE id >= ", first, " AND id < ", next_id),
          FLAGS_rows);
      const double rate = end ? FLAGS_rows / Seconds(*end - start) : 0;
      WaitForCount({dbs[0]}, pruned, 1);
      // CPU per replicated row moves much less with the machine's load than rows/s does.
      std::string per_node;
      double total_us = 0;
      for (size_t i = 0; i < cpu.size(); ++i) {
        const double us =
            (::marmot::testing::ProcessCpuSeconds(cluster.nodes()[i].proc->pid()) - cpu[i]) * 1e6 /
            static_cast<double>(FLAGS_rows);
        total_us += us;
        absl::StrAppend(&per_node, i == 0 ? "" : ", ", "node ", i + 1, " ", Fmt("%.1f", us));
      }
      fprintf(stderr,
              "(a) node 1 writer: app %.0f rows/s, replicated %.0f rows/s; marmot CPU us/row %s\n",
              app_rate, rate, per_node.c_str());
      table.push_back({"(a) replicated rows/s, writer on node 1", Fmt("%.0f", rate),
                       Fmt("%.0f raw", raw_rate), Fmt("%.3fx", rate / raw_rate), ">= 100000"});
      table.push_back({"    marmot CPU us per row, 3 nodes", Fmt("%.1f", total_us), "", "", ""});
    }
    if (FLAGS_spread) {
      const int64_t first = next_id;
      const int64_t per = FLAGS_rows / 3;
      const auto start = Clock::now();
      std::vector<std::thread> writers;
      for (int i = 0; i < 3; ++i) {
        writers.emplace_back([&, i] { InsertRows(dbs[i], first + i * per, per); });
      }
      for (std::thread& w : writers) w.join();
      next_id += 3 * per;
      auto end = WaitForCount(
          dbs, absl::StrCat("SELECT count(*) FROM t WHERE id >= ", first, " AND id < ", next_id),
          3 * per);
      const double rate = end ? 3 * per / Seconds(*end - start) : 0;
      fprintf(stderr, "(a) writers on every node: replicated %.0f rows/s\n", rate);
      table.push_back({"(a) replicated rows/s, writers on all 3", Fmt("%.0f", rate),
                       Fmt("%.0f raw", raw_rate), Fmt("%.3fx", rate / raw_rate), ">= 100000"});
    }
    if (own_core) {
      const double rate = Percentile(own_core_rates, 0.5);
      table.push_back({"(c) app inserts/s, writer alone on CPU 0", Fmt("%.0f", rate),
                       Fmt("%.0f raw", raw_rate), Fmt("%.3fx", rate / raw_rate), ">= 0.45x"});
      // What marmot costs beyond its triggers, which the application pays with or without it.
      table.push_back({"    same, against triggers only", "", Fmt("%.0f", cap_rate),
                       Fmt("%.3fx", rate / cap_rate), ""});
    }
    table.push_back({"(c) app inserts/s, all processes on all CPUs", Fmt("%.0f", app_rate),
                     Fmt("%.0f raw", raw_rate), Fmt("%.3fx", app_rate / raw_rate),
                     own_core ? "" : ">= 0.45x"});
    table.push_back({"    raw SQLite + capture triggers only", Fmt("%.0f", cap_rate),
                     Fmt("%.0f raw", raw_rate), Fmt("%.3fx", cap_rate / raw_rate), ""});
    if (restart_rate > 0) {
      table.push_back({"(c) CPU 0 writer, node 1 restarted, backlog", Fmt("%.0f", restart_rate),
                       Fmt("%.0f triggers", cap_rate), Fmt("%.3fx", restart_rate / cap_rate), ""});
    }
  }

  // (b) latency: under a steady stream, and for lone writes on an otherwise idle cluster (each
  // one alone in the WAL: what a lightly used website does).
  {
    struct LatencyRun {
      std::string label;
      int total, rate;
      bool targeted;
    };
    const std::vector<LatencyRun> runs = {
        {absl::StrCat(FLAGS_latency_rate, " writes/s"), FLAGS_latency_seconds * FLAGS_latency_rate,
         FLAGS_latency_rate, true},
        {"lone writes 5/s", FLAGS_lone_writes, 5, false},
    };
    int64_t first = 1;
    for (const LatencyRun& run : runs) {
      if (FLAGS_idle_only && run.targeted) continue;
      std::vector<double> latencies_ms = MeasureLatency(dbs, first, run.total, run.rate);
      first += run.total;
      const double p50 = Percentile(latencies_ms, 0.50), p99 = Percentile(latencies_ms, 0.99),
                   mx = Percentile(latencies_ms, 1.0);
      fprintf(
          stderr,
          "(b) %s visible on nodes 2 and 3: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu samples)\n",
          run.label.c_str(), p50, p99, mx, latencies_ms.size());
      table.push_back({absl::StrCat("(b) p50 to nodes 2+3, ms, ", run.label), Fmt("%.2f", p50), "",
                       "", run.targeted ? "< 5" : ""});
      table.push_back({absl::StrCat("(b) p99 to nodes 2+3, ms, ", run.label), Fmt("%.2f", p99), "",
                       "", run.targeted ? "< 20" : ""});
      table.push_back({"    latency max, ms", Fmt("%.2f", mx), "", "", ""});
    }
  }

  // (d) catch-up: fill the cluster to --catchup_rows rows of t, then add a fourth node.
  if (FLAGS_catchup_rows > 0 && !FLAGS_idle_only) {
    const int64_t have = next_id - 1;
    if (have < FLAGS_catchup_rows) {
      const int64_t more = FLAGS_catchup_rows - have;
      const auto start = Clock::now();
      InsertRows(dbs[0], next_id, more);
      next_id += more;
      auto end = WaitForCount(dbs, "SELECT count(*) FROM t", FLAGS_catchup_rows);
      fprintf(stderr, "(d) filled the cluster to %lld rows in %.1f s\n",
              static_cast<long long>(FLAGS_catchup_rows), end ? Seconds(*end - start) : -1.0);
    }
    const int64_t total = next_id - 1;
    Node& joining = cluster.Add();
    cluster.Start(joining, members, true);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto start = Clock::now();
    bool added = false;
    for (int attempt = 0; attempt < 50 && !added; ++attempt) {
      added = cluster.AddNode(cluster.nodes()[0], joining);
      if (!added) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    CHECK(added) << "AddNode failed; see " << cluster.nodes()[0].log();
    auto end = WaitForCount({joining.db}, "SELECT count(*) FROM t", total);
    const double secs = end ? Seconds(*end - start) : -1;
    fprintf(stderr, "(d) new node holds all %lld rows after %.1f s\n",
            static_cast<long long>(total), secs);
    table.push_back({absl::StrCat("(d) catch-up of a new node, ", total, " rows, s"),
                     Fmt("%.1f", secs), Fmt("%.0f rows/s", secs > 0 ? total / secs : 0), "",
                     "< 15"});
  }

  printf("\nMarmot replication, 3 nodes on loopback, %d shards, %lld rows of ~100 B, %d-row txns\n",
         FLAGS_shards, static_cast<long long>(FLAGS_rows), FLAGS_txn_rows);
  printf("| %-44s | %12s | %16s | %8s | %10s |\n", "measure", "value", "baseline", "ratio",
         "target");
  printf("|%s|%s|%s|%s|%s|\n", std::string(46, '-').c_str(), std::string(14, '-').c_str(),
         std::string(18, '-').c_str(), std::string(10, '-').c_str(), std::string(12, '-').c_str());
  for (const Row& r : table) {
    printf("| %-44s | %12s | %16s | %8s | %10s |\n", r.what.c_str(), r.value.c_str(),
           r.baseline.c_str(), r.ratio.c_str(), r.target.c_str());
  }
  fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace marmot::bench

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  signal(SIGPIPE, SIG_IGN);
  return marmot::bench::Run();
}
