// FuzzReplica: node 2's database for the replicator's fuzz targets (change_batch_fuzz,
// snapshot_install_fuzz) and for the corpus maker.
//
// A real SQLite file with user tables of the shapes marmot replicates (rowid, INTEGER PRIMARY
// KEY, composite WITHOUT ROWID keys, UNIQUE and CHECK constraints, NOT NULL with a default, a
// generated column, a DESC key, foreign keys, a quoted name) beside objects it must never write
// (a view, an FTS5 table and its shadow tables, sqlite_sequence, marmot's own tables, a user
// trigger), rows in both of its two shards, capture installed, a few own changes pending in
// the change logs, and shard 0 applied up to kAppliedIndex. It is made once per process in a
// fresh temporary folder; Fresh() gives each input its own copy, opened the way marmot opens
// it (a DatabaseWriter of node 2, its apply rounds and the ShardStateMachine of shard 0).
#ifndef MARMOT_TESTS_FUZZ_FUZZ_REPLICA_H_
#define MARMOT_TESTS_FUZZ_FUZZ_REPLICA_H_

#include <memory>
#include <string>

#include "replicator/shard_router.h"
#include "replicator/shard_state_machine.h"
#include "sqlite/database.h"

namespace marmot::fuzz {

class FuzzReplica {
 public:
  static constexpr int kShards = 2;
  static constexpr uint64_t kNode = 2;
  // Shard 0's applied index in every fresh copy.
  static constexpr uint64_t kAppliedIndex = 10;
  // The user schema (every node of the corpus maker has it too).
  static const char kSchema[];
  // Rows every node starts with.
  static const char kRows[];

  // Makes the template; CHECK-fails when it cannot (no place for a temporary folder).
  FuzzReplica();
  // Removes the folder.
  ~FuzzReplica();

  // Replaces the current copy (if any) by a fresh copy of the template, opened.
  void Fresh();

  replicator::DatabaseWriter& writer() { return *writer_; }
  // The host's rounds, as marmot's host begins them.
  raft::host::ApplyRounds& rounds() { return *rounds_; }
  replicator::ShardStateMachine& machine() { return *machine_; }
  // The shard's applied index as the writer's applier has it; CHECK-fails on an error.
  uint64_t AppliedIndex(int shard);
  // Another connection to the copy, as an application has.
  sqlite::Database& app() { return *app_; }
  const std::string& path() const { return path_; }
  const replicator::ShardRouter& router() const { return router_; }

  // Every row of every user table that routes to `shard`, one line each, sorted.
  std::string RowsOfShard(int shard);
  // Crashes (a finding) unless PRAGMA quick_check finds the copy intact.
  void CheckIntact();

 private:
  void Close();

  const replicator::ShardRouter router_{kShards};
  std::string dir_;
  std::string template_path_;
  std::string path_;
  std::shared_ptr<replicator::DatabaseWriter> writer_;
  std::unique_ptr<replicator::ShardApplyRounds> rounds_;
  std::unique_ptr<replicator::ShardStateMachine> machine_;
  std::unique_ptr<sqlite::Database> app_;
};

// A fresh folder for temporary files under Bazel's test folder, else TMPDIR, else /dev/shm
// (fast), else /tmp. CHECK-fails when it cannot.
std::string MakeTempDir();

// Makes a database at `path` with FuzzReplica's schema and rows and capture installed, the
// change logs empty (the rows count as replicated before). CHECK-fails on an error.
void MakeReplicaDatabase(const std::string& path);

}  // namespace marmot::fuzz

#endif  // MARMOT_TESTS_FUZZ_FUZZ_REPLICA_H_
