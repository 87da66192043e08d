#include "tests/testing/pane_client.h"

#include <google/protobuf/util/json_util.h>

#include "tests/testing/subprocess.h"

namespace marmot::testing {

httplib::Result PaneCall(const LocalCluster& c, int id, const std::string& auth,
                         const std::string& method, const std::string& path,
                         const std::string& body) {
  httplib::Client rest("127.0.0.1", c.pane_port(id));
  rest.set_read_timeout(60, 0);
  const httplib::Headers headers = {{"Authorization", auth}};
  if (method == "GET") return rest.Get(path.c_str(), headers);
  return rest.Post(path.c_str(), headers, body, "application/json");
}

admin::v1::GetStatusResponse PaneStatus(const LocalCluster& c, int id, const std::string& auth) {
  admin::v1::GetStatusResponse out;
  httplib::Result r = PaneCall(c, id, auth, "GET", "/v1/status");
  if (r && r->status == 200) (void)google::protobuf::util::JsonStringToMessage(r->body, &out);
  return out;
}

admin::v1::VerifyResponse PaneVerify(const LocalCluster& c, int id, const std::string& auth,
                                     int shards, std::chrono::milliseconds timeout) {
  admin::v1::VerifyResponse last;
  WaitFor(
      [&] {
        httplib::Result r = PaneCall(c, id, auth, "POST", "/v1/verify", "{}");
        admin::v1::VerifyResponse read;
        if (!r || r->status != 200 ||
            !google::protobuf::util::JsonStringToMessage(r->body, &read).ok()) {
          return false;
        }
        last = read;
        return EveryNodeReported(last, c, shards) && last.divergent_shards() == 0;
      },
      timeout);
  return last;
}

bool EveryNodeReported(const admin::v1::VerifyResponse& verified, const LocalCluster& c,
                       int shards) {
  if (verified.shards_size() != shards) return false;
  for (const admin::v1::ShardVerification& s : verified.shards()) {
    if (s.reported_size() < c.nodes()) return false;
  }
  return true;
}

}  // namespace marmot::testing
