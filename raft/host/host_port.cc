#include "raft/host/host_port.h"

#include <arpa/inet.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace marmot::raft::host {
namespace {

bool IsHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    }
  }
  return true;
}

}  // namespace

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool HostPort::is_wildcard() const { return host.empty() || host == "0.0.0.0" || host == "::"; }

bool HostPort::is_loopback() const {
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, PortZero zero) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not host:port"));
  }
  absl::string_view host = text.substr(0, colon);
  absl::string_view port_text = text.substr(colon + 1);
  const uint32_t lowest = zero == PortZero::kAllowed ? 0 : 1;
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < lowest || port > 65535 ||
      !absl::ascii_isdigit(port_text.empty() ? 'x' : port_text[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' has no valid port (", lowest, "-65535) after the last ':'"));
  }
  HostPort out;
  out.port = static_cast<uint16_t>(port);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    std::string v6(host.substr(1, host.size() - 2));
    in6_addr addr;
    if (inet_pton(AF_INET6, v6.c_str(), &addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("'", text, "' has an invalid IPv6 address"));
    }
    out.host = v6;
    return out;
  }
  if (!IsHostName(host)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' has no valid host (a name, an IPv4 address or [IPv6])"));
  }
  out.host = std::string(host);
  return out;
}

absl::StatusOr<std::vector<Member>> ParseMemberList(absl::string_view text) {
  std::vector<Member> members;
  if (absl::StripAsciiWhitespace(text).empty()) return members;
  std::set<uint64_t> ids;
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view entry = absl::StripAsciiWhitespace(raw);
    const size_t at = entry.find('@');
    if (at == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry '", entry, "' is not <id>@<host>:<port>"));
    }
    Member member;
    if (!absl::SimpleAtoi(entry.substr(0, at), &member.id) || member.id == 0 ||
        !absl::ascii_isdigit(entry[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry '", entry, "' needs a positive node id before '@'"));
    }
    absl::StatusOr<HostPort> address = ParseHostPort(entry.substr(at + 1));
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry '", entry, "': ", address.status().message()));
    }
    member.address = *std::move(address);
    if (!ids.insert(member.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("node id ", member.id, " appears twice"));
    }
    members.push_back(std::move(member));
  }
  return members;
}

}  // namespace marmot::raft::host
