#include "raft/host/node_incarnation.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::host {

uint64_t NewIncarnation() {
  uint64_t v = 0;
  while (v == 0) {
    CHECK_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v), 1)
        << "the system's random generator failed";
  }
  return v;
}

Admission AdmitStream(uint64_t node, const StreamOrigin& incoming,
                      const std::vector<StreamOrigin>& open, absl::string_view recorded_address,
                      absl::Time now, absl::Duration liveness_window) {
  Admission a;
  if (incoming.incarnation == 0) return a;
  const bool incoming_recorded =
      !recorded_address.empty() && incoming.bind_address == recorded_address;
  for (size_t i = 0; i < open.size(); ++i) {
    const StreamOrigin& o = open[i];
    if (o.incarnation == 0 || o.incarnation == incoming.incarnation) continue;
    const bool live = now - o.last_heard < liveness_window;
    const bool open_recorded = !recorded_address.empty() && o.bind_address == recorded_address;
    if (live && !(incoming_recorded && !open_recorded)) {
      a.refusal = absl::StrCat(
          "node ", node, " already runs: the process listening at ", o.bind_address,
          " (connected from ", o.peer, ", incarnation ", absl::Hex(o.incarnation), ") was heard ",
          absl::FormatDuration(absl::Trunc(now - o.last_heard, absl::Milliseconds(1))),
          " ago; another process (listening at ", incoming.bind_address, ", connected from ",
          incoming.peer, ", incarnation ", absl::Hex(incoming.incarnation), ") claims the same id");
      a.replaced.clear();
      return a;
    }
    a.replaced.push_back(i);
  }
  return a;
}

void ExitOnDuplicateNode(uint64_t node_id, absl::string_view why) {
  static std::atomic<bool> exiting{false};
  if (exiting.exchange(true)) {
    for (;;) pause();
  }
  LOG(ERROR) << "[node " << node_id << "] another process runs with this node's id: " << why
             << "; exiting (every process needs its own -node-id)";
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(kDuplicateNodeExitCode);
}

}  // namespace marmot::raft::host
