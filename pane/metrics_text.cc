#include "pane/metrics_text.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <vector>

namespace marmot::pane {
namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void Add(prometheus::MetricFamily& f, double value,
         std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

}  // namespace

std::string RenderMetrics(const admin::v1::GetStatusResponse& status,
                          const prometheus::Collectable* counters) {
  std::vector<prometheus::MetricFamily> families;
  auto leader = Gauge("marmot_shard_leader", "Node id of the shard's leader (0: none known)");
  auto is_leader = Gauge("marmot_shard_is_leader", "1 when this node leads the shard");
  auto term = Gauge("marmot_shard_term", "Raft term of the shard");
  auto commit = Gauge("marmot_shard_commit_index", "Highest committed Raft index known here");
  auto applied = Gauge("marmot_shard_applied_index", "Raft index applied to SQLite here");
  auto lag = Gauge("marmot_shard_apply_lag_entries", "Committed entries not yet applied here");
  auto snapshot = Gauge("marmot_shard_snapshot_index", "Raft index of the shard's latest snapshot");
  auto halted = Gauge("marmot_shard_halted",
                      "1 when this node applies nothing more to the shard (GetStatus says why)");
  for (const admin::v1::ShardStatus& s : status.shards()) {
    std::vector<prometheus::ClientMetric::Label> l = {{"shard", std::to_string(s.shard())}};
    Add(leader, static_cast<double>(s.leader()), l);
    Add(is_leader, s.is_leader() ? 1 : 0, l);
    Add(term, static_cast<double>(s.term()), l);
    Add(commit, static_cast<double>(s.commit_index()), l);
    Add(applied, static_cast<double>(s.applied_index()), l);
    Add(lag,
        s.commit_index() > s.applied_index()
            ? static_cast<double>(s.commit_index() - s.applied_index())
            : 0,
        l);
    Add(snapshot, static_cast<double>(s.snapshot_index()), l);
    Add(halted, s.halted().empty() ? 0 : 1, l);
  }
  auto backlog =
      Gauge("marmot_changelog_backlog", "Captured changes of this node not yet committed");
  for (const admin::v1::TableBacklog& b : status.backlog()) {
    Add(backlog, static_cast<double>(b.pending_changes()), {{"table", b.table()}});
  }
  auto dead = Gauge("marmot_dead_letters", "Changes in this node's dead-letter table");
  Add(dead, static_cast<double>(status.dead_letters()));
  auto up = Gauge("marmot_uptime_seconds", "Seconds since this marmot started");
  Add(up, static_cast<double>(status.uptime_seconds()));
  for (auto* f : {&leader, &is_leader, &term, &commit, &applied, &lag, &snapshot, &halted, &backlog,
                  &dead, &up}) {
    families.push_back(std::move(*f));
  }
  if (counters != nullptr) {
    for (prometheus::MetricFamily& f : counters->Collect()) families.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace marmot::pane
