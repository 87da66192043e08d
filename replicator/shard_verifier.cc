#include "replicator/shard_verifier.h"

#include <glog/logging.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::replicator {
namespace {

using change::v1::VerifyMarker;
using change::v1::VerifyReport;
using sqlite::Value;

// How late a node still measures a marker, past its deadline by its own clock: clocks of
// nodes differ a little.
constexpr absl::Duration kMeasureGrace = absl::Minutes(1);

// A table's value at one node: its digest, or nullopt when it is missing there.
using Held = std::optional<TableDigest>;

// `folded`: compare the digests over column names in lower case (shard_digest.h), which every
// node holding the table reported.
bool Same(const Held& a, const Held& b, bool folded) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->rows == b->rows &&
         (folded ? a->digest_folded == b->digest_folded : a->digest == b->digest);
}

std::vector<Value> KeyOf(const VerifyReport::KeyHash& k) {
  std::vector<Value> key;
  for (const change::v1::Value& v : k.key()) key.push_back(FromWire(v));
  return key;
}

}  // namespace

ShardVerdict CompareDigests(int shard, const std::map<uint64_t, VerifyReport>& reports,
                            uint64_t leader) {
  ShardVerdict verdict;
  verdict.shard = shard;
  // Tables by their names in ASCII lower case: one table to SQLite, which nodes may spell
  // otherwise (`Item` made on one, `item` on another at once).
  std::map<uint64_t, std::map<std::string, TableDigest>> held;  // node -> table -> digest
  std::set<std::string> tables;
  // Tables some node reported without a digest over folded names (a node of an older version).
  std::set<std::string> unfolded;
  for (const auto& [node, report] : reports) {
    verdict.reported.push_back(node);
    if (verdict.index == 0) verdict.index = report.index();
    if (!report.error().empty()) {
      verdict.errors[node] = report.error();
      continue;
    }
    for (const VerifyReport::TableDigest& t : report.tables()) {
      const std::string lower = absl::AsciiStrToLower(t.table());
      held[node][lower] = {.table = t.table(),
                           .rows = t.rows(),
                           .digest = t.digest(),
                           .digest_folded = t.digest_folded()};
      tables.insert(lower);
      if (!t.has_digest_folded()) unfolded.insert(lower);
    }
  }
  for (const std::string& table : tables) {
    TableVerdict t;
    for (const auto& [node, digests] : held) {
      auto it = digests.find(table);
      t.digests[node] = it == digests.end() ? Held() : Held(it->second);
    }
    const bool folded = unfolded.count(table) == 0;
    auto same = [folded](const Held& a, const Held& b) { return Same(a, b, folded); };
    // The reference: what most nodes hold; a tie goes to the leader, then the lowest id.
    uint64_t best = 0;
    int best_count = -1;
    for (const auto& [node, value] : t.digests) {
      int count = 0;
      for (const auto& [other, other_value] : t.digests) count += same(value, other_value);
      const bool leader_wins =
          count == best_count && node == leader && !same(value, t.digests[best]);
      if (count > best_count || leader_wins) {
        best = node;
        best_count = count;
      }
    }
    t.reference_node = best;
    // Named as the reference node spells it (or, when it lacks the table, a node that has it).
    for (const auto& [node, value] : t.digests) {
      if (value.has_value() && (t.table.empty() || node == best)) t.table = value->table;
    }
    for (const auto& [node, value] : t.digests) {
      if (!same(value, t.digests[best])) t.differing.push_back(node);
    }
    if (!t.differing.empty()) verdict.tables.push_back(std::move(t));
  }
  return verdict;
}

