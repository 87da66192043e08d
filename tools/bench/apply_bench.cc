// The applier alone: CPU per row of applying another node's committed batches to a node's
// database, as a follower does (no Raft, no network, no shipper): the part of "CPU per
// replicated row" (issue 22) that every node pays for every row. Google Benchmark's CPU time
// per row is the figure: it holds on a shared machine where wall-clock rates do not.
//
//   bazel run -c opt //tools/bench:apply_bench -- --benchmark_repetitions=3
//
// Rows of ~100 bytes (as replication_bench's), 1,000 per batch (one writer transaction of
// replication_bench); the follower has capture installed on its table as every node has.
#include <benchmark/benchmark.h>
#include <glog/logging.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "replicator/change_applier.h"
#include "replicator/shard_router.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"

namespace marmot::replicator {
namespace {

using change::v1::Change;
using change::v1::ChangeBatch;
using change::v1::TableChanges;
using sqlite::Value;

constexpr uint64_t kOrigin = 1;  // The node whose batches are applied.
constexpr uint64_t kLocal = 2;   // The follower.

// A follower: a fresh database with table `kv` (a UNIQUE column besides the key when
// `unique`), capture on, and an applier.
struct Follower {
  explicit Follower(bool unique) : router(16) {
    char dir[] = "/tmp/apply-bench-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    folder = dir;
    const std::string path = folder + "/follower.db";
    auto db = sqlite::Database::Open(path);
    CHECK(db.ok()) << db.status();
    CHECK(db->Exec(absl::StrCat("CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT",
                                unique ? " UNIQUE" : "", ", n INTEGER)"))
              .ok());
    CHECK(sqlite::InstallCapture(*db).ok());
    auto opened = ChangeApplier::Open(path, router);
    CHECK(opened.ok()) << opened.status();
    applier = *std::move(opened);
    applier->set_local_node(kLocal);
  }
  ~Follower() {
    applier.reset();
    std::filesystem::remove_all(folder);
  }

  // Applies `batch` as the next entry of shard 0.
  void Apply(const ChangeBatch& batch) {
    auto r = applier->Apply(0, ++index, batch);
    CHECK(r.ok()) << r.status();
    CHECK_EQ(r->dead_lettered, 0);
    CHECK_EQ(r->conflicts, 0);
  }

  std::string folder;
  ShardRouter router;
  std::unique_ptr<ChangeApplier> applier;
  uint64_t index = 0;
};

// `rows` changes of rows `first`.. of kv from kOrigin: inserts of rows never written (made over
// no version), or updates each made over the origin's change `first_change_of_row + k` of its
// row (a chain of edits: no conflict). Change ids continue from `change_id`.
ChangeBatch Batch(int64_t first, int rows, bool update, int64_t& change_id,
                  int64_t previous_change_of_first = 0) {
  ChangeBatch batch;
  batch.set_origin_node(kOrigin);
  TableChanges* t = batch.add_tables();
  t->set_table("kv");
  for (const char* c : {"id", "v", "n"}) t->add_columns(c);
  t->add_key_columns("id");
  for (int k = 0; k < rows; ++k) {
    Change* c = t->add_changes();
    c->set_change_id(++change_id);
    c->set_op(update ? change::v1::OP_UPDATE : change::v1::OP_INSERT);
    c->set_at_ms(1);
    const int64_t id = first + k;
    *c->add_row() = ToWire(Value::Integer(id));
    *c->add_row() = ToWire(
        Value::Text(absl::StrCat(update ? "updated " : "row ", id, " ", std::string(80, 'x'))));
    *c->add_row() = ToWire(Value::Integer(id * 7));
    change::v1::Version* prev = c->mutable_prev();
    if (update) {
      prev->set_origin(kOrigin);
      prev->set_change_id(previous_change_of_first + k);
    }
  }
  return batch;
}

// Inserts of new rows, `state.range(0)` per batch; a UNIQUE column when `state.range(1)`.
void BM_ApplyInserts(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  Follower f(state.range(1) != 0);
  int64_t change_id = 0, next_row = 1;
  for (auto _ : state) {
    state.PauseTiming();
    const ChangeBatch batch = Batch(next_row, rows, /*update=*/false, change_id);
    next_row += rows;
    state.ResumeTiming();
    f.Apply(batch);
  }
  state.SetItemsProcessed(state.iterations() * rows);
}

// Updates of existing rows, each over the version it replaces (sequential edits), in a table of
// 100,000 rows.
void BM_ApplyUpdates(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0));
  Follower f(state.range(1) != 0);
  constexpr int64_t kTable = 100000;
  int64_t change_id = 0;
  for (int64_t first = 1; first <= kTable; first += 1000) {
    f.Apply(Batch(first, 1000, /*update=*/false, change_id));
  }
  // Row r's last change id: r at first (inserted in order, ids from 1).
  std::vector<int64_t> last(kTable + 1);
  for (int64_t r = 1; r <= kTable; ++r) last[r] = r;
  int64_t next_row = 1;
  for (auto _ : state) {
    state.PauseTiming();
    if (next_row + rows - 1 > kTable) next_row = 1;
    // The rows' last changes are consecutive: each batch's changes are.
    const ChangeBatch batch = Batch(next_row, rows, /*update=*/true, change_id, last[next_row]);
    for (int k = 0; k < rows; ++k) last[next_row + k] = batch.tables(0).changes(k).change_id();
    next_row += rows;
    state.ResumeTiming();
    f.Apply(batch);
  }
  state.SetItemsProcessed(state.iterations() * rows);
}

BENCHMARK(BM_ApplyInserts)->ArgsProduct({{1000}, {0, 1}})->ArgNames({"rows", "unique"});
BENCHMARK(BM_ApplyUpdates)->ArgsProduct({{1000}, {0, 1}})->ArgNames({"rows", "unique"});

}  // namespace
}  // namespace marmot::replicator

BENCHMARK_MAIN();
