// Ships captured changes into Raft: reads pending rows of every change log, routes each row
// change to its shard, batches them per shard (many changes per Raft entry), proposes, and marks
// the change-log rows done once their entry committed.
//
// Ordering. Changes of one row always route to the same shard, and a shard has at most one
// batch of this node in flight, so a row's changes enter its shard's log in the order they were
// captured. An update that moves a row to another key is split when the two keys live in
// different shards: a delete of the old key in the old key's shard, an upsert of the new row in
// the new key's shard; each identity then converges in its own shard's order.
//
// Crash safety. Change-log rows are marked done only after the entry that carries them
// committed. After a crash they are proposed again; the applier skips them as duplicates by
// (origin node, table, change id), which is exact because ids of a table only grow and each
// shard receives them in order. Marked rows are deleted, except the newest row of each log,
// which keeps SQLite from handing out its id again.
//
// Schema changes. When the schema moved, the difference between the database and its baseline
// (schema_changes.h) is proposed to shard 0 as one batch, before any row batch of that shard
// that follows; the rows of tables it creates or gives columns are read only once it committed,
// so they reach the other nodes after their table (or columns). A committed schema change is not
// proposed again (the applier records it in the baseline when it applies it here). With
// `schema_quiet`, the difference is proposed only once the schema stood still that long, and no
// row is read meanwhile: a migration goes as what it made, and its rows after it. Every row
// batch carries the schema epoch it was read in (schema_epochs.h): read inside the rows' read
// transaction, after its first read, so that it is never older than the schema the rows were
// read with; a schema change of this node counts from when it committed. The other way round, a
// schema change is proposed only once every row read before it committed (no row is read while
// it waits), and it carries, per shard, the index of this node's last row batch committed there or
// of the last entry the shard applied here, whichever is higher
// (ChangeBatch.rows_committed_through): other nodes apply it only after those rows, theirs and
// the ones of other nodes this node had applied. Rows that do not commit within kEpochWaitBound
// are waited for no longer (logged).
//
// Routes of new tables. With `epochs`, the rows of a table this node created are not read until
// shard 0 applied its CREATE here: a table routes by the name of its first CREATE in shard 0's
// order (table_renames.h, RecordTableCreated), and another node's CREATE of it spelled in another
// case (`item` for this node's `Item`: one table to SQLite) may have come first there. Rows sent
// by this node's spelling before that would sit in other shards than the same keys written on
// that node, for good. So this wait is not bounded: where shard 0 is halted or far behind here,
// the table's rows stay in its log (logged once it lasts longer than kEpochWaitBound, and counted
// in PumpStats::tables_waiting_for_route) rather than go to the wrong shards. It survives a
// restart: the CREATE's shard-0 index is kept in `__marmot__own_creates`, written in the
// transaction that takes the CREATE into the baseline (after which no look finds it again).
//
// Back-pressure. At most `max_buffered_changes` read-but-uncommitted changes are held in
// memory; past that, reading pauses and the rest waits in the change logs on disk. The
// application never waits for marmot.
//
// Threading: Pump() runs on one thread. `Proposer` callbacks may run on any thread; they only
// queue the outcome, which the next Pump() processes.
#ifndef MARMOT_REPLICATOR_CHANGE_SHIPPER_H_
#define MARMOT_REPLICATOR_CHANGE_SHIPPER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/change.pb.h"
#include "raft/host/env.h"
#include "replicator/schema_changes.h"
#include "replicator/schema_epochs.h"
#include "replicator/shard_router.h"
#include "replicator/shipped_columns.h"
#include "sqlite/database.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

// Where batches go: the multi-Raft host in production, a stand-in in unit tests.
class Proposer {
 public:
  virtual ~Proposer() = default;
  // Proposes `payload` (a serialized ChangeBatch) to `shard`. `done` is called exactly once:
  // OK and the entry's log index once it committed (and applied here), an error if it was
  // dropped or timed out (it is retried).
  using Done = std::function<void(absl::Status status, uint64_t index)>;
  virtual void Propose(int shard, std::string payload, Done done) = 0;
};

