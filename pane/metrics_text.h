// The control pane's /metrics: Prometheus text built at scrape time from the node's status
// (gauges: leaders, terms, indexes, lag, backlog, dead letters) plus the replicator's own
// counters and histograms. Names follow etcd's style: marmot_<what>_<unit>.
#ifndef MARMOT_PANE_METRICS_TEXT_H_
#define MARMOT_PANE_METRICS_TEXT_H_

#include <string>

#include "proto/admin.pb.h"

namespace prometheus {
class Collectable;
}

namespace marmot::pane {

// `counters` may be null.
std::string RenderMetrics(const admin::v1::GetStatusResponse& status,
                          const prometheus::Collectable* counters);

}  // namespace marmot::pane

#endif  // MARMOT_PANE_METRICS_TEXT_H_