std::optional<std::vector<Value>> CompareKeyPages(uint64_t node, const VerifyReport& reference,
                                                  const VerifyReport& other,
                                                  std::vector<DifferingKey>& out) {
  // The keys both pages cover: up to the smaller of their last keys when a page has more.
  std::optional<std::vector<Value>> bound;
  for (const VerifyReport* page : {&reference, &other}) {
    if (!page->more_keys() || page->keys_size() == 0) continue;
    std::vector<Value> last = KeyOf(page->keys(page->keys_size() - 1));
    if (!bound.has_value() || CompareKeys(last, *bound) < 0) bound = std::move(last);
  }
  auto covered = [&](const std::vector<Value>& key) {
    return !bound.has_value() || CompareKeys(key, *bound) <= 0;
  };
  // Both pages are in key order: merge them.
  std::vector<DifferingKey> found;
  int r = 0, o = 0;
  while (r < reference.keys_size() || o < other.keys_size()) {
    std::optional<std::vector<Value>> rk, ok;
    if (r < reference.keys_size()) rk = KeyOf(reference.keys(r));
    if (o < other.keys_size()) ok = KeyOf(other.keys(o));
    if (rk.has_value() && !covered(*rk)) rk.reset();
    if (ok.has_value() && !covered(*ok)) ok.reset();
    if (!rk.has_value() && !ok.has_value()) break;
    const int c = !rk.has_value() ? 1 : !ok.has_value() ? -1 : CompareKeys(*rk, *ok);
    if (c < 0) {
      found.push_back({node, *std::move(rk), DifferingKey::Kind::kMissing});
      ++r;
    } else if (c > 0) {
      found.push_back({node, *std::move(ok), DifferingKey::Kind::kExtra});
      ++o;
    } else {
      if (reference.keys(r).row_hash() != other.keys(o).row_hash()) {
        found.push_back({node, *std::move(rk), DifferingKey::Kind::kChanged});
      }
      ++r;
      ++o;
    }
  }
  for (DifferingKey& k : found) out.push_back(std::move(k));
  return bound;
}

ShardVerifier::ShardVerifier(Options options)
    : options_(options), router_([&options] {
        ShardRouter router(options.shards);
        router.set_renames(options.renames);
        return router;
      }()) {
  absl::MutexLock l(&mu_);
  // Markers of this process never repeat those of an earlier one that may still be in a log.
  next_marker_ = static_cast<uint64_t>(absl::ToUnixMicros(options_.env->WallNow()));
  divergent_.assign(options_.shards, false);
}

void ShardVerifier::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (periodic_.joinable()) periodic_.join();
  if (repair_writer_.joinable()) repair_writer_.join();
}

uint64_t ShardVerifier::NewMarkerId() {
  absl::MutexLock l(&mu_);
  const uint64_t counter = ++next_marker_ & ((uint64_t{1} << 48) - 1);
  return ((options_.node_id & 0xffff) << 48) | counter;
}

int64_t ShardVerifier::DeadlineMs(absl::Time deadline) {
  return absl::ToUnixMillis(options_.env->WallNow() + (deadline - options_.env->MonotonicNow()));
}

bool ShardVerifier::ShouldMeasure(const VerifyMarker& marker) {
  if (host_.load() == nullptr) return false;
  return options_.env->WallNow() <= absl::FromUnixMillis(marker.deadline_ms()) + kMeasureGrace;
}

