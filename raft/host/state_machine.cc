#include "raft/host/state_machine.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace marmot::raft::host {
namespace {

// The payload that marks a wait: the bound in nanoseconds, as decimal text.
constexpr absl::string_view kWaitPayload = "type.marmot/raft.host.ShardWait";

}  // namespace

absl::Status ShardWaitStatus(absl::string_view reason, absl::Duration at_most) {
  absl::Status s = absl::UnavailableError(reason);
  s.SetPayload(kWaitPayload, absl::Cord(std::to_string(absl::ToInt64Nanoseconds(at_most))));
  return s;
}

std::optional<absl::Duration> ShardWaitBound(const absl::Status& s) {
  if (s.ok()) return std::nullopt;
  auto payload = s.GetPayload(kWaitPayload);  // absl::optional here
  if (!payload.has_value()) return std::nullopt;
  int64_t nanos = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &nanos)) return std::nullopt;
  return absl::Nanoseconds(nanos);
}

}  // namespace marmot::raft::host
