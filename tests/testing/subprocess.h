// Test support: runs a real program as a child process with its output captured in files, so
// multi-process tests can start marmot, signal it and read what it logged.
#ifndef MARMOT_TESTS_TESTING_SUBPROCESS_H_
#define MARMOT_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace marmot::testing {

class Subprocess {
 public:
  // Starts `argv[0]` with `argv`; standard output and error go to files in `log_dir`.
  Subprocess(std::vector<std::string> argv, const std::string& log_dir);
  // Kills the child (SIGKILL) if it still runs, then stops the test if the child's stderr holds
  // a sanitizer report (SanitizerReport).
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  void Signal(int sig);
  // Waits up to `timeout` for the child to end. Returns its exit code (128 + signal when killed
  // by one), or nullopt when it is still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Sends `sig`, waits up to `grace`, then SIGKILL; returns the exit code (-1 if it never
  // ended).
  int Stop(int sig, std::chrono::milliseconds grace);

  std::string Stdout() const;
  std::string Stderr() const;
  const std::string& stderr_path() const { return err_path_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string out_path_, err_path_;
};

// The first AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report in `log` (a
// child's stderr), from its first line on; "" when there is none. Under --config=asan the marmot
// a test starts is instrumented too, and a report there must fail the test even when the test
// never looks at that process's exit code.
std::string SanitizerReport(const std::string& log);

// Runs a program to completion (at most `timeout`, then it is killed) and returns its exit code.
struct RunResult {
  int exit_code;
  std::string out, err;
};
RunResult Run(std::vector<std::string> argv, std::chrono::milliseconds timeout);

// User + system CPU seconds the process `pid` used so far (all its threads), from /proc.
double ProcessCpuSeconds(pid_t pid);

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns its last answer.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_SUBPROCESS_H_
