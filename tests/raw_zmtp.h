// RawZmtp: bytes of ZMTP 3.0 (ZeroMQ's wire protocol) for tests that must
// speak it without libzmq.
//
// libzmq sends a multipart message only once its last frame is there, so a
// libzmq peer cannot leave a message unfinished on the wire; a hostile peer
// can. These helpers build the greeting, the NULL mechanism's READY, and
// frame headers, so a test can do what such a peer does over a plain TCP
// socket (only against a server without CURVE: the NULL mechanism).
// Header-only, no gtest dependency.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace shardfs::raw_zmtp {

// The 64-byte greeting, version 3.0, as a client.
inline std::string Greeting(const char* mechanism = "NULL") {
  std::string g(64, '\0');
  g[0] = '\xff';
  g[9] = '\x7f';
  g[10] = 3;
  std::memcpy(&g[12], mechanism, std::strlen(mechanism));
  return g;
}

// The NULL mechanism's READY command of a DEALER.
inline std::string ReadyCommand() {
  std::string body = "\x05READY";
  body += '\x0b';
  body += "Socket-Type";
  body += std::string("\0\0\0\x06", 4);
  body += "DEALER";
  return std::string("\x04", 1) + static_cast<char>(body.size()) + body;
}

// What a NULL-mechanism DEALER sends before its first frame.
inline std::string Hello() {
  return Greeting("NULL") + ReadyCommand();
}

// A frame header with a 64-bit size (flag 0x02), "more" (0x01) if asked.
inline std::string LongFrameHeader(uint64_t size, bool more) {
  std::string h(9, '\0');
  h[0] = static_cast<char>(0x02 | (more ? 0x01 : 0x00));
  for (int i = 0; i < 8; ++i) h[1 + i] = static_cast<char>((size >> (56 - 8 * i)) & 0xff);
  return h;
}

// A TCP connection to 127.0.0.1:port; -1 on failure (errno kept).
// `type_flags` are added to SOCK_STREAM | SOCK_CLOEXEC: with SOCK_NONBLOCK
// the connect may still be in progress. A `timeout` other than zero bounds
// the connect, and every send and receive after it.
inline int ConnectLoopback(uint16_t port, int type_flags = 0, timeval timeout = {}) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
  if (fd < 0) return -1;
  if (timeout.tv_sec != 0 || timeout.tv_usec != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  // A blocking connect that timed out also says EINPROGRESS: a failure.
  const bool in_progress_is_fine = (type_flags & SOCK_NONBLOCK) != 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 &&
      !(in_progress_is_fine && errno == EINPROGRESS)) {
    const int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

// Sends all of `bytes`; false when the connection is gone.
inline bool SendAll(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace shardfs::raw_zmtp
