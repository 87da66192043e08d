// A retry of many dead letters goes in bounded steps: another connection writes while it runs,
// every dead letter ends applied, a row's dead letters keep their order across steps (and
// across a restart between two), changes queued meanwhile behind a retried one are retried
// too, and a dead letter deleted by hand between two steps is passed over.
#include "replicator/paced_retry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "replicator/testing/applier_node.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;
using testing::Node;

constexpr char kOrder[] =
    "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB)";

int64_t Count(sqlite::Database& db, const std::string& sql) {
  absl::StatusOr<Value> n = db.QueryValue(sql);
  CHECK(n.ok()) << n.status();
  return n->integer();
}

int64_t DeadLetters(sqlite::Database& db) {
  return Count(db, "SELECT count(*) FROM \"__marmot__dead_letters\"");
}

// Node b lacks `order`: every change of it that node a (node 2) captures is dead-lettered
// there.
struct Pair {
  Pair() : a("paced-a"), b("paced-b") { b.Exec("DROP TABLE \"order\""); }
  // a's changes so far, applied on b at Raft index `index` (those b has are duplicates).
  ApplyResult Ship(uint64_t index) {
    absl::StatusOr<ApplyResult> r = b.applier->Apply(0, index, a.CapturedBatch(2));
    CHECK(r.ok()) << r.status();
    return *r;
  }
  void CreateOrderOnB() {
    b.Exec(kOrder);
    ASSERT_TRUE(sqlite::InstallCapture(*b.db).ok());
  }
  // Runs one step of `retry` on b.
  void StepOnB(DeadLetterRetry& retry) {
    ASSERT_TRUE(b.applier->RetryDeadLetters(retry, [] { return true; }).ok());
  }
  Node a, b;
};