void ShardVerifier::Measure(int shard, uint64_t index, const VerifyMarker& marker,
                            sqlite::Database& db) {
  raft::host::NodeHost* host = host_.load();
  if (host == nullptr) return;
  VerifyReport report;
  report.set_marker(marker.id());
  report.set_node(options_.node_id);
  report.set_shard(static_cast<uint32_t>(shard));
  report.set_index(index);
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<sqlite::Transaction> read = sqlite::Transaction::Begin(db);
    if (!read.ok()) return read.status();
    if (marker.table().empty()) {
      absl::StatusOr<std::vector<TableDigest>> digests = DigestShard(db, router_, shard);
      if (!digests.ok()) return digests.status();
      for (const TableDigest& d : *digests) {
        VerifyReport::TableDigest* t = report.add_tables();
        t->set_table(d.table);
        t->set_rows(d.rows);
        t->set_digest(d.digest);
        t->set_digest_folded(d.digest_folded);
      }
    } else {
      std::vector<Value> after;
      for (const change::v1::Value& v : marker.after()) after.push_back(FromWire(v));
      const int limit = static_cast<int>(std::clamp<uint32_t>(marker.limit(), 1, kKeysPerPage));
      absl::StatusOr<KeyPage> page =
          ListShardKeys(db, router_, shard, marker.table(), after, limit);
      if (!page.ok()) return page.status();
      size_t bytes = 0;
      for (const KeyHash& k : page->keys) {
        VerifyReport::KeyHash* out = report.add_keys();
        for (const Value& v : k.key) *out->add_key() = ToWire(v);
        out->set_row_hash(k.row_hash);
        bytes += out->ByteSizeLong();
        if (bytes > kMaxKeyPageBytes) {
          report.set_more_keys(true);
          break;
        }
      }
      if (page->more) report.set_more_keys(true);
    }
    return read->Commit();
  }();
  if (!status.ok()) {
    LOG(WARNING) << "shard " << shard << " node " << options_.node_id << ": verify marker "
                 << marker.id() << " at index " << index << " not measured: " << status;
    report.clear_tables();
    report.clear_keys();
    report.set_error(std::string(status.message()));
  }
  change::v1::ChangeBatch batch;
  batch.set_origin_node(options_.node_id);
  *batch.mutable_verify_report() = std::move(report);
  host->Propose(static_cast<uint64_t>(shard), batch.SerializeAsString(),
                [shard, id = marker.id(), node = options_.node_id](absl::Status s, uint64_t) {
                  if (!s.ok()) {
                    LOG(WARNING) << "shard " << shard << " node " << node
                                 << ": the report of verify marker " << id
                                 << " did not commit: " << s;
                  }
                });
}

void ShardVerifier::Received(int shard, const VerifyReport& report) {
  if (report.shard() != static_cast<uint32_t>(shard) || report.node() == 0) {
    LOG(WARNING) << "shard " << shard << ": dropping a verify report of shard " << report.shard()
                 << " from node " << report.node();
    return;
  }
  absl::MutexLock l(&mu_);
  auto it = pending_.find({report.marker(), shard});
  if (it == pending_.end()) return;
  // A marker proposed again may commit twice: each node's report of the first is kept, so that
  // the nodes compare what they held at the same index. Bounded by the ids a hostile member
  // could claim: no more than a cluster has nodes.
  auto& reports = it->second.reports;
  auto had = reports.find(report.node());
  if (had != reports.end()) {
    if (had->second.index() > report.index()) had->second = report;
    return;
  }
  if (reports.size() < 1024) reports[report.node()] = report;
}

void ShardVerifier::ProposeMarker(int shard, const VerifyMarker& marker) {
  change::v1::ChangeBatch batch;
  batch.set_origin_node(options_.node_id);
  *batch.mutable_verify_marker() = marker;
  const PendingKey key{marker.id(), shard};
  {
    absl::MutexLock l(&mu_);
    pending_[key].payload = batch.SerializeAsString();
  }
  Propose(key);
}

void ShardVerifier::Propose(const PendingKey& key) {
  std::string payload;
  {
    absl::MutexLock l(&mu_);
    Pending& p = pending_[key];
    p.proposing = true;
    p.proposal_error.clear();
    p.proposed_at = options_.env->MonotonicNow();
    payload = p.payload;
  }
  host_.load()->Propose(static_cast<uint64_t>(key.second), std::move(payload),
                        [this, key](absl::Status s, uint64_t) {
                          absl::MutexLock l(&mu_);
                          auto it = pending_.find(key);
                          if (it == pending_.end()) return;
                          it->second.proposing = false;
                          if (!s.ok()) it->second.proposal_error = std::string(s.message());
                        });
}

