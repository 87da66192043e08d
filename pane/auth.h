// Authentication of control pane calls: the `Authorization` header (gRPC metadata or HTTP)
// must equal the AUTH_KEY the node was started with, e.g. `Basic bWFybW90OnNlY3JldA==`.
// Without a key configured, every protected call is refused: a pane that is open by accident is
// worse than one that is closed by accident.
#ifndef MARMOT_PANE_AUTH_H_
#define MARMOT_PANE_AUTH_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace marmot::pane {

class Authenticator {
 public:
  // `key` is AUTH_KEY; nullopt or empty means none is configured.
  explicit Authenticator(std::optional<std::string> key);

  bool configured() const { return key_.has_value(); }

  // True when `presented` equals the key. Takes the same time for every presented value of a
  // given length, and does not stop at the first differing byte.
  bool Allows(absl::string_view presented) const;

 private:
  std::optional<std::string> key_;
};

// Compares in time that depends only on the lengths, never on the content.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace marmot::pane

#endif  // MARMOT_PANE_AUTH_H_
