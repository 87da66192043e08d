#include "tests/testing/pane_client.h"

#include <google/protobuf/util/json_util.h>

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

}  // namespace marmot::testing