std::map<ShardVerifier::PendingKey, ShardVerifier::Pending> ShardVerifier::Collect(
    const std::map<PendingKey, std::set<uint64_t>>& wanted, absl::Time deadline) {
  auto complete = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [key, nodes] : wanted) {
      const Pending& p = pending_[key];
      for (uint64_t node : nodes) {
        if (!p.reports.count(node)) return false;
      }
    }
    return true;
  };
  mu_.Lock();
  while (!complete() && !stopping_ && options_.env->MonotonicNow() < deadline) {
    mu_.AwaitWithTimeout(absl::Condition(&complete),
                         std::min(absl::Milliseconds(20), deadline - options_.env->MonotonicNow()));
    // A marker whose proposal failed goes again, not more often than every kRetryInterval.
    std::vector<PendingKey> again;
    for (const auto& [key, nodes] : wanted) {
      const Pending& p = pending_[key];
      if (!p.proposing && !p.proposal_error.empty() &&
          options_.env->MonotonicNow() - p.proposed_at >= kRetryInterval) {
        again.push_back(key);
      }
    }
    if (again.empty()) continue;
    mu_.Unlock();
    for (const PendingKey& key : again) Propose(key);
    mu_.Lock();
  }
  std::map<PendingKey, Pending> out;
  for (const auto& [key, nodes] : wanted) {
    out[key] = std::move(pending_[key]);
    pending_.erase(key);
  }
  mu_.Unlock();
  return out;
}

absl::StatusOr<VerifyResult> ShardVerifier::Verify(const std::vector<int>& requested,
                                                   absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration() || timeout > kMaxTimeout) {
    return absl::InvalidArgumentError(absl::StrCat("the timeout must be above 0 and at most ",
                                                   absl::FormatDuration(kMaxTimeout), ", not ",
                                                   absl::FormatDuration(timeout)));
  }
  std::set<int> shards;
  for (int shard : requested) {
    if (shard < 0 || shard >= options_.shards) {
      return absl::InvalidArgumentError(absl::StrCat("no shard ", shard, ": this cluster has ",
                                                     options_.shards, " (0 to ",
                                                     options_.shards - 1, ")"));
    }
    shards.insert(shard);
  }
  if (shards.empty()) {
    for (int shard = 0; shard < options_.shards; ++shard) shards.insert(shard);
  }
  if (host_.load() == nullptr) return absl::UnavailableError("this node is still starting");
  return VerifyUntil(shards, options_.env->MonotonicNow() + timeout, kMaxKeysPerNode);
}

VerifyResult ShardVerifier::VerifyUntil(const std::set<int>& shards, absl::Time deadline,
                                        int max_keys) {
  raft::host::NodeHost* host = host_.load();
  VerifyMarker marker;
  marker.set_id(NewMarkerId());
  marker.set_deadline_ms(DeadlineMs(deadline));
  std::map<PendingKey, std::set<uint64_t>> wanted;
  std::map<int, uint64_t> leaders;
  for (int shard : shards) {
    raft::host::ShardInfo info = host->GetShardInfo(static_cast<uint64_t>(shard));
    // Right after a start a shard may not know its members yet (nor its leader): with nobody to
    // wait for, the answer came at once, every shard "not divergent" with nothing measured.
    while (info.conf_state.voters().empty() && options_.env->MonotonicNow() < deadline) {
      options_.env->SleepFor(
          std::min(absl::Milliseconds(20), deadline - options_.env->MonotonicNow()));
      info = host->GetShardInfo(static_cast<uint64_t>(shard));
    }
    std::set<uint64_t>& members = wanted[{marker.id(), shard}];
    members.insert(info.conf_state.voters().begin(), info.conf_state.voters().end());
    members.insert(info.conf_state.learners().begin(), info.conf_state.learners().end());
    leaders[shard] = info.leader;
    ProposeMarker(shard, marker);
  }
  std::map<PendingKey, Pending> got = Collect(wanted, deadline);

  VerifyResult result;
  result.marker = marker.id();
  for (int shard : shards) {
    const PendingKey key{marker.id(), shard};
    const Pending& p = got[key];
    ShardVerdict verdict = CompareDigests(shard, p.reports, leaders[shard]);
    if (!p.proposal_error.empty()) {
      verdict.error = absl::StrCat("proposing the marker failed: ", p.proposal_error);
    }
    if (p.reports.empty() && verdict.error.empty()) {
      verdict.error = "the marker did not commit in time (the shard may have no leader)";
    }
    for (uint64_t node : wanted[key]) {
      if (!p.reports.count(node)) verdict.unreachable.push_back(node);
    }
    for (TableVerdict& t : verdict.tables) ListDifferingKeys(shard, t, deadline, max_keys);
    if (verdict.divergent()) ++result.divergent_shards;
    result.shards.push_back(std::move(verdict));
  }
  UpdateGauge(result.shards);
  return result;
}

