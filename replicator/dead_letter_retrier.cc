#include "replicator/dead_letter_retrier.h"

#include <glog/logging.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replicator/displaced_rows.h"
#include "replicator/table_writer.h"

namespace marmot::replicator {

using change::v1::ShardSnapshot;
using change::v1::TableChanges;
using sqlite::Value;

DeadLetterRetry::DeadLetterRetry(std::vector<int64_t> ids) : ids_(std::move(ids)) {
  std::sort(ids_.begin(), ids_.end());
  ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
}

DeadLetterRetry DeadLetterRetry::OfTables(std::optional<std::set<std::string>> tables) {
  DeadLetterRetry retry;
  retry.tables_ = std::move(tables);
  return retry;
}

std::optional<int64_t> DeadLetterRetry::Next(const DeadLetterIndex& index, int64_t after,
                                             int64_t through) const {
  if (!ids_.empty()) {
    auto it = std::upper_bound(ids_.begin(), ids_.end(), after);
    if (it == ids_.end() || *it > through) return std::nullopt;
    return *it;
  }
  for (std::optional<int64_t> id = index.NextId(after); id && *id <= through;
       id = index.NextId(*id)) {
    if (!tables_ || tables_->count(index.Find(*id)->table)) return id;
  }
  return std::nullopt;
}

absl::StatusOr<DeadLetterRetry::Progress> DeadLetterRetrier::Step(const DeadLetterRetry& retry,
                                                                  absl::FunctionRef<bool()> more) {
  DeadLetterStore& dead_letters = state_.dead_letters;
  DeadLetterRetry::Progress p = retry.progress_;
  if (p.done) return p;
  if (!p.started) {
    if (!retry.ids_.empty()) {
      std::vector<std::string> missing;
      for (int64_t id : retry.ids_) {
        if (dead_letters.index().Find(id) == nullptr) missing.push_back(absl::StrCat(id));
      }
      if (!missing.empty()) {
        return absl::NotFoundError(
            absl::StrCat("no dead letter ", absl::StrJoin(missing, ", "), " on this node"));
      }
      p.through = retry.ids_.back();
    } else {
      p.through = dead_letters.index().MaxId();
    }
    p.started = true;
  }
  const absl::Status undecodable =
      absl::FailedPreconditionError("the entry cannot be decoded; it is kept as it came");
  int64_t tried = 0;
  while (tried < retry.max_per_step_ && (tried == 0 || more())) {
    std::optional<int64_t> id = retry.Next(dead_letters.index(), p.after, p.through);
    if (!id) {
      // Changes queued behind dead letters this pass applied may have been recorded meanwhile:
      // another pass tries them.
      const int64_t newest = dead_letters.index().MaxId();
      if (retry.ids_.empty() && p.pass_applied > 0 && newest > p.through) {
        p.through = newest;
        p.pass_applied = 0;
        continue;
      }
      p.done = true;
      break;
    }
    p.after = *id;
    const DeadLetterIndex::Entry* indexed = dead_letters.index().Find(*id);
    if (indexed == nullptr) continue;  // Deleted since the retry began.
    // A copy: retrying changes the index.
    const DeadLetterIndex::Entry entry = *indexed;
    absl::StatusOr<std::optional<std::pair<Value, Value>>> stored =
        dead_letters.OriginAndChange(*id);
    if (!stored.ok()) return stored.status();
    if (!stored->has_value()) continue;
    ++tried;
    absl::StatusOr<ApplyDecision> decided =
        Try(entry, (*stored)->first, (*stored)->second, undecodable, *id);
    if (!decided.ok()) return decided.status();
    if (decided->action == ApplyAction::kQueueBehind) {
      // Keeps its own error: it was not tried.
      ++p.result.still_failing;
      continue;
    }
    if (decided->action == ApplyAction::kDeadLetter) {
      ++p.result.still_failing;
      if (absl::Status s = dead_letters.SetError(*id, decided->error.message()); !s.ok()) return s;
      continue;
    }
    if (absl::Status s = dead_letters.Delete(*id); !s.ok()) return s;
    ++p.result.applied;
    ++p.pass_applied;
  }
  VLOG(1) << "a step of a dead-letter retry tried " << tried << " (through id " << p.after
          << "): " << p.result.applied << " applied, " << p.result.still_failing
          << " still failing so far" << (p.done ? "; done" : "");
  return p;
}

absl::Status DeadLetterRetrier::ApplyCarried(int shard, ShardSnapshotReader& in,
                                             InstallResult& result) {
  int64_t carried = 0;
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::DeadLetter>> next = in.NextDeadLetter();
    if (!next.ok()) return SnapshotUnreadable(next.status());
    if (!next->has_value()) break;
    ShardSnapshot::DeadLetter& d = **next;
    ++carried;
    // Kept under the table as named here (its maker may spell it in another case: `Item` for
    // this node's `item`), where this node's changes of its rows look for it to queue behind.
    if (d.kind() == ShardSnapshot::DeadLetter::KIND_CHANGE ||
        d.kind() == ShardSnapshot::DeadLetter::KIND_SNAPSHOT_ROWS) {
      absl::StatusOr<std::string> here = plans_.TableNameHere(d.table());
      if (!here.ok()) return here.status();
      d.set_table(*std::move(here));
    }
    std::vector<Value> row = StoredDeadLetter(shard, d);
    bool holds_change = true;  // When not, Try says so.
    DeadLetterIndex::Entry entry =
        DeadLetterEntry(shard, d.raft_index(), row[2], row[3], row[6], &holds_change);
    // Tried as a retry would try it: behind an earlier dead letter of its rows here (a carried
    // one that failed just now, or snapshot rows of its table that this node could not
    // install), it is recorded without being tried. An undecodable one keeps the error it came
    // with.
    absl::StatusOr<ApplyDecision> tried =
        Try(entry, row[2], row[6], absl::FailedPreconditionError(row[5].bytes()));
    if (!tried.ok()) return tried.status();
    absl::Status status;
    if (tried->action == ApplyAction::kQueueBehind) {
      status = state_.dead_letters.QueuedBehind(tried->blocker);
    } else if (tried->action == ApplyAction::kDeadLetter) {
      status = tried->error;
    }
    if (status.ok()) {
      ++result.carried_applied;
      continue;
    }
    ++result.carried_kept;
    row[5] = Value::Text(std::string(status.message()));
    if (absl::Status s = state_.dead_letters.Insert(row, std::move(entry)); !s.ok()) return s;
  }
  if (carried == 0) return absl::OkStatus();
  LOG(WARNING) << "shard " << shard << ": the snapshot at index " << in.applied_index()
               << " carries " << carried
               << " dead letter(s) of the node that made it: " << result.carried_applied
               << " applied here, " << result.carried_kept << " kept as dead letters";
  return absl::OkStatus();
}

