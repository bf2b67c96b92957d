// Error codes shared by every socket in shardfs.
//
// One numbering for node, registry and client errors, so a reply's code can be
// passed along unchanged and turned into an errno only at the FUSE edge.
// Values are part of the wire format: append, never renumber.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardfs {

enum class ErrorCode : uint16_t {
  kOk = 0,
  kNotFound = 1,           // ENOENT
  kExists = 2,             // EEXIST
  kNotDir = 3,             // ENOTDIR
  kIsDir = 4,              // EISDIR
  kNotEmpty = 5,           // ENOTEMPTY
  kNameTooLong = 6,        // ENAMETOOLONG
  kInvalidArgument = 7,    // EINVAL
  kNoSpace = 8,            // ENOSPC
  kCorrupt = 9,            // EIO: a checksum did not match
  kIoError = 10,           // EIO
  kTimeout = 11,           // ETIMEDOUT
  kUnavailable = 12,       // EIO: not enough live nodes / peer unreachable
  kPermissionDenied = 13,  // EACCES
  kNotPermitted = 14,      // EPERM
  kBadMessage = 15,        // EPROTO: malformed request
  kVersionMismatch = 16,   // EPROTO
  kUnknownType = 17,       // EPROTO
  kTooLarge = 18,          // EFBIG / E2BIG
  kNoData = 19,            // ENODATA (xattr missing)
  kRange = 20,             // ERANGE
  kCrossDevice = 21,       // EXDEV
  kTooManyLinks = 22,      // EMLINK
  kStale = 23,             // ESTALE: generation no longer current
  kBusy = 24,              // EBUSY
  kInternal = 25,          // EIO
  kLoop = 26,              // ELOOP
  kNotSupported = 27,      // EOPNOTSUPP
  kUnauthenticated = 28,   // EACCES
};

// Highest value a peer may send; anything above is a malformed message.
inline constexpr uint16_t kMaxErrorCode = static_cast<uint16_t>(ErrorCode::kUnauthenticated);

std::string_view ErrorCodeName(ErrorCode code);
int ErrorCodeToErrno(ErrorCode code);
ErrorCode ErrnoToErrorCode(int err);

}  // namespace shardfs