void ShardVerifier::ListDifferingKeys(int shard, TableVerdict& table, absl::Time deadline,
                                      int max_keys) {
  // Keys are compared between nodes that hold the table; a missing table says it all.
  if (!table.digests[table.reference_node].has_value()) {
    table.keys_note = "most nodes lack the table";
    return;
  }
  std::set<uint64_t> open;  // Differing nodes that still may show differing keys.
  for (uint64_t node : table.differing) {
    if (table.digests[node].has_value()) open.insert(node);
  }
  std::map<uint64_t, std::vector<DifferingKey>> found;
  // Per node, the last key compared so far: a page compares from where the node that had
  // compared the least stopped, and the keys others compared already are not counted twice.
  std::map<uint64_t, std::vector<Value>> compared_through;
  std::vector<Value> after;
  bool more = !open.empty();
  while (more) {
    if (options_.env->MonotonicNow() >= deadline) {
      table.keys_note = "out of time while listing keys";
      break;
    }
    VerifyMarker marker;
    marker.set_id(NewMarkerId());
    marker.set_deadline_ms(DeadlineMs(deadline));
    marker.set_table(table.table);
    for (const Value& v : after) *marker.add_after() = ToWire(v);
    marker.set_limit(kKeysPerPage);
    const PendingKey key{marker.id(), shard};
    std::map<PendingKey, std::set<uint64_t>> wanted{{key, open}};
    wanted[key].insert(table.reference_node);
    ProposeMarker(shard, marker);
    Pending page = std::move(Collect(wanted, deadline)[key]);
    auto reference = page.reports.find(table.reference_node);
    if (reference == page.reports.end() || !reference->second.error().empty()) {
      table.keys_note =
          reference == page.reports.end()
              ? absl::StrCat("node ", table.reference_node, " did not list its keys in time")
              : absl::StrCat("node ", table.reference_node,
                             " could not list its keys: ", reference->second.error());
      break;
    }
    std::optional<std::vector<Value>> next;
    for (auto it = open.begin(); it != open.end();) {
      auto report = page.reports.find(*it);
      if (report == page.reports.end() || !report->second.error().empty()) {
        table.keys_note = absl::StrCat("node ", *it, " did not list its keys");
        it = open.erase(it);
        continue;
      }
      std::vector<DifferingKey> keys;
      std::optional<std::vector<Value>> bound =
          CompareKeyPages(*it, reference->second, report->second, keys);
      auto through = compared_through.find(*it);
      for (DifferingKey& k : keys) {
        k.measured_at = std::max(reference->second.index(), report->second.index());
        if (through == compared_through.end() || CompareKeys(k.key, through->second) > 0) {
          found[*it].push_back(std::move(k));
        }
      }
      if (bound.has_value()) compared_through[*it] = *bound;
      if (found[*it].size() >= static_cast<size_t>(max_keys) || !bound.has_value()) {
        it = open.erase(it);
        continue;
      }
      if (!next.has_value() || CompareKeys(*bound, *next) < 0) next = bound;
      ++it;
    }
    more = !open.empty() && next.has_value();
    if (more) after = *std::move(next);
  }
  for (auto& [node, keys] : found) {
    if (keys.size() > static_cast<size_t>(max_keys)) keys.resize(max_keys);
    for (DifferingKey& k : keys) table.keys.push_back(std::move(k));
  }
}

