// Test support: throwaway certificates for TLS on the control pane, made with the `openssl`
// command-line tool (as README's Security section shows operators).
#ifndef MARMOT_PANE_TESTING_TLS_TEST_CERTS_H_
#define MARMOT_PANE_TESTING_TLS_TEST_CERTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace marmot::pane::testing {

struct TlsTestCerts {
  std::string ca_pem;     // The CA clients trust.
  std::string cert_pem;   // The pane's certificate: DNS:localhost and IP:127.0.0.1, by the CA.
  std::string key_pem;    // Its private key.
  std::string other_pem;  // A self-signed certificate of another CA (a client trusting it fails).
  std::string other_key;  // Its key: does not belong to cert_pem.
};

// Makes the files in `dir` (which must exist); fails with openssl's output.
absl::StatusOr<TlsTestCerts> MakeTlsTestCerts(const std::string& dir);

}  // namespace marmot::pane::testing

#endif  // MARMOT_PANE_TESTING_TLS_TEST_CERTS_H_
