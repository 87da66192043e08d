// Addresses as operators write them: `host:port` and member lists `<id>@<host>:<port>,...`.
//
// One parser for every place that reads an address (flags, the pane's listeners, AddNode, test
// binaries), so that they accept and refuse the same text with the same words.
#ifndef MARMOT_RAFT_HOST_HOST_PORT_H_
#define MARMOT_RAFT_HOST_HOST_PORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

// A host and port: `host:port`, `[v6]:port`. Host names are not resolved here.
struct HostPort {
  std::string host;
  uint16_t port = 0;

  // "host:port", with brackets around IPv6 literals.
  std::string ToString() const;
  // True for 0.0.0.0, :: and the empty host, which listen on every interface.
  bool is_wildcard() const;
  // True for `localhost`, 127.0.0.0/8 and ::1: only processes of this machine can connect.
  bool is_loopback() const;
  friend bool operator==(const HostPort& a, const HostPort& b) {
    return a.host == b.host && a.port == b.port;
  }
};

enum class PortZero {
  kRefused,  // An address to reach or to name in a member list.
  kAllowed,  // An address to listen on, where 0 lets the system pick the port.
};

// Parses `host:port`. The port must be 1..65535 (or 0 when `zero` allows it); the host a name,
// an IPv4 or a bracketed IPv6 literal. InvalidArgumentError quoting `text` otherwise.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, PortZero zero = PortZero::kRefused);

struct Member {
  uint64_t id = 0;
  HostPort address;
};

// Parses comma-separated `<id>@<host>:<port>` entries; an empty or blank string is an empty
// list. Ids must be positive and unique. InvalidArgumentError quoting the bad entry otherwise.
absl::StatusOr<std::vector<Member>> ParseMemberList(absl::string_view text);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_HOST_PORT_H_