absl::StatusOr<RepairResult> ShardVerifier::Repair(int shard, absl::Duration timeout) {
  if (shard < 0 || shard >= options_.shards) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard, ": this cluster has ",
                                                   options_.shards, " (0 to ", options_.shards - 1,
                                                   ")"));
  }
  if (timeout <= absl::ZeroDuration() || timeout > kMaxTimeout) {
    return absl::InvalidArgumentError(absl::StrCat("the timeout must be above 0 and at most ",
                                                   absl::FormatDuration(kMaxTimeout), ", not ",
                                                   absl::FormatDuration(timeout)));
  }
  raft::host::NodeHost* host = host_.load();
  if (host == nullptr) return absl::UnavailableError("this node is still starting");
  const absl::Time deadline = options_.env->MonotonicNow() + timeout;
  RepairResult result;
  for (;;) {
    VerifyResult verified = VerifyUntil({shard}, deadline, kMaxRepairKeysPerNode);
    result.after = std::move(verified.shards.front());
    if (!result.after.divergent() || options_.env->MonotonicNow() >= deadline) break;
    ++result.rounds;
    int64_t ordered = 0;
    for (const TableVerdict& t : result.after.tables) {
      change::v1::RepairOrder order;
      order.set_id(NewMarkerId());
      order.set_table(t.table);
      for (const DifferingKey& k : t.keys) {
        change::v1::RepairOrder::Write* w = order.add_writes();
        const bool extra = k.kind == DifferingKey::Kind::kExtra;
        w->set_node(extra ? k.node : t.reference_node);
        w->set_remove(extra);
        w->set_measured_at(k.measured_at);
        for (const Value& v : k.key) *w->add_key() = ToWire(v);
        ++(extra ? result.deleted : result.rewritten);
      }
      if (order.writes_size() == 0) continue;
      change::v1::ChangeBatch batch;
      batch.set_origin_node(options_.node_id);
      *batch.mutable_repair_order() = std::move(order);
      absl::Notification committed;
      absl::Status status;
      host->Propose(static_cast<uint64_t>(shard), batch.SerializeAsString(),
                    [&](absl::Status s, uint64_t) {
                      status = s;
                      committed.Notify();
                    });
      committed.WaitForNotification();
      if (!status.ok()) {
        LOG(WARNING) << "shard " << shard << " node " << options_.node_id
                     << ": a repair order did not commit (trying again): " << status;
      }
      ++ordered;
    }
    if (ordered == 0) break;  // Nothing this can write (a table most nodes lack).
    // The writes replicate as the nodes' own changes do: give them a moment before verifying.
    options_.env->SleepFor(std::min(absl::Seconds(1), deadline - options_.env->MonotonicNow()));
  }
  UpdateGauge({result.after});
  return result;
}

void ShardVerifier::Ordered(int shard, const change::v1::RepairOrder& order) {
  change::v1::RepairOrder mine;
  mine.set_id(order.id());
  mine.set_table(order.table());
  for (const change::v1::RepairOrder::Write& w : order.writes()) {
    if (w.node() == options_.node_id) *mine.add_writes() = w;
  }
  if (mine.writes_size() == 0 || options_.db_path.empty()) return;
  LOG(INFO) << "shard " << shard << " node " << options_.node_id << ": repair order " << order.id()
            << ": writing " << mine.writes_size() << " row(s) of \"" << order.table() << "\" again";
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  orders_.push_back(std::move(mine));
  if (!repair_writer_.joinable()) repair_writer_ = std::thread([this] { RepairLoop(); });
}

