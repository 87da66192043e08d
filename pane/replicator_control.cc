#include "pane/replicator_control.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pane/cluster_membership.h"
#include "raft/host/grpc_transport.h"
#include "replicator/conflict_store.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::pane {
namespace {

// `bytes` with every byte that is not part of valid UTF-8 replaced by U+FFFD: table names and
// errors may hold any bytes (SQLite accepts them), and a string field of an answer that is not
// UTF-8 would make protobuf refuse (or JSON cut) the whole answer.
std::string ValidUtf8(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= bytes.size();
    uint32_t code = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cont = static_cast<unsigned char>(bytes[i + k]);
      ok = (cont & 0xc0) == 0x80;
      code = (code << 6) | (cont & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not valid either.
    ok = ok && !(len == 2 && code < 0x80) && !(len == 3 && code < 0x800) &&
         !(len == 4 && (code < 0x10000 || code > 0x10ffff)) && !(code >= 0xd800 && code <= 0xdfff);
    if (ok) {
      out.append(bytes.data() + i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

// A shard's verdict as the pane answers it.
void ToShardVerification(const replicator::ShardVerdict& v, admin::v1::ShardVerification* s) {
  s->set_shard(static_cast<uint32_t>(v.shard));
  s->set_index(v.index);
  s->set_divergent(v.divergent());
  for (uint64_t node : v.reported) s->add_reported(node);
  for (uint64_t node : v.unreachable) s->add_unreachable(node);
  std::string error = v.error;
  for (const auto& [node, why] : v.errors) {
    absl::StrAppend(&error, error.empty() ? "" : "; ", "node ", node, " could not measure: ", why);
  }
  s->set_error(ValidUtf8(error));
  for (const replicator::TableVerdict& t : v.tables) {
    admin::v1::TableDivergence* d = s->add_tables();
    d->set_table(ValidUtf8(t.table));
    for (uint64_t node : t.differing) d->add_differing_nodes(node);
    d->set_reference_node(t.reference_node);
    for (const auto& [node, digest] : t.digests) {
      admin::v1::TableDigest* g = d->add_digests();
      g->set_node_id(node);
      g->set_missing(!digest.has_value());
      if (digest.has_value()) {
        g->set_rows(digest->rows);
        g->set_digest(absl::StrFormat("%016x", digest->digest));
      }
    }
    for (const replicator::DifferingKey& k : t.keys) {
      admin::v1::DifferingKey* key = d->add_keys();
      key->set_node_id(k.node);
      std::vector<std::string> values;
      for (const sqlite::Value& value : k.key) values.push_back(value.DebugString());
      key->set_key(ValidUtf8(absl::StrCat("[", absl::StrJoin(values, ", "), "]")));
      key->set_difference(k.kind == replicator::DifferingKey::Kind::kChanged   ? "changed"
                          : k.kind == replicator::DifferingKey::Kind::kMissing ? "missing"
                                                                               : "extra");
    }
    d->set_keys_note(ValidUtf8(t.keys_note));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicatorControl>> ReplicatorControl::Create(
    replicator::Replicator* replicator, std::string version, absl::Duration add_node_timeout) {
  absl::StatusOr<sqlite::Database> db =
      sqlite::Database::Open(replicator->config().db_path, {.read_only = true});
  if (!db.ok()) return db.status();
  return std::unique_ptr<ReplicatorControl>(
      new ReplicatorControl(replicator, *std::move(db), std::move(version), add_node_timeout));
}

absl::StatusOr<admin::v1::GetStatusResponse> ReplicatorControl::GetStatus() {
  const replicator::NodeConfig& config = replicator_->config();
  admin::v1::GetStatusResponse out;
  out.set_node_id(config.node_id);
  out.set_bind(config.bind.ToString());
  out.set_bind_pane(config.bind_pane.ToString());
  out.set_version(version_);
  out.set_uptime_seconds(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  raft::host::NodeHost* host = replicator_->host();
  out.set_cluster_id(absl::BytesToHexString(host->cluster_id()));
  uint64_t max_lag = 0;
  for (int shard = 0; shard < host->shards(); ++shard) {
    raft::host::ShardInfo info = host->GetShardInfo(shard);
    admin::v1::ShardStatus* s = out.add_shards();
    s->set_shard(shard);
    s->set_leader(info.leader);
    s->set_term(info.term);
    s->set_commit_index(info.commit);
    s->set_applied_index(info.applied);
    s->set_log_entries(info.last_index >= info.first_index ? info.last_index - info.first_index + 1
                                                           : 0);
    s->set_snapshot_index(info.snapshot_index);
    s->set_is_leader(info.is_leader);
    s->set_halted(ValidUtf8(info.halted));
    s->set_waiting(ValidUtf8(info.waiting));
    if (info.commit > info.applied) max_lag = std::max(max_lag, info.commit - info.applied);
  }
  out.set_max_apply_lag(max_lag);

  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db_);
  if (!listing.ok()) return listing.status();
  for (const sqlite::TableSchema& t : listing->tables) {
    // Rows up to CommittedThrough are replicated and wait only to be deleted (ShipperOptions).
    absl::StatusOr<sqlite::Value> pending = db_.QueryValue(absl::StrCat(
        "SELECT count(*) FROM ", sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(t.name)),
        " WHERE \"__marmot__state\" = 0 AND \"__marmot__id\" > ",
        replicator_->CommittedThrough(t.name)));
    if (!pending.ok()) continue;  // No capture on it yet.
    admin::v1::TableBacklog* b = out.add_backlog();
    b->set_table(ValidUtf8(t.name));
    b->set_pending_changes(pending->integer());
  }
  absl::StatusOr<sqlite::Value> dead =
      db_.QueryValue("SELECT count(*) FROM \"__marmot__dead_letters\"");
  if (dead.ok()) out.set_dead_letters(dead->integer());
  absl::StatusOr<sqlite::Value> conflicts =
      db_.QueryValue("SELECT count(*) FROM \"__marmot__conflicts\"");
  if (conflicts.ok()) out.set_conflicts(conflicts->integer());
  replicator::ReplicatorMetrics& metrics = replicator_->metrics();
  out.set_schema_conflicts(static_cast<int64_t>(metrics.schema_conflicts.Value()));
  out.set_schema_changes_refused(static_cast<int64_t>(metrics.schema_changes_refused.Value()));
  out.set_schema_changes_not_replicated(
      static_cast<int64_t>(metrics.schema_changes_not_replicated.Value()));
  out.set_apply_paused_seconds(metrics.apply_paused_seconds.Value());
  // The other current members of any shard (not the founders named at start: nodes come and go),
  // exactly as ListNodes tells them: address, reachable, learner.
  absl::StatusOr<admin::v1::ListNodesResponse> nodes = ListNodes();
  if (!nodes.ok()) return nodes.status();
  for (const admin::v1::Node& n : nodes->nodes()) {
    if (n.node_id() != config.node_id) *out.add_peers() = n;
  }
  return out;
}

absl::StatusOr<admin::v1::ListDeadLettersResponse> ReplicatorControl::ListDeadLetters(int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  admin::v1::ListDeadLettersResponse out;
  absl::StatusOr<sqlite::Value> total =
      db_.QueryValue("SELECT count(*) FROM \"__marmot__dead_letters\"");
  if (!total.ok()) return total.status();
  out.set_total(total->integer());
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = db_.QueryRows(
      absl::StrCat("SELECT id, shard, raft_index, origin, tbl, change_id, error, at_ms FROM "
                   "\"__marmot__dead_letters\" ORDER BY id DESC LIMIT ",
                   limit));
  if (!rows.ok()) return rows.status();
  auto as_int = [](const sqlite::Value& v) -> int64_t {
    return v.storage_class() == sqlite::StorageClass::kInteger ? v.integer() : 0;
  };
  auto as_text = [](const sqlite::Value& v) -> std::string {
    return v.storage_class() == sqlite::StorageClass::kText ? v.bytes() : "";
  };
  for (const auto& r : *rows) {
    admin::v1::DeadLetter* d = out.add_dead_letters();
    d->set_id(as_int(r[0]));
    d->set_shard(static_cast<uint32_t>(as_int(r[1])));
    d->set_raft_index(static_cast<uint64_t>(as_int(r[2])));
    d->set_origin_node(static_cast<uint64_t>(as_int(r[3])));
    d->set_table(ValidUtf8(as_text(r[4])));
    d->set_change_id(as_int(r[5]));
    d->set_error(ValidUtf8(as_text(r[6])));
    d->set_at_ms(as_int(r[7]));
  }
  return out;
}

absl::StatusOr<admin::v1::RetryDeadLettersResponse> ReplicatorControl::RetryDeadLetters(
    const std::vector<int64_t>& ids) {
  absl::StatusOr<replicator::RetryResult> r = replicator_->RetryDeadLetters(ids);
  if (!r.ok()) return r.status();
  admin::v1::RetryDeadLettersResponse out;
  out.set_applied(r->applied);
  out.set_still_failing(r->still_failing);
  return out;
}

absl::StatusOr<admin::v1::VerifyResponse> ReplicatorControl::Verify(const std::vector<int>& shards,
                                                                    absl::Duration timeout) {
  absl::StatusOr<replicator::VerifyResult> r = replicator_->Verify(shards, timeout);
  if (!r.ok()) return r.status();
  admin::v1::VerifyResponse out;
  out.set_divergent_shards(static_cast<uint32_t>(r->divergent_shards));
  for (const replicator::ShardVerdict& v : r->shards) ToShardVerification(v, out.add_shards());
  return out;
}

absl::StatusOr<admin::v1::RepairResponse> ReplicatorControl::Repair(int shard,
                                                                    absl::Duration timeout) {
  absl::StatusOr<replicator::RepairResult> r = replicator_->Repair(shard, timeout);
  if (!r.ok()) return r.status();
  admin::v1::RepairResponse out;
  out.set_rewritten(r->rewritten);
  out.set_deleted(r->deleted);
  out.set_rounds(static_cast<uint32_t>(r->rounds));
  ToShardVerification(r->after, out.mutable_after());
  return out;
}

namespace {

// A value of a kept change as the pane shows it: its storage class kept; TEXT that is not
// valid UTF-8 goes as its bytes.
admin::v1::SqlValue ToSqlValue(const change::v1::Value& v) {
  admin::v1::SqlValue out;
  switch (v.kind_case()) {
    case change::v1::Value::kInteger:
      out.set_integer(v.integer());
      break;
    case change::v1::Value::kReal:
      out.set_real(v.real());
      break;
    case change::v1::Value::kText:
      if (ValidUtf8(v.text()) == v.text()) {
        out.set_text(v.text());
      } else {
        out.set_text_bytes(v.text());
      }
      break;
    case change::v1::Value::kBlob:
      out.set_blob(v.blob());
      break;
    default:
      out.set_null(true);
  }
  return out;
}

void AddColumn(google::protobuf::RepeatedPtrField<admin::v1::ColumnValue>* to,
               const std::string& column, const change::v1::Value& value) {
  admin::v1::ColumnValue* c = to->Add();
  c->set_column(ValidUtf8(column));
  *c->mutable_value() = ToSqlValue(value);
}

std::string OpName(const std::string& letter) {
  if (letter == "I") return "insert";
  if (letter == "U") return "update";
  if (letter == "D") return "delete";
  if (letter == "K") return "rekey";
  return ValidUtf8(letter);
}

// The losing change's row and old key, from the TableChanges holding it alone (ConflictStore).
// One that does not read leaves them empty.
void DecodeLosingChange(const std::string& kept, admin::v1::Conflict* c) {
  change::v1::TableChanges t;
  if (!t.ParseFromString(kept) || t.changes_size() != 1) return;
  const change::v1::Change& change = t.changes(0);
  const bool by_rowid = t.key_columns_size() == 0;
  if (change.op() != change::v1::OP_DELETE) {
    if (by_rowid && change.has_rowid()) AddColumn(c->mutable_row(), "rowid", change.rowid());
    for (int i = 0; i < change.row_size() && i < t.columns_size(); ++i) {
      AddColumn(c->mutable_row(), t.columns(i), change.row(i));
    }
  }
  for (int i = 0; i < change.old_key_size(); ++i) {
    const std::string column = by_rowid                   ? "rowid"
                               : i < t.key_columns_size() ? t.key_columns(i)
                                                          : absl::StrCat("#", i);
    AddColumn(c->mutable_old_key(), column, change.old_key(i));
  }
}

int64_t AsInt(const sqlite::Value& v) {
  return v.storage_class() == sqlite::StorageClass::kInteger ? v.integer() : 0;
}
std::string AsBytes(const sqlite::Value& v) {
  return v.storage_class() == sqlite::StorageClass::kText ||
                 v.storage_class() == sqlite::StorageClass::kBlob
             ? v.bytes()
             : "";
}

// Runs `sql` with `values` bound; the rows.
absl::StatusOr<std::vector<std::vector<sqlite::Value>>> QueryBound(
    sqlite::Database& db, const std::string& sql, const std::vector<sqlite::Value>& values) {
  absl::StatusOr<sqlite::Statement> stmt = db.Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(values); !s.ok()) return s;
  std::vector<std::vector<sqlite::Value>> rows;
  for (;;) {
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) return rows;
    rows.push_back(stmt->Row());
  }
}

std::string ConflictsTable() { return sqlite::QuoteIdentifier(replicator::kConflictsTable); }

}  // namespace

absl::StatusOr<admin::v1::ListConflictsResponse> ReplicatorControl::ListConflicts(
    int limit, const std::string& table, int64_t before_id) {
  std::lock_guard<std::mutex> lock(mu_);
  admin::v1::ListConflictsResponse out;
  const std::string of_table = table.empty() ? "" : " WHERE tbl = ?1";
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> total =
      QueryBound(db_, absl::StrCat("SELECT count(*) FROM ", ConflictsTable(), of_table),
                 table.empty() ? std::vector<sqlite::Value>{}
                               : std::vector<sqlite::Value>{sqlite::Value::Text(table)});
  if (!total.ok()) return total.status();
  out.set_total(AsInt(total->front().front()));
  absl::StatusOr<sqlite::Statement> stmt = db_.Prepare(
      absl::StrCat("SELECT id, shard, raft_index, tbl, key, origin, change_id, op, change, "
                   "winner_origin, winner_change_id, at_ms FROM ",
                   ConflictsTable(), " WHERE (?1 IS NULL OR tbl = ?1) AND id < ?2 ",
                   "ORDER BY id DESC LIMIT ?3"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s =
          stmt->BindAll({table.empty() ? sqlite::Value::Null() : sqlite::Value::Text(table),
                         sqlite::Value::Integer(before_id > 0 ? before_id : INT64_MAX),
                         sqlite::Value::Integer(limit)});
      !s.ok()) {
    return s;
  }
  // Rows of many MiB each make a page of them too large to hold or send: it ends before the
  // conflict that would take it past kListBytes (the first one always goes).
  size_t bytes = 0;
  for (;;) {
    absl::StatusOr<bool> more = stmt->Step();
    if (!more.ok()) return more.status();
    if (!*more) break;
    const std::vector<sqlite::Value> r = stmt->Row();
    const size_t kept = AsBytes(r[8]).size();
    if (out.conflicts_size() > 0 && bytes + kept > kListBytes) break;
    bytes += kept;
    admin::v1::Conflict* c = out.add_conflicts();
    c->set_id(AsInt(r[0]));
    c->set_shard(static_cast<uint32_t>(AsInt(r[1])));
    c->set_raft_index(static_cast<uint64_t>(AsInt(r[2])));
    c->set_table(ValidUtf8(AsBytes(r[3])));
    c->set_key(ValidUtf8(AsBytes(r[4])));
    c->set_origin_node(static_cast<uint64_t>(AsInt(r[5])));
    c->set_change_id(AsInt(r[6]));
    c->set_op(OpName(AsBytes(r[7])));
    DecodeLosingChange(AsBytes(r[8]), c);
    c->set_winner_origin_node(static_cast<uint64_t>(AsInt(r[9])));
    c->set_winner_change_id(AsInt(r[10]));
    c->set_at_ms(AsInt(r[11]));
  }
  return out;
}

absl::StatusOr<admin::v1::ResolveConflictResponse> ReplicatorControl::ResolveConflict(
    const admin::v1::ResolveConflictRequest& request) {
  // What names each conflict on every node, by shard; this node's ids, each counted once.
  std::map<int, std::vector<change::v1::ConflictId>> by_shard;
  std::set<int64_t> local_ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string columns =
        absl::StrCat("SELECT id, shard, origin, tbl, change_id FROM ", ConflictsTable());
    std::vector<std::vector<sqlite::Value>> found;
    auto take = [&](const std::vector<std::vector<sqlite::Value>>& rows) {
      found.insert(found.end(), rows.begin(), rows.end());
    };
    if (request.all()) {
      absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
          request.table().empty() ? QueryBound(db_, columns, {})
                                  : QueryBound(db_, absl::StrCat(columns, " WHERE tbl = ?1"),
                                               {sqlite::Value::Text(request.table())});
      if (!rows.ok()) return rows.status();
      take(*rows);
    }
    for (int64_t id : request.ids()) {
      absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
          QueryBound(db_, absl::StrCat(columns, " WHERE id = ?1"), {sqlite::Value::Integer(id)});
      if (!rows.ok()) return rows.status();
      if (rows->empty()) {
        return absl::NotFoundError(
            absl::StrCat("this node keeps no conflict ", id, " (nothing was resolved)"));
      }
      take(*rows);
    }
    for (const admin::v1::ConflictId& c : request.conflicts()) {
      absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows =
          c.origin_node() > static_cast<uint64_t>(INT64_MAX)
              ? std::vector<std::vector<sqlite::Value>>{}
              : QueryBound(
                    db_,
                    absl::StrCat(columns, " WHERE origin = ?1 AND tbl = ?2 AND change_id = ?3"),
                    {sqlite::Value::Integer(static_cast<int64_t>(c.origin_node())),
                     sqlite::Value::Text(c.table()), sqlite::Value::Integer(c.change_id())});
      if (!rows.ok()) return rows.status();
      if (rows->empty()) {
        return absl::NotFoundError(absl::StrCat("this node keeps no conflict of change ",
                                                c.change_id(), " of ", c.table(), " from node ",
                                                c.origin_node(), " (nothing was resolved)"));
      }
      take(*rows);
    }
    for (const std::vector<sqlite::Value>& r : found) {
      if (!local_ids.insert(AsInt(r[0])).second) continue;  // Named twice.
      change::v1::ConflictId id;
      id.set_origin_node(static_cast<uint64_t>(AsInt(r[2])));
      id.set_table(AsBytes(r[3]));
      id.set_change_id(AsInt(r[4]));
      by_shard[static_cast<int>(AsInt(r[1]))].push_back(std::move(id));
    }
  }
  raft::host::NodeHost* host = replicator_->host();
  std::map<int, uint64_t> applied_at;  // Per shard, the last entry proposed.
  for (const auto& [shard, ids] : by_shard) {
    for (size_t from = 0; from < ids.size(); from += kResolvedPerEntry) {
      change::v1::ChangeBatch batch;
      batch.set_origin_node(replicator_->config().node_id);
      for (size_t i = from; i < std::min(ids.size(), from + kResolvedPerEntry); ++i) {
        *batch.add_resolved_conflicts() = ids[i];
      }
      absl::StatusOr<uint64_t> index =
          host->ProposeAndWait(static_cast<uint64_t>(shard), batch.SerializeAsString());
      if (!index.ok()) {
        return absl::Status(
            index.status().code(),
            absl::StrCat("resolving conflicts of shard ", shard, ": ", index.status().message(),
                         " (call again: what was resolved stays resolved)"));
      }
      applied_at[shard] = *index;
    }
  }
  // Applied here once the proposal is done; the apply round that holds the entry commits (with
  // the shard's applied index) right after.
  const absl::Time deadline = absl::Now() + kResolveWait;
  for (const auto& [shard, index] : applied_at) {
    for (;;) {
      absl::StatusOr<std::vector<std::vector<sqlite::Value>>> applied;
      {
        std::lock_guard<std::mutex> lock(mu_);
        applied =
            QueryBound(db_, "SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = ?1",
                       {sqlite::Value::Integer(shard)});
      }
      if (!applied.ok()) return applied.status();
      if (!applied->empty() && AsInt(applied->front().front()) >= static_cast<int64_t>(index)) {
        break;
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "the resolution committed in shard ", shard, " at index ", index,
            ", but this node has not applied it yet (every node clears the conflicts as it does)"));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  admin::v1::ResolveConflictResponse out;
  out.set_resolved(static_cast<int64_t>(local_ids.size()));
  return out;
}

bool ReplicatorControl::Ready() {
  raft::host::NodeHost* host = replicator_->host();
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(ready_mu_);
  caught_up_at_.resize(host->shards(), absl::InfinitePast());
  bool ready = true;
  for (int shard = 0; shard < host->shards(); ++shard) {
    raft::host::ShardInfo info = host->GetShardInfo(shard);
    if (info.applied >= info.commit) caught_up_at_[shard] = now;
    const bool close = info.commit - std::min(info.applied, info.commit) <= kReadyLag;
    ready = ready && info.leader != 0 && (close || now - caught_up_at_[shard] <= kReadyGrace);
  }
  return ready;
}

namespace {

std::set<uint64_t> Voters(const raft::host::ShardInfo& info) {
  return {info.conf_state.voters().begin(), info.conf_state.voters().end()};
}

}  // namespace

absl::StatusOr<admin::v1::ListNodesResponse> ReplicatorControl::ListNodes() {
  raft::host::NodeHost* host = replicator_->host();
  std::map<uint64_t, admin::v1::Node> nodes;
  // Configured peers, and every node added since (the host keeps their addresses).
  std::map<uint64_t, std::string> addresses = host->PeerAddresses();
  for (const raft::host::Member& p : replicator_->config().bootstrap)
    addresses.emplace(p.id, p.address.ToString());
  addresses[replicator_->config().node_id] = replicator_->config().bind.ToString();
  std::set<uint64_t> voters_everywhere;
  for (int shard = 0; shard < host->shards(); ++shard) {
    raft::host::ShardInfo info = host->GetShardInfo(shard);
    for (uint64_t v : info.conf_state.voters()) nodes[v].set_node_id(v);
    for (uint64_t l : info.conf_state.learners()) {
      nodes[l].set_node_id(l);
      nodes[l].set_learner(true);
    }
    if (info.leader != 0) nodes[info.leader].set_reachable(true);
  }
  // Followers that lead nothing are reachable too when a stream to them is open.
  if (const raft::host::GrpcTransport* transport = host->grpc_transport(); transport != nullptr) {
    for (uint64_t id : transport->ConnectedPeers()) {
      if (auto n = nodes.find(id); n != nodes.end()) n->second.set_reachable(true);
    }
  }
  admin::v1::ListNodesResponse out;
  for (auto& [id, node] : nodes) {
    if (id == replicator_->config().node_id) node.set_reachable(true);
    if (addresses.count(id)) node.set_address(addresses[id]);
    *out.add_nodes() = node;
  }
  return out;
}

absl::Status ReplicatorControl::AddNode(uint64_t node_id, const std::string& address) {
  return AddNodeToEveryShard(*replicator_->host(), node_id, address, add_node_timeout_);
}

absl::Status ReplicatorControl::RemoveNode(uint64_t node_id) {
  return RemoveNodeFromEveryShard(*replicator_->host(), node_id);
}

namespace {

// How long a leadership transfer may take before the pane says it did not happen: the target
// must catch up and win an election (a second or two on a loaded machine).
constexpr absl::Duration kTransferWait = absl::Seconds(4);

// Polls `done` every 20 ms until it holds or `wait` passed; returns whether it held.
bool PollUntil(const std::function<bool()>& done, absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// Waits until every shard of `moves` (shard -> target) is led by its target, or `wait` passed;
// returns the shards that moved.
std::set<int> WaitForMoves(raft::host::NodeHost& host, const std::map<int, uint64_t>& moves,
                           absl::Duration wait) {
  std::set<int> moved;
  PollUntil(
      [&] {
        for (const auto& [shard, target] : moves) {
          if (host.GetShardInfo(shard).leader == target) moved.insert(shard);
        }
        return moved.size() == moves.size();
      },
      wait);
  return moved;
}

}  // namespace

absl::Status ReplicatorControl::TransferLeader(uint32_t shard, uint64_t node_id) {
  raft::host::NodeHost* host = replicator_->host();
  if (static_cast<int>(shard) >= host->shards()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard, " does not exist (", host->shards(), " shards)"));
  }
  raft::host::ShardInfo info = host->GetShardInfo(shard);
  if (!Voters(info).count(node_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", node_id, " is not a voter of shard ", shard));
  }
  if (info.leader == 0)
    return absl::UnavailableError(absl::StrCat("shard ", shard, " has no leader"));
  if (info.leader == node_id) return absl::OkStatus();
  host->TransferLeadership(shard, node_id);
  // Answer what happened: a node that is down or far behind never takes the leadership.
  if (WaitForMoves(*host, {{static_cast<int>(shard), node_id}}, kTransferWait).empty()) {
    return absl::DeadlineExceededError(
        absl::StrCat("node ", node_id, " did not take the leadership of shard ", shard, " within ",
                     absl::FormatDuration(kTransferWait), " (down, unreachable or behind?); node ",
                     host->GetShardInfo(shard).leader, " leads it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<admin::v1::BalanceLeadersResponse> ReplicatorControl::BalanceLeaders() {
  raft::host::NodeHost* host = replicator_->host();
  admin::v1::BalanceLeadersResponse out;
  std::set<uint64_t> unreachable;  // Offered a leadership and did not take it.
  // A node that is down is found by the transfers it does not take; the shards then balance
  // over the others in a second pass.
  for (int pass = 0; pass < 2; ++pass) {
    std::map<uint64_t, std::vector<int>> led;  // live voter -> shards it leads
    for (int shard = 0; shard < host->shards(); ++shard) {
      raft::host::ShardInfo info = host->GetShardInfo(shard);
      if (info.leader == 0)
        return absl::UnavailableError(absl::StrCat("shard ", shard, " has no leader"));
      for (uint64_t v : info.conf_state.voters()) {
        if (!unreachable.count(v)) led[v];  // Voters that lead nothing count too.
      }
      led[info.leader].push_back(shard);
    }
    // Even: one shard at a time from the node leading the most to the one leading the fewest,
    // until they differ by at most one (16 shards over 3 nodes: 6, 5, 5).
    std::map<int, uint64_t> moves;  // shard -> new leader
    auto by_count = [](const auto& a, const auto& b) { return a.second.size() < b.second.size(); };
    for (;;) {
      auto from = std::max_element(led.begin(), led.end(), by_count);
      auto to = std::min_element(led.begin(), led.end(), by_count);
      if (from->second.size() <= to->second.size() + 1) break;
      const int shard = from->second.back();
      from->second.pop_back();
      to->second.push_back(shard);
      moves[shard] = to->first;
    }
    for (const auto& [shard, to] : moves) host->TransferLeadership(shard, to);
    if (moves.empty()) break;
    const std::set<int> moved = WaitForMoves(*host, moves, kTransferWait);
    out.set_transfers(out.transfers() + static_cast<uint32_t>(moved.size()));
    bool failed = false;
    for (const auto& [shard, to] : moves) {
      if (moved.count(shard)) continue;
      failed = true;
      unreachable.insert(to);
    }
    if (!failed) break;
  }
  for (uint64_t node : unreachable) out.add_unreachable(node);
  return out;
}

absl::Status ReplicatorControl::TriggerSnapshot(int shard) {
  raft::host::NodeHost* host = replicator_->host();
  if (shard >= host->shards()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard, " does not exist (", host->shards(), " shards)"));
  }
  // Answers once the snapshots are taken, so that the indexes the caller reads next are theirs.
  std::map<int, uint64_t> applied;  // shard -> applied index when asked
  for (int s = 0; s < host->shards(); ++s) {
    if (shard >= 0 && s != shard) continue;
    applied[s] = host->GetShardInfo(s).applied;
    host->RequestSnapshot(s);
  }
  auto missing = [&] {
    std::vector<int> shards;
    for (const auto& [s, index] : applied) {
      if (host->GetShardInfo(s).snapshot_index < index) shards.push_back(s);
    }
    return shards;
  };
  // A snapshot reads every table of the database (its shard's rows among all), one shard after
  // the other: a large database takes long for all of them, so the wait is bounded per shard
  // (no shard done within 30 s), not for all at once.
  for (size_t left = missing().size(); left > 0;) {
    PollUntil([&] { return missing().size() < left; }, absl::Seconds(30));
    const std::vector<int> now = missing();
    if (now.size() == left) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the snapshot of shard ", now.front(), " at index ", applied[now.front()],
          " was not taken within 30 s (", now.size(),
          " shard(s) still to go; they go on: GetStatus shows each shard's snapshot_index)"));
    }
    left = now.size();
  }
  return absl::OkStatus();
}

absl::Status ReplicatorControl::Backup(
    const std::function<bool(const admin::v1::BackupChunk&)>& write) {
  namespace fs = std::filesystem;
  std::string path =
      (fs::temp_directory_path() /
       absl::StrCat("marmot-backup-", replicator_->config().node_id, "-",
                    std::chrono::steady_clock::now().time_since_epoch().count(), ".db"))
          .string();
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(path + suffix, ec);
    }
  } cleanup{path};
  // The copy holds every row: readable by marmot's user only (SQLite gives its journal the
  // same mode), as the database itself should be.
  if (int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600); fd >= 0) {
    ::close(fd);
  } else {
    return absl::InternalError(
        absl::StrCat("cannot create the backup file ", path, ": ", std::strerror(errno)));
  }
  {
    absl::StatusOr<sqlite::Database> source =
        sqlite::Database::Open(replicator_->config().db_path, {.read_only = true});
    if (!source.ok()) return source.status();
    absl::StatusOr<sqlite::Database> copy = sqlite::Database::Open(path);
    if (!copy.ok()) return copy.status();
    // One step copies every page from one read transaction: a consistent copy.
    sqlite3_backup* b = sqlite3_backup_init(copy->raw(), "main", source->raw(), "main");
    if (b == nullptr) return absl::InternalError(sqlite3_errmsg(copy->raw()));
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
      return absl::UnavailableError(absl::StrCat("backup failed: ", sqlite3_errstr(rc)));
    }
    if (absl::Status s = sqlite::RemoveCapture(*copy); !s.ok()) return s;
    // A single self-contained file: no WAL beside it.
    if (absl::Status s = copy->Exec("PRAGMA journal_mode=DELETE"); !s.ok()) return s;
  }
  std::ifstream in(path, std::ios::binary);
  const uint64_t total = fs::file_size(path);
  std::string buf(256 << 10, '\0');
  uint64_t offset = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    admin::v1::BackupChunk chunk;
    chunk.set_data(buf.data(), static_cast<size_t>(n));
    chunk.set_offset(offset);
    chunk.set_total_size(total);
    if (!write(chunk)) return absl::CancelledError("the client went away");
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace marmot::pane