// With one batch in flight per shard, at most shards x max_batch_changes rows travel at once, so
// replicated rows/s is bounded by that divided by the commit latency (a Raft round trip plus the
// leader's apply): batches are large, and the buffer holds several rounds of them.
struct ShipperOptions {
  int max_batch_changes = 5000;
  int64_t max_batch_bytes = 1 << 20;
  int max_buffered_changes = 100000;
  int scan_limit = 10000;  // Change-log rows read per table per Pump.
  // When committed rows are marked done (deleted from the logs). Each marking is a write
  // transaction on the application's database: SQLite has one writer, so the application's
  // writes wait meanwhile (its busy handler sleeps 1 ms and more), and deleting rows is work of
  // the same order as writing them. So marking waits for the application to pause: for the
  // logs to gain no row for `mark_quiet`; under writes that do not pause, for the oldest
  // committed row to have waited `mark_delay` (which bounds the rows kept to that much writing).
  // A burst shorter than that pays nothing for the marking while it runs. Markings are at least
  // `mark_interval` apart and delete at most `mark_rows` rows of a table each, so that one
  // marking holds the write lock for milliseconds. Marking later is safe: a row not marked yet
  // is only proposed again after a restart, and skipped as a duplicate.
  absl::Duration mark_quiet = absl::Milliseconds(25);
  absl::Duration mark_delay = absl::Seconds(1);
  absl::Duration mark_interval = absl::Milliseconds(50);
  int64_t mark_rows = 16384;
  // A batch whose proposal failed is proposed again no sooner than this after its last
  // proposal. Without a pause, a shard without a leader (refused at once) turned the pump into
  // a busy loop of failed proposals that took the CPU the election needed.
  absl::Duration retry_delay = absl::Milliseconds(50);
  // The clock of the delays above and of the waits for SQLite's write lock; must outlive the
  // shipper.
  raft::host::Env* env = raft::host::Env::Default();
  // Told which columns each change was read with, for the applier; may be null. Must outlive
  // the shipper.
  ShippedColumns* shipped = nullptr;
  // Capture schema changes (replicator/schema_changes.h) and propose them to shard 0; needs the
  // baseline the applier keeps (ChangeApplier::Open makes it).
  bool replicate_schema = false;
  // A schema change is proposed once the schema stood still this long, and no row is read
  // meanwhile: a migration (many statements, transactions and runs of its tool) goes as the one
  // batch of what it made, every table as it ends (every pod that ran the same migration made
  // the same), and the rows it wrote follow it.
  absl::Duration schema_quiet = absl::ZeroDuration();
  // ... but no longer than this after it began to move: a schema that never stands still (an
  // application that changes it all the time) still goes, and its rows with it.
  absl::Duration schema_quiet_at_most = absl::InfiniteDuration();
  // Set while a schema change found here waits for the schema to stand still, for the applier
  // (ChangeApplier::set_own_schema_pending); may be null. Must outlive the shipper.
  std::atomic<bool>* schema_pending = nullptr;
  // Told how many of this node's schema changes a look found that do not replicate (logged
  // too; each is then taken into the baseline as it is here); may be null.
  std::function<void(int64_t)> not_replicated;
  // This node's schema epoch, stamped on every row batch (schema_epochs.h), and told where
  // this node's schema changes committed; may be null (batches then carry none).
  SchemaEpochs* epochs = nullptr;
};

struct PumpStats {
  int64_t read = 0;       // Change-log rows read this round.
  int64_t proposed = 0;   // Changes proposed this round.
  int64_t committed = 0;  // Changes whose entry committed (and were marked done) this round.
  int64_t failed = 0;     // Changes whose proposal failed and will be retried.
  // Tables this node created whose rows wait for shard 0 to apply its CREATE here (see "Routes
  // of new tables" above), as of this round.
  int64_t tables_waiting_for_route = 0;
};

// Runs `write` in a write transaction on a connection to the database and commits it when
// `write` succeeds. The replicator's runs it on the applier's connection, in the transaction
// that also writes the applier's deferred state (DatabaseWriter::WriteWithDeferred): log rows
// must not go before the applied state of their entries is durable (DeferredApplyState).
using WriteTransaction =
    std::function<absl::Status(const std::function<absl::Status(sqlite::Database&)>& write)>;