TEST(PacedRetryTest, AnotherConnectionWritesWhileManyDeadLettersAreRetried) {
  // Given 24,000 dead letters on b, whose table then comes,
  constexpr int kRows = 24000;
  Pair p;
  p.a.Exec(absl::StrCat("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE ",
                        "i < ", kRows, ") INSERT INTO \"order\" (id, name) SELECT i, 'n' || i ",
                        "FROM n"));
  EXPECT_EQ(p.Ship(2).dead_lettered, kRows);
  p.CreateOrderOnB();
  DatabaseWriter writer(std::move(p.b.applier));
  auto app = sqlite::Database::Open(p.b.path);
  ASSERT_TRUE(app.ok()) << app.status();
  ASSERT_TRUE(app->Exec("PRAGMA busy_timeout = 1000").ok());

  // when all of them are retried, in small steps so that the retry lasts (at least 120 steps
  // with a pause of 50 ms after each),
  DeadLetterRetry all = DeadLetterRetry::OfTables(std::nullopt);
  all.set_max_per_step(200);
  PacedRetry retry(writer, *raft::host::Env::Default(), std::move(all));
  std::atomic<bool> finished{false};
  std::future<absl::StatusOr<RetryResult>> retried = std::async(std::launch::async, [&] {
    absl::StatusOr<RetryResult> r = retry.Run([] { return false; });
    finished = true;
    return r;
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (DeadLetters(*app) == kRows && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_LT(DeadLetters(*app), kRows) << "the retry did not start";

  // then the application's writer, waiting at most a second for the write lock, gets it again
  // and again while the retry goes on,
  for (int k = 1; k <= 5; ++k) {
    ASSERT_TRUE(app->Exec("BEGIN IMMEDIATE").ok()) << "write " << k;
    ASSERT_TRUE(app->Exec(absl::StrCat("INSERT INTO parent VALUES (", k, ")")).ok());
    ASSERT_TRUE(app->Exec("COMMIT").ok()) << "write " << k;
    EXPECT_FALSE(finished.load()) << "write " << k << " came only after the retry";
    EXPECT_GT(DeadLetters(*app), 0) << "write " << k;
  }
  // and every dead letter ends applied.
  absl::StatusOr<RetryResult> result = retried.get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, kRows);
  EXPECT_EQ(result->still_failing, 0);
  EXPECT_EQ(DeadLetters(*app), 0);
  EXPECT_EQ(Count(*app, "SELECT count(*) FROM \"order\""), kRows);
  EXPECT_EQ(p.b.Dump("order"), p.a.Dump("order"));
  EXPECT_EQ(Count(*app, "SELECT count(*) FROM parent"), 5);
}

TEST(PacedRetryTest, ARowsDeadLettersKeepTheirOrderAcrossStepsAndARestart) {
  // Given two changes of one row dead-lettered on b (the second queued behind the first) and
  // one of another row,
  Pair p;
  p.a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'first'), (2, 'other')");
  EXPECT_EQ(p.Ship(2).dead_lettered, 2);
  p.a.Exec("UPDATE \"order\" SET name = 'second' WHERE id = 1");
  EXPECT_EQ(p.Ship(3).dead_lettered, 1);
  p.CreateOrderOnB();

  // when a retry of one dead letter per step takes its first step and marmot restarts,
  DeadLetterRetry first = DeadLetterRetry::OfTables(std::nullopt);
  first.set_max_per_step(1);
  p.StepOnB(first);
  EXPECT_EQ(first.result().applied, 1);
  EXPECT_FALSE(first.done());
  EXPECT_EQ(DeadLetters(*p.b.db), 2);
  EXPECT_EQ(Count(*p.b.db, "SELECT count(*) FROM \"order\" WHERE name = 'first'"), 1);
  p.b.RestartApplier();

  // then a new retry applies the rest in order, a step each, and b's rows equal a's.
  DeadLetterRetry rest = DeadLetterRetry::OfTables(std::nullopt);
  rest.set_max_per_step(1);
  int steps = 0;
  while (!rest.done()) {
    p.StepOnB(rest);
    ASSERT_LE(++steps, 3);
  }
  EXPECT_EQ(rest.result().applied, 2);
  EXPECT_EQ(rest.result().still_failing, 0);
  EXPECT_EQ(DeadLetters(*p.b.db), 0);
  EXPECT_EQ(p.b.Dump("order"), p.a.Dump("order"));
}

TEST(PacedRetryTest, ChangesQueuedBehindARetriedDeadLetterMeanwhileAreRetriedToo) {
  // Given dead letters of rows 1 and 2 on b,
  Pair p;
  p.a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'one'), (2, 'two')");
  EXPECT_EQ(p.Ship(2).dead_lettered, 2);
  p.CreateOrderOnB();

  // when a retry of every dead letter applies row 1's, then a change of row 2 comes and queues
  // behind row 2's dead letter, before the retry gets to it,
  DeadLetterRetry all = DeadLetterRetry::OfTables(std::nullopt);
  all.set_max_per_step(1);
  p.StepOnB(all);
  EXPECT_EQ(all.result().applied, 1);
  p.a.Exec("UPDATE \"order\" SET name = 'two, later' WHERE id = 2");
  EXPECT_EQ(p.Ship(3).dead_lettered, 1);

  // then the retry applies both of row 2 in order, and none is left.
  int steps = 0;
  while (!all.done()) {
    p.StepOnB(all);
    ASSERT_LE(++steps, 4);
  }
  EXPECT_EQ(all.result().applied, 3);
  EXPECT_EQ(DeadLetters(*p.b.db), 0);
  EXPECT_EQ(p.b.Dump("order"), p.a.Dump("order"));
}

TEST(PacedRetryTest, ADeadLetterDeletedByHandBetweenStepsIsPassedOver) {
  // Given three dead letters on b, a retry of them that took one step, and the second deleted
  // by hand,
  Pair p;
  p.a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three')");
  EXPECT_EQ(p.Ship(2).dead_lettered, 3);
  p.CreateOrderOnB();
  auto ids = p.b.db->QueryRows("SELECT id FROM \"__marmot__dead_letters\" ORDER BY id");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 3u);
  DeadLetterRetry retry(
      std::vector<int64_t>{(*ids)[0][0].integer(), (*ids)[1][0].integer(), (*ids)[2][0].integer()});
  retry.set_max_per_step(1);
  p.StepOnB(retry);
  p.b.Exec(
      absl::StrCat("DELETE FROM \"__marmot__dead_letters\" WHERE id = ", (*ids)[1][0].integer()));

  // when the retry goes on, then it applies the third and counts the second nowhere.
  int steps = 0;
  while (!retry.done()) {
    p.StepOnB(retry);
    ASSERT_LE(++steps, 3);
  }
  EXPECT_EQ(retry.result().applied, 2);
  EXPECT_EQ(retry.result().still_failing, 0);
  EXPECT_EQ(DeadLetters(*p.b.db), 0);
  EXPECT_EQ(Count(*p.b.db, "SELECT count(*) FROM \"order\""), 2);
}

}  // namespace
}  // namespace marmot::replicator
