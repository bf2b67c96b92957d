// UniqueFd: sole ownership of a POSIX file descriptor.
//
// Closes the descriptor when it goes out of scope so no error path leaks one.
// Where a close error matters (a file whose written data must have reached the
// kernel), call Close() and check the errno it returns instead of relying on
// the destructor, which has nowhere to report it.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace shardfs {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }

  // Closes the held descriptor (errors ignored) and takes `fd`.
  void reset(int fd = -1) {
    int old = std::exchange(fd_, fd);
    if (old >= 0) ::close(old);
  }

  // Closes now and returns 0 or the errno close() reported. The descriptor is
  // released either way: retrying close() after EINTR is unsafe on Linux.
  int Close() {
    int old = std::exchange(fd_, -1);
    if (old < 0) return 0;
    return ::close(old) == 0 ? 0 : errno;
  }

 private:
  int fd_ = -1;
};

}  // namespace shardfs
