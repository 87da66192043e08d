#include "raft/host/state_machine.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace marmot::raft::host {
namespace {

// The payload that marks a wait: the bound in nanoseconds and the waiting entry's index, as
// decimal text with a space between.
constexpr absl::string_view kWaitPayload = "type.marmot/raft.host.ShardWait";

// The two numbers of a wait's payload; false for any other status.
bool ReadWait(const absl::Status& s, int64_t& nanos, uint64_t& entry) {
  if (s.ok()) return false;
  auto payload = s.GetPayload(kWaitPayload);  // absl::optional here
  if (!payload.has_value()) return false;
  const std::string text(*payload);
  const size_t space = text.find(' ');
  return space != std::string::npos && absl::SimpleAtoi(text.substr(0, space), &nanos) &&
         absl::SimpleAtoi(text.substr(space + 1), &entry);
}

}  // namespace

absl::Status ShardWaitStatus(absl::string_view reason, absl::Duration at_most, uint64_t entry) {
  absl::Status s = absl::UnavailableError(reason);
  s.SetPayload(kWaitPayload,
               absl::Cord(absl::StrCat(absl::ToInt64Nanoseconds(at_most), " ", entry)));
  return s;
}

std::optional<absl::Duration> ShardWaitBound(const absl::Status& s) {
  int64_t nanos = 0;
  uint64_t entry = 0;
  if (!ReadWait(s, nanos, entry)) return std::nullopt;
  return absl::Nanoseconds(nanos);
}

std::optional<uint64_t> ShardWaitEntry(const absl::Status& s) {
  int64_t nanos = 0;
  uint64_t entry = 0;
  if (!ReadWait(s, nanos, entry)) return std::nullopt;
  return entry;
}

}  // namespace marmot::raft::host
