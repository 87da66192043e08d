#include "replicator/shipped_columns.h"

namespace marmot::replicator {

namespace {

const std::shared_ptr<const ShippedColumns::Columns>& Unknown() {
  static const auto* const kUnknown = new std::shared_ptr<const ShippedColumns::Columns>(
      std::make_shared<const ShippedColumns::Columns>());
  return *kUnknown;
}

}  // namespace

void ShippedColumns::FirstLook(const std::string& table, int64_t newest) {
  absl::MutexLock lock(&mu_);
  Table& t = tables_[table];
  if (t.looked) return;
  t.looked = true;
  t.unknown_through = newest;
}

void ShippedColumns::Extend(Table& t, int64_t through, std::shared_ptr<const Columns> columns) {
  if (through <= t.read_through) return;
  // The last range grows when its columns are the same.
  if (!t.ranges.empty()) {
    auto last = std::prev(t.ranges.end());
    if (*last->second == *columns) {
      std::shared_ptr<const Columns> same = std::move(last->second);
      t.ranges.erase(last);
      t.ranges.emplace(through, std::move(same));
      t.read_through = through;
      return;
    }
  }
  t.ranges.emplace(through, std::move(columns));
  t.read_through = through;
}

void ShippedColumns::Read(const std::string& table, int64_t through_id, const Columns& columns) {
  absl::MutexLock lock(&mu_);
  Table& t = tables_[table];
  // Read without a look first: what this read finds may have been read before too.
  if (!t.looked) {
    t.looked = true;
    t.unknown_through = through_id;
  }
  if (t.read_through < t.unknown_through) {
    Extend(t, std::min(through_id, t.unknown_through), Unknown());
  }
  Extend(t, through_id, std::make_shared<const Columns>(columns));
}

std::optional<ShippedColumns::Columns> ShippedColumns::Carried(const std::string& table,
                                                               int64_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = tables_.find(table);
  if (it == tables_.end() || id > it->second.read_through) return std::nullopt;
  // Ids below the first read are below the first look's newest too: the first range (unknown).
  auto range = it->second.ranges.lower_bound(id);
  if (range == it->second.ranges.end()) return Columns();
  return *range->second;
}

}  // namespace marmot::replicator