class ChangeShipper {
 public:
  static absl::StatusOr<std::unique_ptr<ChangeShipper>> Open(const std::string& db_path,
                                                             uint64_t node_id,
                                                             const ShardRouter& router,
                                                             Proposer* proposer,
                                                             ShipperOptions options = {});
  ~ChangeShipper();

  // One round: processes finished proposals, reads new changes, proposes what can be proposed.
  absl::StatusOr<PumpStats> Pump();

  // Where marking runs (see WriteTransaction); by default on the shipper's own connection.
  void set_mark_transaction(WriteTransaction t) { mark_transaction_ = std::move(t); }

  // Changes read from the logs and not yet committed.
  int64_t buffered() const { return buffered_; }
  // Proposals in flight.
  int in_flight() const;

  // The newest change id of `table` that committed along with every change of the table read
  // before it (0: none yet). Log rows up to it are waiting to be marked done, not to be
  // replicated. Thread-safe: the control pane asks from its own threads.
  int64_t CommittedThrough(const std::string& table) const;

  // At stop, after the last Pump: takes the outcomes that arrived since and marks every
  // committed row done, so that a restart does not propose them again.
  absl::Status Finish();

 private:
  struct Header;
  struct Pending;  // One captured change waiting to be proposed.
  struct Inflight;

  ChangeShipper(sqlite::Database db, uint64_t node_id, const ShardRouter& router,
                Proposer* proposer, ShipperOptions options);
  absl::Status RefreshSchema();
  // Proposes the schema changes not replicated yet, when the schema moved and none are in flight.
  absl::Status CaptureSchemaChanges();
  void SetSchemaSettling(bool settling);
  absl::StatusOr<int64_t> ReadNewChanges();
  int64_t ProposeReady();
  // Whether every row read so far committed (none queued or in flight).
  bool RowsCommitted() const;
  // The table whose log holds change `change_id` of `table` now (moved_), or `table`.
  const std::string& MovedTo(const std::string& table, int64_t change_id) const;
  void Propose(int shard, const std::string& payload);
  absl::StatusOr<std::pair<int64_t, int64_t>> ProcessOutcomes();
  // Marks when the application paused or a committed row waited too long (ShipperOptions).
  void MarkWhenDue();
  // Deletes the committed prefix of every log, at most `max_rows` rows of each; sets
  // marks_due_ when some stayed behind.
  absl::Status MarkDone(int64_t max_rows);
  // Deletes the committed prefix `prefix` (table -> (count, last id)) from the logs through `db`,
  // inside the caller's transaction.
  static absl::Status DeleteMarked(sqlite::Database& db,
                                   const std::map<std::string, std::pair<size_t, int64_t>>& prefix);

  sqlite::Database db_;
  const uint64_t node_id_;
  const ShardRouter router_;
  Proposer* const proposer_;
  const ShipperOptions options_;
  WriteTransaction mark_transaction_;  // Null: a transaction on db_.

