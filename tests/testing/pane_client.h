// Test support: REST calls to a LocalCluster node's control pane, with the pane key the nodes
// were started with (AUTH_KEY).
#ifndef MARMOT_TESTS_TESTING_PANE_CLIENT_H_
#define MARMOT_TESTS_TESTING_PANE_CLIENT_H_

#include <httplib.h>

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

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_PANE_CLIENT_H_
