// DaemonProcess: a real shardfs daemon (or any program) run by a test.
//
// Integration and fault tests start the real binaries, talk to them over real
// sockets and kill them the way an operator or a crash would. DaemonProcess
// owns one child: fork/exec with arguments, extra environment and output to a
// log file; Stop() sends a signal and waits, escalating to SIGKILL after a
// grace period; the destructor does the same, so a failing test never leaves
// a daemon behind. The child also gets PR_SET_PDEATHSIG, so it dies with the
// test even if the test itself is killed. Signals go to the child's PID only.
//
// Also: free-port picking for daemons that need a port number up front,
// BuildPath() to find binaries via $SHARDFS_BUILD_DIR, and WaitUntil().
//
// Header-only, no gtest dependency. A DaemonProcess is owned by the test's
// thread.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/status.h"

extern char** environ;

namespace shardfs {

// $SHARDFS_BUILD_DIR/relative (the build root when run by meson test).
inline std::string BuildPath(const std::string& relative) {
  const char* dir = std::getenv("SHARDFS_BUILD_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/" + relative;
}

// Polls `done` every `step` until it is true or `timeout` passed.
inline bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds step = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

namespace daemon_process_internal {

// Binds `port` (0: any) on every interface; returns the bound port or 0.
inline uint16_t BindPort(int type, uint16_t port) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(port);
  uint16_t result = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    socklen_t len = sizeof(sa);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0) result = ntohs(sa.sin_port);
  }
  close(fd);
  return result;
}

}  // namespace daemon_process_internal

// A TCP port that was free a moment ago (the kernel's pick, so two calls
// rarely collide). 0 if none could be had.
inline uint16_t FreeTcpPort() {
  return daemon_process_internal::BindPort(SOCK_STREAM, 0);
}
inline uint16_t FreeUdpPort() {
  return daemon_process_internal::BindPort(SOCK_DGRAM, 0);
}
// A free TCP port P with P+1 free too (the registry publishes on PORT+1).
inline uint16_t FreeTcpPortPair() {
  for (int attempt = 0; attempt < 200; ++attempt) {
    uint16_t p = FreeTcpPort();
    if (p != 0 && p < 65535 && daemon_process_internal::BindPort(SOCK_STREAM, p + 1) == p + 1) {
      return p;
    }
  }
  return 0;
}

class DaemonProcess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0]: the program (searched in PATH if no '/')
    std::vector<std::string> env;   // extra or overriding NAME=value entries
    std::string log_path;           // stdout and stderr appended here; "" inherits ours
  };

  DaemonProcess() = default;
  ~DaemonProcess() { Stop(); }
  DaemonProcess(DaemonProcess&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        status_(other.status_),
        log_path_(std::move(other.log_path_)) {}
  DaemonProcess& operator=(DaemonProcess&& other) noexcept {
    if (this != &other) {
      Stop();
      pid_ = std::exchange(other.pid_, -1);
      status_ = other.status_;
      log_path_ = std::move(other.log_path_);
    }
    return *this;
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Starts the program; fails if it could not be executed at all.
  static Result<DaemonProcess> Start(const Options& options) {
    if (options.argv.empty()) return Status::Error(ErrorCode::kInvalidArgument, "no program");
    // Everything the child needs is built before fork(): after it only
    // async-signal-safe calls are allowed (the test may have threads).
    std::vector<char*> argv;
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      std::string name = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const auto& extra : options.env) {
        if (extra.substr(0, extra.find('=')) == name) overridden = true;
      }
      if (!overridden) env_storage.push_back(std::move(entry));
    }
    for (const auto& extra : options.env) env_storage.push_back(extra);
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);

    int log_fd = -1;
    if (!options.log_path.empty()) {
      log_fd = open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (log_fd < 0) {
        return Status::Error(ErrnoToErrorCode(errno),
                             "cannot open " + options.log_path + ": " + strerror(errno));
      }
    }
    // The child reports a failed exec through this pipe; a successful exec
    // closes it (O_CLOEXEC) and the parent reads end-of-file.
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
      if (log_fd >= 0) close(log_fd);
      return Status::Error(ErrnoToErrorCode(errno), "pipe2");
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      int err = errno;
      close(report[0]);
      close(report[1]);
      if (log_fd >= 0) close(log_fd);
      return Status::Error(ErrnoToErrorCode(err), "fork");
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl
      // The test may block signals for its own threads; a daemon expects
      // the default mask.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      if (log_fd >= 0) {
        dup2(log_fd, STDOUT_FILENO);
        dup2(log_fd, STDERR_FILENO);
      }
      execvpe(argv[0], argv.data(), envp.data());
      int err = errno;
      ssize_t ignored = write(report[1], &err, sizeof(err));
      (void)ignored;
      _exit(127);
    }
    close(report[1]);
    if (log_fd >= 0) close(log_fd);
    int child_errno = 0;
    ssize_t n;
    do {
      n = read(report[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    DaemonProcess process;
    process.pid_ = pid;
    process.log_path_ = options.log_path;
    if (n == static_cast<ssize_t>(sizeof(child_errno))) {
      process.Wait();
      return Status::Error(ErrnoToErrorCode(child_errno),
                           "cannot execute " + options.argv[0] + ": " + strerror(child_errno));
    }
    return process;
  }

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // True while the child has not exited (reaps it when it has).
  bool Running() {
    if (pid_ < 0) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) return true;
    if (r == pid_) status_ = status;
    pid_ = -1;
    return false;
  }

  // Sends a signal (SIGSTOP/SIGCONT to freeze a daemon, SIGKILL to crash it)
  // without waiting.
  Status Signal(int sig) {
    if (pid_ < 0) return Status::Error(ErrorCode::kNotFound, "process not running");
    if (kill(pid_, sig) != 0) return Status::Error(ErrnoToErrorCode(errno), "kill");
    return Status::Ok();
  }

  // Waits up to `timeout` for the child to exit; its wait status, or nullopt
  // if it is still running.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout) {
    if (!WaitUntil([this] { return !Running(); }, timeout, std::chrono::milliseconds(10))) {
      return std::nullopt;
    }
    return status_;
  }

  // Sends `sig`, waits up to `grace`, then SIGKILLs. Returns the wait status
  // (also of a child that had already exited); -1 if there never was one.
  int Stop(int sig = SIGTERM, std::chrono::milliseconds grace = std::chrono::seconds(10)) {
    if (pid_ < 0) return status_;
    if (sig == SIGSTOP || sig == SIGTSTP) sig = SIGTERM;  // would never exit
    kill(pid_, SIGCONT);                                  // a frozen child cannot act on SIGTERM
    kill(pid_, sig);
    if (!WaitForExit(grace)) {
      kill(pid_, SIGKILL);
      Wait();
    }
    return status_;
  }
  // kill -9, as a crash would.
  int Kill() { return Stop(SIGKILL); }

  // The log file's contents so far ("" without a log file).
  std::string ReadLog() const {
    if (log_path_.empty()) return "";
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // True when the process exited normally with `code`.
  static bool ExitedWith(int wait_status, int code) {
    return wait_status != -1 && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == code;
  }

 private:
  void Wait() {
    if (pid_ < 0) return;
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) status_ = status;
    pid_ = -1;
  }

  pid_t pid_ = -1;
  int status_ = -1;  // wait status once reaped
  std::string log_path_;
};

}  // namespace shardfs
