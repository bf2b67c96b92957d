// Status and Result<T>: errors as values at every module boundary.
//
// A Status is either OK or a code plus a human message. Codes are the wire
// error codes of protocol/error_code.h, so a Status crosses a socket without
// translation, and each code maps to one errno at the FUSE edge. Modelled on
// LevelDB's util/status.h; no exceptions cross threads or sockets.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "protocol/error_code.h"

namespace shardfs {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status Error(ErrorCode code, std::string message) {
    return Status(code, std::move(message));
  }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NOT_FOUND: no such shard" - for logs and CLI output.
  std::string ToString() const {
    if (ok()) return "OK";
    std::string out(ErrorCodeName(code_));
    if (!message_.empty()) out += ": " + message_;
    return out;
  }
  // The errno a FUSE reply should carry for this status.
  int ToErrno() const { return ErrorCodeToErrno(code_); }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace shardfs

// Returns early from the enclosing function with the error of `expr`.
#define SHARDFS_RETURN_IF_ERROR(expr) \
  do {                                \
    ::shardfs::Status _st = (expr);   \
    if (!_st.ok()) return _st;        \
  } while (0)

#define SHARDFS_CONCAT_INNER(a, b) a##b
#define SHARDFS_CONCAT(a, b) SHARDFS_CONCAT_INNER(a, b)
// Declares `lhs` from a Result, returning its Status from the enclosing
// function when it is an error.
#define SHARDFS_ASSIGN_OR_RETURN(lhs, expr)                                                   \
  auto SHARDFS_CONCAT(_res_, __LINE__) = (expr);                                              \
  if (!SHARDFS_CONCAT(_res_, __LINE__).ok()) return SHARDFS_CONCAT(_res_, __LINE__).status(); \
  lhs = std::move(SHARDFS_CONCAT(_res_, __LINE__)).value()
