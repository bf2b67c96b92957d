#include "src/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace shardfs {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::Error(ErrorCode::kInvalidArgument, "odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  SHARDFS_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, OkAndError) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = Status::Error(ErrorCode::kNotFound, "no such shard");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "NOT_FOUND: no such shard");
  EXPECT_EQ(s.ToErrno(), ENOENT);
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_FALSE(Quarter(6).ok());
  EXPECT_EQ(Quarter(6).status().code(), ErrorCode::kInvalidArgument);
}

TEST(StatusTest, ErrnoRoundTrip) {
  for (int e : {ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG, EINVAL, ENOSPC, EACCES,
                EPERM, ENODATA, ERANGE, EXDEV, ESTALE, ELOOP}) {
    EXPECT_EQ(ErrorCodeToErrno(ErrnoToErrorCode(e)), e) << e;
  }
}

}  // namespace
}  // namespace shardfs
