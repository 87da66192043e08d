#include "pane/auth.h"

namespace marmot::pane {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Walk the longer length so that a short guess learns nothing from an early exit.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

Authenticator::Authenticator(std::optional<std::string> key) {
  if (key.has_value() && !key->empty()) key_ = std::move(key);
}

bool Authenticator::Allows(absl::string_view presented) const {
  return key_.has_value() && ConstantTimeEquals(presented, *key_);
}

}  // namespace marmot::pane