void ShardVerifier::RepairLoop() {
  for (;;) {
    std::vector<change::v1::RepairOrder> orders;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !orders_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      orders.swap(orders_);
    }
    for (const change::v1::RepairOrder& order : orders) {
      if (absl::Status s = WriteOrder(order); !s.ok()) {
        LOG(WARNING) << "node " << options_.node_id << ": repair order " << order.id() << " of \""
                     << order.table() << "\" not written: " << s;
      }
    }
  }
}

absl::Status ShardVerifier::WriteOrder(const change::v1::RepairOrder& order) {
  // An application's connection: triggers on, so that the writes are captured and replicate.
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(
      options_.db_path, {.create = false, .busy_timeout = std::chrono::seconds(10)});
  if (!db.ok()) return db.status();
  // Named as here: the node that asked may spell it in another case.
  absl::StatusOr<std::string> here = UserTableNamedHere(*db, order.table());
  if (!here.ok()) return here.status();
  absl::StatusOr<sqlite::TableSchema> t = sqlite::ReadTableSchema(*db, *here);
  if (!t.ok()) return t.status();
  std::vector<std::string> where;
  if (t->keyed_by_rowid()) {
    where.push_back("rowid = ?1");
  } else {
    for (size_t i = 0; i < t->primary_key.size(); ++i) {
      where.push_back(absl::StrCat(sqlite::QuoteIdentifier(t->primary_key[i]), " IS ?", i + 1));
    }
  }
  const std::string first = sqlite::QuoteIdentifier(t->columns.front().name);
  const std::string table = sqlite::QuoteIdentifier(t->name);
  const std::string match = absl::StrJoin(where, " AND ");
  absl::StatusOr<sqlite::Transaction> txn =
      sqlite::Transaction::Begin(*db, sqlite::Transaction::Mode::kImmediate);
  if (!txn.ok()) return txn.status();
  // A row differed because a write of it was on its way when it was measured (an insert of
  // this node not yet in the shard shows as a row only this node has): deleting or rewriting it
  // would undo that write everywhere, without a trace. So rows with a change of this node still
  // in the log (not shipped, or not yet deleted once committed), or a version of the shard newer
  // than the measurement, are left alone; the next verification sees whether they still differ.
  // Checked under the write lock: no write of either kind comes between the check and the write.
  auto wire_key = [](const auto& values, auto to_wire) {
    std::string out;
    for (const auto& v : values) {
      const std::string bytes = to_wire(v).SerializeAsString();
      absl::StrAppend(&out, bytes.size(), ":", bytes);
    }
    return out;
  };
  auto as_is = [](const change::v1::Value& v) -> const change::v1::Value& { return v; };
  auto to_wire = [](const Value& v) { return ToWire(v); };
  std::set<std::string> on_their_way;
  if (absl::Status s = sqlite::ForEachChangeKey(*db, *t, 0,
                                                [&](const sqlite::ChangeRecord& r) {
                                                  on_their_way.insert(wire_key(r.key, to_wire));
                                                  on_their_way.insert(wire_key(r.old_key, to_wire));
                                                });
      !s.ok()) {
    return s;
  }
  std::vector<std::string> key_params;
  for (size_t i = 0; i < where.size(); ++i) key_params.push_back(absl::StrCat("?", i + 2));
  const std::string version_sql =
      absl::StrCat("SELECT raft_index FROM ", sqlite::QuoteIdentifier(sqlite::kRowVersionsTable),
                   " WHERE tbl = ?1 AND key = ", sqlite::RowVersionKeySql(key_params));
  int left = 0;
  for (const change::v1::RepairOrder::Write& w : order.writes()) {
    if (static_cast<size_t>(w.key_size()) != where.size()) {
      return absl::InvalidArgumentError("a key of another width than the table's");
    }
    if (on_their_way.count(wire_key(w.key(), as_is)) > 0) {
      ++left;
      continue;
    }
    if (w.measured_at() > 0) {
      absl::StatusOr<sqlite::Statement> version = db->Prepare(version_sql);
      if (!version.ok()) return version.status();
      if (absl::Status s = version->Bind(1, Value::Text(t->name)); !s.ok()) return s;
      for (int i = 0; i < w.key_size(); ++i) {
        if (absl::Status s = version->Bind(i + 2, FromWire(w.key(i))); !s.ok()) return s;
      }
      absl::StatusOr<bool> found = version->Step();
      if (!found.ok()) return found.status();
      if (*found && version->Column(0).integer() > static_cast<int64_t>(w.measured_at())) {
        ++left;
        continue;
      }
    }
    // Setting a column to itself still fires the update trigger: the row is captured as it is.
    absl::StatusOr<sqlite::Statement> stmt =
        db->Prepare(w.remove() ? absl::StrCat("DELETE FROM ", table, " WHERE ", match)
                               : absl::StrCat("UPDATE ", table, " SET ", first, " = ", first,
                                              " WHERE ", match));
    if (!stmt.ok()) return stmt.status();
    for (int i = 0; i < w.key_size(); ++i) {
      if (absl::Status s = stmt->Bind(i + 1, FromWire(w.key(i))); !s.ok()) return s;
    }
    if (absl::StatusOr<bool> done = stmt->Step(); !done.ok()) return done.status();
  }
  if (left > 0) {
    LOG(INFO) << "node " << options_.node_id << ": repair order " << order.id() << ": left " << left
              << " row(s) of \"" << order.table()
              << "\" alone: changed since they were measured, or a change of them is on its way";
  }
  return txn->Commit();
}