  int64_t schema_version_ = -1;
  struct CaptureLog {
    int64_t changes = 0;  // read and not logged yet
    absl::Time last = absl::InfinitePast();
  };
  std::map<std::string, CaptureLog> capture_log_;  // per table
  std::map<std::string, sqlite::TableSchema> tables_;
  std::map<std::string, int64_t> read_up_to_;  // Per table: highest change id read.
  // Per table whose log moved with its table renamed (RefreshSchema): the table it moved to, and
  // the highest id read from it before (a table made again under the name has higher ids).
  std::map<std::string, std::pair<std::string, int64_t>> moved_;
  std::map<std::string, int64_t> newest_;        // Per table: the log's newest id at the last look.
  absl::Time logs_grew_ = absl::InfinitePast();  // When a log last gained rows.
  // Per shard: changes read, in capture order, not yet in flight.
  std::vector<std::deque<Pending>> queued_;
  // Schema changes: the batch waiting to go to shard 0, if any, and the keys of its changes, the
  // tables it creates, the keys that committed, whether the schema moved since the last look.
  std::optional<change::v1::ChangeBatch> schema_batch_;
  absl::Time schema_built_at_;  // when schema_batch_ was made
  std::vector<std::string> schema_keys_;
  std::set<std::string> held_tables_;
  // Tables this node created whose CREATE committed and may not be applied here yet: their rows
  // are not read until shard 0 applied `index` here ("Routes of new tables" above). Loaded from
  // `__marmot__own_creates` at Open; `kept` once written there.
  struct OwnCreate {
    uint64_t index = 0;
    bool kept = false;
    absl::Time since;                        // When this run began to wait.
    absl::Time told = absl::InfinitePast();  // When the wait was last logged.
  };
  std::map<std::string, OwnCreate> created_at_;
  // Writes the entries of created_at_ not kept yet, and forgets those shard 0 applied here,
  // inside the caller's transaction.
  absl::Status KeepOwnCreates(sqlite::Database& db);
  int64_t waiting_for_route_ = 0;  // Tables whose rows wait for it, in the last read.
  std::set<std::string> schema_sent_;
  bool schema_dirty_ = true;
  // This node's schema changes that do not replicate, for the baseline after the read.
  std::unique_ptr<SchemaDiff> keep_in_baseline_;
  // This node's schema changes that committed, for the baseline (RecordSentInBaseline); no
  // schema change is captured until they are recorded.
  std::vector<change::v1::SchemaChange> sent_to_baseline_;
  // The newest shard-0 index among them: kept as the schema epoch in the same transaction.
  uint64_t sent_epoch_ = 0;
  // A schema change found and not proposed yet: the schema_version it was last seen moving at,
  // and when (ShipperOptions::schema_quiet).
  bool schema_settling_ = false;
  int64_t settling_version_ = -1;
  absl::Time schema_moved_at_ = absl::InfinitePast();
  absl::Time settling_since_ = absl::InfinitePast();
  absl::Time settled_at_ = absl::InfinitePast();  // When it last stopped settling.
  // Per table: when a failure to read its changes was last logged.
  std::map<std::string, absl::Time> read_warned_;
  // Per shard: the batch in flight, if any.
  std::vector<std::unique_ptr<Inflight>> inflight_;
  // Per shard: the Raft index of this node's last batch of rows that committed there.
  std::vector<uint64_t> own_committed_;
  int64_t buffered_ = 0;
  // The schema epoch of the rows this Pump reads (ShipperOptions::epochs).
  uint64_t read_epoch_ = 0;

  // Per table: the ids read and not marked done yet, in read (= id) order, each with whether its
  // change committed. Marking deletes the committed prefix: one range per table, whatever the
  // shards' batches interleave (a list of single ids took milliseconds per thousand rows, all of
  // it holding the application's write lock).
  struct Unmarked {
    std::deque<std::pair<int64_t, bool>> ids;
    size_t committed = 0;  // The length of the committed prefix of `ids`.
  };
  std::map<std::string, Unmarked> unmarked_;
  bool marks_due_ = false;  // Something committed is not marked yet.
  // When the oldest commit not marked yet arrived (InfiniteFuture: none).
  absl::Time due_since_ = absl::InfiniteFuture();
  absl::Time last_mark_ = absl::InfinitePast();
  // Per (table, change id) of a rekey split over two shards: how many of them still have to
  // commit it. Any other change is done when its one batch commits.
  std::map<std::pair<std::string, int64_t>, int> split_outstanding_;

  // Outcomes reported by proposal callbacks, processed by Pump. Shared with the callbacks so
  // that a late callback after the shipper is gone touches nothing freed.
  struct Outcomes {
    absl::Mutex mu;
    struct Done {
      int shard = 0;
      absl::Status status;
      uint64_t index = 0;  // Where it committed (status OK).
    };
    std::vector<Done> done ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<Outcomes> outcomes_ = std::make_shared<Outcomes>();

  mutable absl::Mutex committed_through_mu_;
  // Per table: the newest id of the committed prefix (CommittedThrough).
  std::map<std::string, int64_t> committed_through_ ABSL_GUARDED_BY(committed_through_mu_);
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_SHIPPER_H_