absl::StatusOr<ApplyDecision> DeadLetterRetrier::Try(const DeadLetterIndex::Entry& entry,
                                                     const Value& origin, const Value& blob,
                                                     const absl::Status& undecodable,
                                                     int64_t before) {
  const std::string bytes =
      blob.storage_class() == sqlite::StorageClass::kBlob ? blob.bytes() : std::string();
  const uint64_t local_node = state_.local_node;
  DeadLetterChange facts{.undecodable = entry.table.empty(),
                         .snapshot_rows = entry.whole_table,
                         .own = local_node != 0 &&
                                origin.storage_class() == sqlite::StorageClass::kInteger &&
                                static_cast<uint64_t>(origin.integer()) == local_node};
  ShardSnapshot::Table rows;  // Snapshot rows.
  TableChanges t;             // A change.
  const TablePlan* plan = nullptr;
  if (facts.undecodable) {
    facts.readable = undecodable;
  } else {
    // Writes rows without noting them in the local change index: it starts over.
    local_changes_.Clear();
    if (entry.whole_table) {
      if (!rows.ParseFromString(bytes) || SnapshotRowWidth(rows) == 0) {
        facts.readable = absl::FailedPreconditionError("the snapshot rows cannot be decoded");
      }
      // Its table renamed here since (schema_changes.h): the table of the row's name is the one.
      if (rows.table() != entry.table) rows.set_table(entry.table);
    } else if (!t.ParseFromString(bytes) || t.changes_size() != 1) {
      facts.readable = absl::FailedPreconditionError("the dead letter does not hold one change");
    } else {
      // Its table renamed here since (schema_changes.h): the table of the row's name is the one.
      if (t.table() != entry.table) t.set_table(entry.table);
      // Columns renamed or dropped here since the change was read take their place here.
      const TableChanges* as_here = &t;
      TableChanges renamed;
      absl::StatusOr<const TablePlan*> planned = plans_.PlanAsHere(as_here, renamed);
      if (as_here != &t) t = std::move(renamed);
      if (!planned.ok()) return planned.status();
      plan = *planned;
      facts.plan = plan->status;
    }
  }
  ChangeView::Table table(state_, entry.shard, t, plan);
  table.CatchUpLocalRows(local_changes_);
  // A change that cannot be read is never asked about its row: Change's default stands in.
  ChangeView view(table,
                  t.changes_size() == 1 ? t.changes(0) : change::v1::Change::default_instance());
  view.HeldBackAs(entry, before);
  absl::StatusOr<ApplyDecision> decision = DecideDeadLetter(facts, view);
  if (!decision.ok()) return decision;
  const bool keeps_displaced =
      state_.conflicts != nullptr && state_.router != nullptr && state_.versions != nullptr;
  const uint64_t from = origin.storage_class() == sqlite::StorageClass::kInteger
                            ? static_cast<uint64_t>(origin.integer())
                            : 0;
  auto displacing = [&] {
    return DisplacingWrite{.db = state_.db,
                           .versions = *state_.versions,
                           .conflicts = *state_.conflicts,
                           .router = *state_.router,
                           .shard = entry.shard,
                           .raft_index = entry.raft_index,
                           .origin = from};
  };
  if (decision->action == ApplyAction::kKeepDisplaced) {
    if (!keeps_displaced) return ApplyDecision::Act(ApplyAction::kSkipSuperseded);
    absl::StatusOr<std::vector<std::string>> keys = view.VersionKeys();
    if (!keys.ok()) return keys.status();
    absl::Status s = KeepDisplacedNow(
        displacing(), plan->writer, t, t.changes(0), *keys, local_node, view.displaced_by(),
        state_.router->ShardOf(t.table(), view.displaced_by_key()) == entry.shard);
    if (!s.ok()) return s;
    return decision;
  }
  absl::Status written;
  if (decision->action != ApplyAction::kWrite && decision->action != ApplyAction::kWriteUncarried) {
    return decision;
  } else if (entry.whole_table) {
    written = snapshotter_.ReplaceWithSnapshotRows(entry.shard, rows);
  } else {
    auto write = [&] {
      return decision->action == ApplyAction::kWriteUncarried
                 ? ApplyColumns(state_.db, t, t.changes(0), view.uncarried())
                 : ApplyChange(state_.db, plan->writer, t, t.changes(0));
    };
    if (!keeps_displaced || !plan->writer.other_unique_constraints) {
      written = write();
    } else {
      written = WriteKeepingDisplaced(displacing(), plan->writer, t, t.changes(0), write).status();
    }
  }
  if (IsDatabaseFailure(written)) return written;
  if (!written.ok()) return ApplyDecision::DeadLetter(written);
  return decision;
}

}  // namespace marmot::replicator