void ShardVerifier::UpdateGauge(const std::vector<ShardVerdict>& verdicts) {
  absl::MutexLock l(&mu_);
  for (const ShardVerdict& v : verdicts) {
    // A shard nobody reported on keeps what was known of it.
    if (!v.reported.empty()) divergent_[v.shard] = v.divergent();
  }
  if (options_.metrics != nullptr) {
    options_.metrics->divergent_shards.Set(
        static_cast<double>(std::count(divergent_.begin(), divergent_.end(), true)));
  }
}

void ShardVerifier::StartPeriodic(absl::Duration every) {
  CHECK(!periodic_.joinable()) << "periodic verification started twice";
  periodic_ = std::thread([this, every] { PeriodicLoop(every); });
}

void ShardVerifier::PeriodicLoop(absl::Duration every) {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      const absl::Time until = options_.env->MonotonicNow() + every;
      while (!stopping_ && options_.env->MonotonicNow() < until) {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                             std::min(absl::Seconds(1), until - options_.env->MonotonicNow()));
      }
      if (stopping_) return;
    }
    raft::host::NodeHost* host = host_.load();
    if (host == nullptr) continue;
    std::vector<int> led;
    for (int shard = 0; shard < options_.shards; ++shard) {
      if (host->GetShardInfo(static_cast<uint64_t>(shard)).is_leader) led.push_back(shard);
    }
    if (led.empty()) continue;
    absl::StatusOr<VerifyResult> result = Verify(led, std::min(every, absl::Minutes(1)));
    if (!result.ok()) {
      LOG(WARNING) << "node " << options_.node_id
                   << ": periodic verify failed: " << result.status();
      continue;
    }
    for (const ShardVerdict& v : result->shards) {
      for (const TableVerdict& t : v.tables) {
        LOG(WARNING) << "shard " << v.shard << " node " << options_.node_id << ": verify at index "
                     << v.index << ": table \"" << t.table << "\" differs on node(s) "
                     << absl::StrJoin(t.differing, ", ");
      }
      if (!v.unreachable.empty()) {
        LOG(WARNING) << "shard " << v.shard << " node " << options_.node_id
                     << ": verify: no report from node(s) " << absl::StrJoin(v.unreachable, ", ");
      }
    }
  }
}

}  // namespace marmot::replicator
