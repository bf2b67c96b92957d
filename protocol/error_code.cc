#include "protocol/error_code.h"

#include <cerrno>

namespace shardfs {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "OK";
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kExists:
      return "EXISTS";
    case ErrorCode::kNotDir:
      return "NOT_DIR";
    case ErrorCode::kIsDir:
      return "IS_DIR";
    case ErrorCode::kNotEmpty:
      return "NOT_EMPTY";
    case ErrorCode::kNameTooLong:
      return "NAME_TOO_LONG";
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kNoSpace:
      return "NO_SPACE";
    case ErrorCode::kCorrupt:
      return "CORRUPT";
    case ErrorCode::kIoError:
      return "IO_ERROR";
    case ErrorCode::kTimeout:
      return "TIMEOUT";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case ErrorCode::kNotPermitted:
      return "NOT_PERMITTED";
    case ErrorCode::kBadMessage:
      return "BAD_MESSAGE";
    case ErrorCode::kVersionMismatch:
      return "VERSION_MISMATCH";
    case ErrorCode::kUnknownType:
      return "UNKNOWN_TYPE";
    case ErrorCode::kTooLarge:
      return "TOO_LARGE";
    case ErrorCode::kNoData:
      return "NO_DATA";
    case ErrorCode::kRange:
      return "RANGE";
    case ErrorCode::kCrossDevice:
      return "CROSS_DEVICE";
    case ErrorCode::kTooManyLinks:
      return "TOO_MANY_LINKS";
    case ErrorCode::kStale:
      return "STALE";
    case ErrorCode::kBusy:
      return "BUSY";
    case ErrorCode::kInternal:
      return "INTERNAL";
    case ErrorCode::kLoop:
      return "LOOP";
    case ErrorCode::kNotSupported:
      return "NOT_SUPPORTED";
    case ErrorCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

int ErrorCodeToErrno(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return 0;
    case ErrorCode::kNotFound:
      return ENOENT;
    case ErrorCode::kExists:
      return EEXIST;
    case ErrorCode::kNotDir:
      return ENOTDIR;
    case ErrorCode::kIsDir:
      return EISDIR;
    case ErrorCode::kNotEmpty:
      return ENOTEMPTY;
    case ErrorCode::kNameTooLong:
      return ENAMETOOLONG;
    case ErrorCode::kInvalidArgument:
      return EINVAL;
    case ErrorCode::kNoSpace:
      return ENOSPC;
    case ErrorCode::kTimeout:
      return ETIMEDOUT;
    case ErrorCode::kPermissionDenied:
      return EACCES;
    case ErrorCode::kUnauthenticated:
      return EACCES;
    case ErrorCode::kNotPermitted:
      return EPERM;
    case ErrorCode::kBadMessage:
    case ErrorCode::kVersionMismatch:
    case ErrorCode::kUnknownType:
      return EPROTO;
    case ErrorCode::kTooLarge:
      return EFBIG;
    case ErrorCode::kNoData:
      return ENODATA;
    case ErrorCode::kRange:
      return ERANGE;
    case ErrorCode::kCrossDevice:
      return EXDEV;
    case ErrorCode::kTooManyLinks:
      return EMLINK;
    case ErrorCode::kStale:
      return ESTALE;
    case ErrorCode::kBusy:
      return EBUSY;
    case ErrorCode::kLoop:
      return ELOOP;
    case ErrorCode::kNotSupported:
      return EOPNOTSUPP;
    case ErrorCode::kCorrupt:
    case ErrorCode::kIoError:
    case ErrorCode::kUnavailable:
    case ErrorCode::kInternal:
      return EIO;
  }
  return EIO;
}

ErrorCode ErrnoToErrorCode(int err) {
  switch (err) {
    case 0:
      return ErrorCode::kOk;
    case ENOENT:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kExists;
    case ENOTDIR:
      return ErrorCode::kNotDir;
    case EISDIR:
      return ErrorCode::kIsDir;
    case ENOTEMPTY:
      return ErrorCode::kNotEmpty;
    case ENAMETOOLONG:
      return ErrorCode::kNameTooLong;
    case EINVAL:
      return ErrorCode::kInvalidArgument;
    case ENOSPC:
    case EDQUOT:
      return ErrorCode::kNoSpace;
    case ETIMEDOUT:
      return ErrorCode::kTimeout;
    case EACCES:
      return ErrorCode::kPermissionDenied;
    case EPERM:
      return ErrorCode::kNotPermitted;
    case EFBIG:
      return ErrorCode::kTooLarge;
    case ENODATA:
      return ErrorCode::kNoData;
    case ERANGE:
      return ErrorCode::kRange;
    case EXDEV:
      return ErrorCode::kCrossDevice;
    case EMLINK:
      return ErrorCode::kTooManyLinks;
    case ESTALE:
      return ErrorCode::kStale;
    case EBUSY:
      return ErrorCode::kBusy;
    case ELOOP:
      return ErrorCode::kLoop;
    case EOPNOTSUPP:
      return ErrorCode::kNotSupported;
    default:
      return ErrorCode::kIoError;
  }
}

}  // namespace shardfs
