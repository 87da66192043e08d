#include "raft/host/bootstrap.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace marmot::raft::host {

absl::StatusOr<std::map<uint64_t, std::string>> ParseMemberList(absl::string_view list) {
  std::map<uint64_t, std::string> out;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('@', 1));
    uint64_t id = 0;
    const size_t colon = kv.second.rfind(':');
    if (!absl::SimpleAtoi(kv.first, &id) || id == 0 || colon == absl::string_view::npos ||
        colon == 0 || colon + 1 == kv.second.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad member '", item, "': want <node id>@<host>:<port>"));
    }
    if (!out.emplace(id, std::string(kv.second)).second) {
      return absl::InvalidArgumentError(absl::StrCat("node ", id, " is listed twice"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<NodeHost>> StartNodeHost(uint64_t node_id,
                                                        const std::string& bind_address,
                                                        const std::string& raft_path, int shards,
                                                        std::map<uint64_t, std::string> peers,
                                                        StateMachineFactory factory) {
  peers.emplace(node_id, bind_address);
  NodeHostConfig c;
  c.node_id = node_id;
  c.bind_address = bind_address;
  c.raft_path = raft_path;
  c.shards = shards;
  c.peers = std::move(peers);
  return NodeHost::Start(std::move(c), std::move(factory));
}

}  // namespace marmot::raft::host
