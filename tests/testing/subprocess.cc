#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace marmot::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  return base != nullptr ? base : "/tmp";
}

}  // namespace

Subprocess::Subprocess(std::vector<std::string> argv, const std::string& log_dir) {
  static std::atomic<int> counter{0};
  int n = counter++;
  out_path_ = absl::StrCat(log_dir, "/proc-", getpid(), "-", n, ".out");
  err_path_ = absl::StrCat(log_dir, "/proc-", getpid(), "-", n, ".err");
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  PCHECK(pid_ >= 0) << "fork";
  if (pid_ == 0) {
    // Die with the test: a crashed test must not leave clusters running behind it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    // The test's own blocked signals must not leak into the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Subprocess::~Subprocess() {
  if (!exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
  const std::string report = SanitizerReport(Stderr());
  CHECK(report.empty()) << "process " << pid_ << " (" << err_path_ << ") reported:\n" << report;
}

std::string SanitizerReport(const std::string& log) {
  size_t at = std::string::npos;
  for (const char* marker :
       {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: "}) {
    at = std::min(at, log.find(marker));
  }
  if (at == std::string::npos) return "";
  const size_t line = log.rfind('\n', at);
  return log.substr(line == std::string::npos ? 0 : line + 1, 8000);
}

void Subprocess::Signal(int sig) { kill(pid_, sig); }

std::optional<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_.has_value()) return exit_code_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Subprocess::Stop(int sig, std::chrono::milliseconds grace) {
  Signal(sig);
  std::optional<int> code = Wait(grace);
  if (!code.has_value()) {
    LOG(ERROR) << "process " << pid_ << " did not end within " << grace.count() << " ms of signal "
               << sig << "; killing it";
    Signal(SIGKILL);
    code = Wait(std::chrono::seconds(10));
  }
  return code.value_or(-1);
}

std::string Subprocess::Stdout() const { return Slurp(out_path_); }
std::string Subprocess::Stderr() const { return Slurp(err_path_); }

RunResult Run(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  Subprocess p(std::move(argv), TempDir());
  std::optional<int> code = p.Wait(timeout);
  const int exit_code = code.has_value() ? *code : p.Stop(SIGKILL, std::chrono::seconds(10));
  return {exit_code, p.Stdout(), p.Stderr()};
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The fields after the ")" that ends the command name (which may hold spaces) start with the
  // state, field 3; utime and stime are fields 14 and 15.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(f);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace marmot::testing
