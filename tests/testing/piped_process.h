// Test support: a child process driven line by line — commands written to its stdin, answers
// read from its stdout — for programs that serve a test over pipes (tests/host/host_node_main).
// Its stderr goes to a file, or to the test's own when no file is given. It never outlives the
// test (PR_SET_PDEATHSIG) and is killed (SIGKILL) when the object goes; a sanitizer report in
// its stderr file then stops the test (SanitizerReport, subprocess.h).
#ifndef MARMOT_TESTS_TESTING_PIPED_PROCESS_H_
#define MARMOT_TESTS_TESTING_PIPED_PROCESS_H_

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <vector>

namespace marmot::testing {

class PipedProcess {
 public:
  // Starts argv[0] with `argv`.
  explicit PipedProcess(const std::vector<std::string>& argv, const std::string& stderr_file = "");
  ~PipedProcess();
  PipedProcess(const PipedProcess&) = delete;
  PipedProcess& operator=(const PipedProcess&) = delete;

  // The next line of its stdout without the newline; "" once it closed its stdout (it ended).
  std::string ReadLine();
  // Writes `line` and a newline to its stdin.
  void Send(const std::string& line);
  // Send(), then ReadLine().
  std::string Call(const std::string& line);
  // SIGKILL, then Wait().
  void Kill();
  // Waits for it to end: its exit code, or 128 + the signal that ended it.
  int Wait();
  // What it wrote to `stderr_file` so far ("" without one).
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  std::string stderr_file_;
  pid_t pid_ = -1;
  int code_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

}  // namespace marmot::testing

#endif  // MARMOT_TESTS_TESTING_PIPED_PROCESS_H_
