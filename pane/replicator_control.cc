#include "pane/replicator_control.h"

#include "absl/strings/str_cat.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::pane {

absl::StatusOr<std::unique_ptr<ReplicatorControl>> ReplicatorControl::Create(
    replicator::Replicator* replicator, std::string version) {
  absl::StatusOr<sqlite::Database> db =
      sqlite::Database::Open(replicator->config().db_path, {.read_only = true});
  if (!db.ok()) return db.status();
  return std::unique_ptr<ReplicatorControl>(
      new ReplicatorControl(replicator, *std::move(db), std::move(version)));
}

absl::StatusOr<admin::v1::GetStatusResponse> ReplicatorControl::GetStatus() {
  const replicator::NodeConfig& config = replicator_->config();
  admin::v1::GetStatusResponse out;
  out.set_node_id(config.node_id);
  out.set_bind(config.bind.ToString());
  out.set_bind_pane(config.bind_pane.ToString());
  out.set_version(version_);
  out.set_uptime_seconds(std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::steady_clock::now() - started_)
                             .count());
  raft::host::NodeHost* host = replicator_->host();
  uint64_t max_lag = 0;
  for (int shard = 0; shard < host->shards(); ++shard) {
    raft::host::ShardInfo info = host->GetShardInfo(shard);
    admin::v1::ShardStatus* s = out.add_shards();
    s->set_shard(shard);
    s->set_leader(info.leader);
    s->set_term(info.term);
    s->set_commit_index(info.commit);
    s->set_applied_index(info.applied);
    s->set_log_entries(info.last_index >= info.first_index ? info.last_index - info.first_index + 1 : 0);
    s->set_snapshot_index(info.snapshot_index);
    s->set_is_leader(info.is_leader);
    if (info.commit > info.applied) max_lag = std::max(max_lag, info.commit - info.applied);
  }
  out.set_max_apply_lag(max_lag);

  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<sqlite::SchemaListing> listing = sqlite::ListUserTables(db_);
  if (!listing.ok()) return listing.status();
  for (const sqlite::TableSchema& t : listing->tables) {
    absl::StatusOr<sqlite::Value> pending = db_.QueryValue(absl::StrCat(
        "SELECT count(*) FROM ", sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(t.name)),
        " WHERE \"__marmot__state\" = 0"));
    if (!pending.ok()) continue;  // No capture on it yet.
    admin::v1::TableBacklog* b = out.add_backlog();
    b->set_table(t.name);
    b->set_pending_changes(pending->integer());
  }
  absl::StatusOr<sqlite::Value> dead = db_.QueryValue("SELECT count(*) FROM \"__marmot__dead_letters\"");
  if (dead.ok()) out.set_dead_letters(dead->integer());
  for (const replicator::Peer& p : config.bootstrap) {
    admin::v1::Node* n = out.add_peers();
    n->set_node_id(p.id);
    n->set_address(p.address.ToString());
  }
  return out;
}

absl::StatusOr<admin::v1::ListDeadLettersResponse> ReplicatorControl::ListDeadLetters(int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  admin::v1::ListDeadLettersResponse out;
  absl::StatusOr<sqlite::Value> total = db_.QueryValue("SELECT count(*) FROM \"__marmot__dead_letters\"");
  if (!total.ok()) return total.status();
  out.set_total(total->integer());
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = db_.QueryRows(absl::StrCat(
      "SELECT id, shard, raft_index, origin, tbl, change_id, error, at_ms FROM "
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
    d->set_table(as_text(r[4]));
    d->set_change_id(as_int(r[5]));
    d->set_error(as_text(r[6]));
    d->set_at_ms(as_int(r[7]));
  }
  return out;
}

bool ReplicatorControl::Ready() {
  raft::host::NodeHost* host = replicator_->host();
  for (int shard = 0; shard < host->shards(); ++shard) {
    raft::host::ShardInfo info = host->GetShardInfo(shard);
    if (info.leader == 0 || info.applied < info.commit) return false;
  }
  return true;
}

}  // namespace marmot::pane
