// Test support: REST calls to a LocalCluster node's control pane, with the pane key the nodes
// were started with (AUTH_KEY).
#ifndef MARMOT_TESTS_TESTING_PANE_CLIENT_H_
#define MARMOT_TESTS_TESTING_PANE_CLIENT_H_

#include <httplib.h>

#include <chrono>
#include <string>

#include "proto/admin.pb.h"
#include "tests/testing/local_cluster.h"

namespace marmot::testing {

// A GET or POST (`body` as JSON) of `path` on node `id`'s pane, authorized by `auth` (the
// Authorization header's value); a result that tests false when the call could not be made.
httplib::Result PaneCall(const LocalCluster& c, int id, const std::string& auth,
                         const std::string& method, const std::string& path,
                         const std::string& body = "");

// Node `id`'s GET /v1/status; empty when it could not be read.
admin::v1::GetStatusResponse PaneStatus(const LocalCluster& c, int id, const std::string& auth);

// Node `id`'s POST /v1/verify, asked again until every node of `c` reported each of `shards`
// shards and none differ, or `timeout` passed: the last answer read (empty when none was; see
// EveryNodeReported).
admin::v1::VerifyResponse PaneVerify(const LocalCluster& c, int id, const std::string& auth,
                                     int shards,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Whether `verified` has `shards` shards, each reported by every node of `c`.
bool EveryNodeReported(const admin::v1::VerifyResponse& verified, const LocalCluster& c,
                       int shards);

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_PANE_CLIENT_H_
