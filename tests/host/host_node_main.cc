// host_node_main: one NodeHost in its own process, driven over stdin/stdout by
// multi_process_test (so that it can be killed with SIGKILL and restarted).
//
// Commands, one per line; each answer is one line:
//   propose <shard> <payload>   -> "ok <index>" | "err <status>"
//   count <shard>               -> "count <payloads applied>"
//   missing <shard> <payload>...  -> "missing <how many of the payloads were not applied>
//                                    [<start of the first one>]"
//   leader <shard>              -> "leader <id>"
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "raft/host/bootstrap.h"
#include "raft/host/host_port.h"
#include "tests/host/test_cluster.h"

DEFINE_uint64(node_id, 0, "this node's id");
DEFINE_string(bind, "127.0.0.1:0", "host:port of the raft transport");
DEFINE_string(raft_path, "", "raft folder");
DEFINE_int32(shards, 4, "shards");
DEFINE_string(peers, "", "<id>@<host>:<port>,... (bootstrap members)");

using marmot::raft::host::testing::RecordingStateMachine;

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  auto members = marmot::raft::host::ParseMemberList(FLAGS_peers);
  CHECK(members.ok()) << members.status();
  std::map<uint64_t, std::string> peers;
  for (const auto& m : *members) peers[m.id] = m.address.ToString();
  std::vector<RecordingStateMachine*> sms(FLAGS_shards);
  auto host = marmot::raft::host::StartNodeHost(
      FLAGS_node_id, FLAGS_bind, FLAGS_raft_path, FLAGS_shards, peers, [&](uint64_t shard) {
        auto sm = std::make_unique<RecordingStateMachine>();
        sms[shard] = sm.get();
        return sm;
      });
  if (!host.ok()) {
    // Like marmot: a store that cannot be opened is a reported error, not a crash.
    LOG(ERROR) << "cannot start: " << host.status();
    return 1;
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    uint64_t shard = 0;
    in >> cmd >> shard;
    if (shard >= static_cast<uint64_t>(FLAGS_shards)) {
      std::cout << "err bad shard" << std::endl;
    } else if (cmd == "propose") {
      std::string payload;
      in >> payload;
      auto r = (*host)->ProposeAndWait(shard, payload);
      std::cout << (r.ok() ? absl::StrCat("ok ", *r) : absl::StrCat("err ", r.status().ToString()))
                << std::endl;
    } else if (cmd == "count") {
      std::cout << "count " << sms[shard]->payloads().size() << std::endl;
    } else if (cmd == "missing") {
      const auto applied = sms[shard]->payloads();
      const std::set<std::string> have(applied.begin(), applied.end());
      size_t missing = 0;
      std::string first;
      std::string payload;
      while (in >> payload) {
        if (have.count(payload)) continue;
        if (missing++ == 0) first = payload.substr(0, 32);
      }
      std::cout << "missing " << missing << (missing > 0 ? " " : "") << first << std::endl;
    } else if (cmd == "leader") {
      std::cout << "leader " << (*host)->GetShardInfo(shard).leader << std::endl;
    } else {
      std::cout << "err unknown command" << std::endl;
    }
  }
  (*host)->Stop();
  return 0;
}
