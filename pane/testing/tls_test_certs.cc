#include "pane/testing/tls_test_certs.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace marmot::pane::testing {

absl::StatusOr<TlsTestCerts> MakeTlsTestCerts(const std::string& dir) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string cmd = absl::StrCat(
      "cd '", dir, "' && { ", "openssl req -x509 ", ec,
      " -days 2 -keyout ca.key -out ca.pem -subj /CN=marmot-test-ca && ", "openssl req ", ec,
      " -keyout pane.key -out pane.csr -subj /CN=localhost && ",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > pane.ext && ",
      "openssl x509 -req -in pane.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 ",
      "-extfile pane.ext -out pane.pem && ", "openssl req -x509 ", ec,
      " -days 2 -keyout other.key -out other.pem -subj /CN=localhost ",
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1", "; } > openssl.log 2>&1");
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(dir + "/openssl.log");
    std::stringstream text;
    text << log.rdbuf();
    return absl::InternalError(
        absl::StrCat("openssl could not make test certificates: ", text.str()));
  }
  return TlsTestCerts{.ca_pem = dir + "/ca.pem",
                      .cert_pem = dir + "/pane.pem",
                      .key_pem = dir + "/pane.key",
                      .other_pem = dir + "/other.pem",
                      .other_key = dir + "/other.key"};
}

}  // namespace marmot::pane::testing
