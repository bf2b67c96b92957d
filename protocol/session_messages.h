// Client sessions: which files a mount (or the CLI) holds open, under a
// lease, so that the opens of a client that died are released.
//
// Open and Release name the client's session; the client renews it a few
// times per lease with RenewSession, which carries everything it holds open,
// so the registry's record heals by itself after a lost reply, a lapsed
// lease or a registry restart. A session of 0 is none: such opens last until
// released (or the registry restarts), as before sessions existed.
#pragma once

#include <cstdint>
#include <vector>

#include "protocol/fields.h"
#include "src/status.h"

namespace shardfs {

// Files one session may list in a renewal; a client holding more renews
// without the list (`full` false).
inline constexpr size_t kMaxSessionFiles = 65536;

// Open, Release.
struct OpenRequest {
  uint64_t ino = 0;
  uint64_t session = 0;
  FieldWriter Encode() const;
  // Also reads an InoRequest (no session).
  static Result<OpenRequest> Decode(const FieldReader& r);
};

struct RenewSessionRequest {
  uint64_t session = 0;
  // With `full`, every file the session holds open: inos[i] opened
  // counts[i] times, and nothing else.
  bool full = false;
  std::vector<uint64_t> inos;
  std::vector<uint64_t> counts;
  FieldWriter Encode() const;
  static Result<RenewSessionRequest> Decode(const FieldReader& r);
};

struct RenewSessionReply {
  // False when the registry had no such session (its lease had lapsed, or
  // the registry restarted); with `full` it holds the listed opens again.
  bool known = false;
  // The lease: a session not renewed for this long is released.
  uint64_t lease_ms = 0;
  FieldWriter Encode() const;
  static Result<RenewSessionReply> Decode(const FieldReader& r);
};

}  // namespace shardfs
