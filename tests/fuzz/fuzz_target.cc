#include "tests/fuzz/fuzz_target.h"

#include <cstdlib>
#include <cstring>

#include "glog/logging.h"

namespace marmot::fuzz {

void QuietLogs(const char* argv0) {
  FLAGS_logtostderr = true;
  const char* verbose = std::getenv("MARMOT_FUZZ_VERBOSE");
  if (verbose == nullptr || std::strcmp(verbose, "1") != 0) FLAGS_minloglevel = google::GLOG_ERROR;
  static bool initialized = false;
  if (!initialized) google::InitGoogleLogging(argv0);
  initialized = true;
}

}  // namespace marmot::fuzz
