#include "tests/testing/piped_process.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/testing/subprocess.h"

namespace marmot::testing {

PipedProcess::PipedProcess(const std::vector<std::string>& argv, const std::string& stderr_file)
    : stderr_file_(stderr_file) {
  int in[2], out[2];
  PCHECK(pipe(in) == 0);
  PCHECK(pipe(out) == 0);
  // A child that dies while the test writes to it must not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  pid_ = fork();
  PCHECK(pid_ >= 0);
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (!stderr_file.empty()) {
      int err = open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) dup2(err, 2);
    }
    close(in[1]);
    close(out[0]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  to_ = fdopen(in[1], "w");
  from_ = fdopen(out[0], "r");
}

PipedProcess::~PipedProcess() {
  if (pid_ > 0) Kill();
  fclose(to_);
  fclose(from_);
  const std::string report = SanitizerReport(Log());
  CHECK(report.empty()) << "process (" << stderr_file_ << ") reported:\n" << report;
}

std::string PipedProcess::ReadLine() {
  std::string s;
  char buf[4096];
  while (fgets(buf, sizeof(buf), from_) != nullptr) {
    s += buf;
    if (s.back() == '\n') break;
  }
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

void PipedProcess::Send(const std::string& line) {
  fprintf(to_, "%s\n", line.c_str());
  fflush(to_);
}

std::string PipedProcess::Call(const std::string& line) {
  Send(line);
  return ReadLine();
}

void PipedProcess::Kill() {
  if (pid_ > 0) kill(pid_, SIGKILL);
  Wait();
}

int PipedProcess::Wait() {
  if (pid_ > 0) {
    int st = 0;
    PCHECK(waitpid(pid_, &st, 0) == pid_);
    code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    pid_ = -1;
  }
  return code_;
}

std::string PipedProcess::Log() const {
  if (stderr_file_.empty()) return "";
  std::ifstream f(stderr_file_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace marmot::testing
