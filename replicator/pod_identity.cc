#include "replicator/pod_identity.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace marmot::replicator {

absl::StatusOr<PodIdentity> DerivePodIdentity(absl::string_view hostname,
                                              absl::string_view peers_template, int64_t replicas) {
  absl::string_view name = hostname.substr(0, hostname.find('.'));
  size_t dash = name.rfind('-');
  absl::string_view digits = dash == absl::string_view::npos ? "" : name.substr(dash + 1);
  PodIdentity pod;
  // Leading zeros are refused: `marmot-01` is no name a StatefulSet gives, and accepting it would
  // let two spellings map to one node id.
  bool digits_only = !digits.empty() && digits.size() <= 6 &&
                     std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) &&
                     (digits == "0" || digits[0] != '0');
  if (dash == absl::string_view::npos || dash == 0 || name[dash - 1] == '-' || !digits_only ||
      !absl::SimpleAtoi(digits, &pod.ordinal)) {
    return absl::InvalidArgumentError(
        absl::StrCat("-hostname: '", hostname,
                     "' is not a StatefulSet pod name <name>-<ordinal> (e.g. marmot-0)"));
  }
  pod.node_id = static_cast<uint64_t>(pod.ordinal) + 1;

  if (replicas < 1 || replicas > kMaxReplicas) {
    return absl::InvalidArgumentError(
        absl::StrCat("-replicas: the number of founding pods must be between 1 and ", kMaxReplicas,
                     ", not ", replicas));
  }
  size_t at = peers_template.find(kOrdinalPlaceholder);
  if (at == absl::string_view::npos ||
      peers_template.find(kOrdinalPlaceholder, at + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("-peers-template: '", peers_template, "' must contain ", kOrdinalPlaceholder,
                     " exactly once (e.g. marmot-{ordinal}.marmot-peers.default.svc:8610)"));
  }
  std::vector<std::string> entries;
  for (int64_t i = 0; i < replicas; ++i) {
    entries.push_back(absl::StrCat(
        i + 1, "@", absl::StrReplaceAll(peers_template, {{kOrdinalPlaceholder, absl::StrCat(i)}})));
  }
  pod.bootstrap = absl::StrJoin(entries, ",");
  pod.join = pod.ordinal >= replicas;
  return pod;
}

}  // namespace marmot::replicator
