// What every fuzz target in tests/fuzz shares (TESTING.md, "Fuzzing").
//
// A target defines libFuzzer's entry point LLVMFuzzerTestOneInput (and, when it needs one-time
// setup, LLVMFuzzerInitialize). Built with --config=fuzz it links libFuzzer's main and fuzzes;
// built normally it links replay_main.cc and runs the inputs it is given once each, which is
// how the committed corpus runs as a test.
//
// A target checks what the unit promises (not only that nothing crashes) with CHECK: a broken
// promise aborts, and libFuzzer keeps the input as a finding.
#ifndef MARMOT_TESTS_FUZZ_FUZZ_TARGET_H_
#define MARMOT_TESTS_FUZZ_FUZZ_TARGET_H_

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace marmot::fuzz {

// Logs errors only, to stderr: a fuzzer runs millions of inputs, most of them refused with a
// warning. MARMOT_FUZZ_VERBOSE=1 in the environment keeps every log line.
void QuietLogs(const char* argv0);

}  // namespace marmot::fuzz

#endif  // MARMOT_TESTS_FUZZ_FUZZ_TARGET_H_
