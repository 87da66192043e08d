// A node's identity derived from the name of the Kubernetes pod it runs in.
//
// A StatefulSet names its pods `<set>-0`, `<set>-1`, ... and gives each a stable DNS name
// `<set>-<ordinal>.<headless service>.<namespace>.svc`. Every pod runs the same command line, so
// marmot derives what differs between them from the pod name: the node id (ordinal + 1, since
// node ids are positive) and the `-bootstrap` list of the founding pods (ordinals 0 to
// replicas - 1, addresses from a template). A pod whose ordinal is at or above the founding count
// was added by scaling the set up: it joins (`-join`) and waits for `AddNode`.
#ifndef MARMOT_REPLICATOR_POD_IDENTITY_H_
#define MARMOT_REPLICATOR_POD_IDENTITY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace marmot::replicator {

// What `-peers-template` must contain, once.
inline constexpr char kOrdinalPlaceholder[] = "{ordinal}";
inline constexpr int64_t kMaxReplicas = 1000;

struct PodIdentity {
  int64_t ordinal = 0;
  uint64_t node_id = 0;  // ordinal + 1.
  // `<id>@<address>,...` of the founding pods, ordinal 0 first, in the -bootstrap syntax.
  std::string bootstrap;
  // True when the ordinal is not a founding one: the pod was added by scaling up.
  bool join = false;
};

// Derives the identity of the pod named `hostname` (`<name>-<ordinal>`; a fully qualified name
// is cut at its first dot) in a set founded with `replicas` pods whose peer addresses are
// `peers_template` with `{ordinal}` replaced. On failure the message is one line that starts with
// the flag at fault (`-hostname: ...`, `-peers-template: ...`, `-replicas: ...`). Addresses are
// not parsed here; ParseBootstrap checks them.
absl::StatusOr<PodIdentity> DerivePodIdentity(absl::string_view hostname,
                                              absl::string_view peers_template, int64_t replicas);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_POD_IDENTITY_H_
