#include "src/namespace_store.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "protocol/envelope.h"
#include "protocol/namespace_messages.h"
#include "src/namespace_op.h"

namespace shardfs {
namespace {

constexpr uint32_t kShard = 1 << 20;  // 1 MiB shards keep the arithmetic readable

ShardEntry Shard(uint32_t index, uint64_t generation, uint64_t length,
                 std::vector<std::string> replicas = {"n1", "n2"}) {
  ShardEntry e;
  e.index = index;
  e.generation = generation;
  e.length = length;
  e.checksum = generation * 1000 + index;
  e.replicas = std::move(replicas);
  return e;
}

// A shard whose nodes keep `data_bytes` of it (the rest are holes).
ShardEntry WithData(ShardEntry e, uint64_t data_bytes) {
  e.data_bytes = data_bytes;
  return e;
}

class StoreTest : public ::testing::Test {
 protected:
  void TearDown() override {
    Status st = store_.CheckInvariants();
    EXPECT_TRUE(st.ok()) << st.ToString();
  }

  // Prepares, stamps and applies an op the way NamespaceDb does; every op
  // that succeeded is kept so tests can replay them.
  Result<ApplyResult> Do(NamespaceOp op) {
    store_.Prepare(&op);
    if (int64_t* t = OpTime(&op); t != nullptr && *t == 0) *t = ++now_;
    Result<ApplyResult> r = store_.Apply(op);
    if (r.ok()) applied_.push_back(op);
    return r;
  }
  ErrorCode Code(NamespaceOp op) {
    Result<ApplyResult> r = Do(std::move(op));
    return r.ok() ? ErrorCode::kOk : r.status().code();
  }

  uint64_t Mkdir(uint64_t parent, const std::string& name) {
    auto r = Do(MkdirOp{.parent = parent, .name = name, .mode = 0755});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->ino : 0;
  }
  uint64_t Create(uint64_t parent, const std::string& name, uint32_t shard_size = kShard) {
    auto r = Do(MknodOp{.parent = parent, .name = name, .mode = 0644, .shard_size = shard_size});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->ino : 0;
  }
  InodeAttrs Attr(uint64_t ino) {
    auto r = store_.GetAttr(ino);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : InodeAttrs{};
  }
  bool Exists(uint64_t parent, const std::string& name) { return store_.Lookup(parent, name).ok(); }
  uint64_t InoOf(uint64_t parent, const std::string& name) {
    auto r = store_.Lookup(parent, name);
    return r.ok() ? r->ino : 0;
  }

  NamespaceStore store_;
  int64_t now_ = 1'000'000;
  std::vector<NamespaceOp> applied_;
};

// --- Names --------------------------------------------------------------

TEST(ValidateNameTest, RejectsReservedAndOversizedNames) {
  for (std::string bad : {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
                          std::string("/"), std::string("a\0b", 3)}) {
    EXPECT_EQ(ValidateName(bad).code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateName(std::string(255, 'x')).ok());
  EXPECT_EQ(ValidateName(std::string(256, 'x')).code(), ErrorCode::kNameTooLong);
  EXPECT_TRUE(ValidateName("...").ok());
  EXPECT_TRUE(ValidateName(".hidden").ok());
}

// --- Create ops ------------------------------------------------------------

TEST_F(StoreTest, RootExists) {
  InodeAttrs root = Attr(kRootIno);
  EXPECT_EQ(root.type, FileType::kDirectory);
  EXPECT_EQ(root.nlink, 2u);
  EXPECT_EQ(StatMode(root), S_IFDIR | 0755u);
  EXPECT_EQ(store_.Lookup(kRootIno, "..")->ino, kRootIno);
  EXPECT_EQ(store_.Lookup(kRootIno, ".")->ino, kRootIno);
}

TEST_F(StoreTest, MknodCreatesEveryNodeType) {
  auto file = Do(MknodOp{.parent = kRootIno, .name = "f", .mode = 0100644, .uid = 7, .gid = 8});
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->attrs->type, FileType::kRegular);
  EXPECT_EQ(file->attrs->mode, 0644u);  // type bits of the op's mode are dropped
  EXPECT_EQ(file->attrs->uid, 7u);
  EXPECT_EQ(file->attrs->gid, 8u);
  EXPECT_EQ(file->attrs->nlink, 1u);
  EXPECT_EQ(file->attrs->shard_size, kDefaultShardSize);
  EXPECT_EQ(file->attrs->ctime_ns, now_);
  EXPECT_EQ(Attr(kRootIno).mtime_ns, now_);

  auto fifo = Do(MknodOp{.parent = kRootIno, .name = "p", .type = FileType::kFifo, .mode = 0600});
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(StatMode(*fifo->attrs), S_IFIFO | 0600u);
  EXPECT_EQ(fifo->attrs->shard_size, 0u);
  auto sock = Do(MknodOp{.parent = kRootIno, .name = "s", .type = FileType::kSocket});
  ASSERT_TRUE(sock.ok());
  auto chr =
      Do(MknodOp{.parent = kRootIno, .name = "c", .type = FileType::kCharDevice, .rdev = 0x0501});
  ASSERT_TRUE(chr.ok());
  EXPECT_EQ(chr->attrs->rdev, 0x0501u);
  auto blk =
      Do(MknodOp{.parent = kRootIno, .name = "b", .type = FileType::kBlockDevice, .rdev = 8});
  ASSERT_TRUE(blk.ok());
  EXPECT_EQ(StatMode(*blk->attrs) & S_IFMT, static_cast<uint32_t>(S_IFBLK));

  // Ids are handed out in order and never reused.
  EXPECT_EQ(file->ino, 2u);
  EXPECT_EQ(blk->ino, 6u);
  EXPECT_EQ(store_.Stats().inodes, 6u);
}

TEST_F(StoreTest, MknodErrors) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Code(MknodOp{.parent = 999, .name = "x"}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(MknodOp{.parent = f, .name = "x"}), ErrorCode::kNotDir);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "f"}), ErrorCode::kExists);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = ""}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "."}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = ".."}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "a/b"}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = std::string(256, 'n')}),
            ErrorCode::kNameTooLong);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = std::string(255, 'n')}), ErrorCode::kOk);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "d", .type = FileType::kDirectory}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "l", .type = FileType::kSymlink}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "s", .shard_size = 1000}),
            ErrorCode::kInvalidArgument);
  // An explicit id that is taken is refused; ids are never shared.
  EXPECT_EQ(Code(MknodOp{.parent = kRootIno, .name = "dup", .ino = f}),
            ErrorCode::kInvalidArgument);
  // Without Prepare a create has no id.
  EXPECT_EQ(store_.Apply(MknodOp{.parent = kRootIno, .name = "noid"}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_FALSE(Exists(kRootIno, "noid"));
}

TEST_F(StoreTest, MkdirLinksParent) {
  uint64_t d = Mkdir(kRootIno, "d");
  EXPECT_EQ(Attr(d).nlink, 2u);
  EXPECT_EQ(Attr(kRootIno).nlink, 3u);
  uint64_t e = Mkdir(d, "e");
  EXPECT_EQ(Attr(d).nlink, 3u);
  EXPECT_EQ(store_.Lookup(e, "..")->ino, d);
  EXPECT_EQ(Code(MkdirOp{.parent = kRootIno, .name = "d"}), ErrorCode::kExists);
  EXPECT_EQ(Code(MkdirOp{.parent = 777, .name = "x"}), ErrorCode::kNotFound);
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Code(MkdirOp{.parent = f, .name = "x"}), ErrorCode::kNotDir);
  EXPECT_EQ(Code(MkdirOp{.parent = kRootIno, .name = "a/b"}), ErrorCode::kInvalidArgument);
}

TEST_F(StoreTest, ReplicationGoalIsInherited) {
  uint64_t d = Mkdir(kRootIno, "d");
  ASSERT_EQ(Code(SetReplicationGoalOp{.ino = d, .goal = 5}), ErrorCode::kOk);
  uint64_t sub = Mkdir(d, "sub");
  uint64_t f = Create(sub, "f");
  EXPECT_EQ(Attr(sub).replication_goal, 5u);
  EXPECT_EQ(Attr(f).replication_goal, 5u);
  auto g = Do(MknodOp{.parent = d, .name = "g", .replication_goal = 2});
  EXPECT_EQ(g->attrs->replication_goal, 2u);
  EXPECT_EQ(Code(SetReplicationGoalOp{.ino = 999, .goal = 1}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(SetReplicationGoalOp{.ino = f, .goal = 256}), ErrorCode::kInvalidArgument);
}

TEST_F(StoreTest, SymlinkAndReadlink) {
  auto r = Do(SymlinkOp{.parent = kRootIno, .name = "l", .target = "../some/where"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(StatMode(*r->attrs), S_IFLNK | 0777u);
  EXPECT_EQ(r->attrs->size, 13u);
  EXPECT_EQ(*store_.ReadLink(r->ino), "../some/where");
  EXPECT_EQ(store_.ReadLink(kRootIno).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(SymlinkOp{.parent = kRootIno, .name = "e", .target = ""}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(SymlinkOp{.parent = kRootIno, .name = "big", .target = std::string(4096, 'x')}),
            ErrorCode::kNameTooLong);
  EXPECT_EQ(Code(SymlinkOp{.parent = kRootIno, .name = "l", .target = "x"}), ErrorCode::kExists);
}

// --- Link / unlink / rmdir ------------------------------------------------------

TEST_F(StoreTest, LinkAddsName) {
  uint64_t f = Create(kRootIno, "f");
  uint64_t d = Mkdir(kRootIno, "d");
  ASSERT_EQ(Code(LinkOp{.ino = f, .parent = d, .name = "g"}), ErrorCode::kOk);
  EXPECT_EQ(Attr(f).nlink, 2u);
  EXPECT_EQ(InoOf(d, "g"), f);
  EXPECT_EQ(Code(LinkOp{.ino = f, .parent = d, .name = "g"}), ErrorCode::kExists);
  EXPECT_EQ(Code(LinkOp{.ino = d, .parent = kRootIno, .name = "d2"}), ErrorCode::kNotPermitted);
  EXPECT_EQ(Code(LinkOp{.ino = 999, .parent = kRootIno, .name = "x"}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(LinkOp{.ino = f, .parent = f, .name = "x"}), ErrorCode::kNotDir);
  EXPECT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = ".."}), ErrorCode::kInvalidArgument);

  // Unlinking one name keeps the other.
  ASSERT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "f"}), ErrorCode::kOk);
  EXPECT_EQ(Attr(f).nlink, 1u);
  EXPECT_EQ(InoOf(d, "g"), f);
}

TEST_F(StoreTest, LinkCountLimit) {
  uint64_t f = Create(kRootIno, "f");
  for (uint32_t i = 1; i < kMaxLinks; ++i) {
    ASSERT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = "l" + std::to_string(i)}),
              ErrorCode::kOk);
  }
  EXPECT_EQ(Attr(f).nlink, kMaxLinks);
  EXPECT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = "one_more"}),
            ErrorCode::kTooManyLinks);
}

TEST_F(StoreTest, UnlinkErrors) {
  uint64_t d = Mkdir(kRootIno, "d");
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "missing"}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "d"}), ErrorCode::kIsDir);
  EXPECT_EQ(Code(UnlinkOp{.parent = f, .name = "x"}), ErrorCode::kNotDir);
  EXPECT_EQ(Code(UnlinkOp{.parent = 999, .name = "x"}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "."}), ErrorCode::kInvalidArgument);
  auto r = Do(UnlinkOp{.parent = kRootIno, .name = "f"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->removed_inodes, std::vector<uint64_t>{f});
  EXPECT_FALSE(r->attrs.has_value());
  EXPECT_EQ(store_.GetAttr(f).status().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(Exists(kRootIno, "d"));
  (void)d;
}

TEST_F(StoreTest, UnlinkReleasesShards) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{
                .ino = f, .shards = {Shard(0, 1, kShard), Shard(1, 1, 10)}, .size = kShard + 10}),
            ErrorCode::kOk);
  auto r = Do(UnlinkOp{.parent = kRootIno, .name = "f"});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->garbage.size(), 2u);
  EXPECT_EQ(r->garbage[0].key, (ShardKey{f, 0, 1}));
  EXPECT_EQ(r->garbage[1].key, (ShardKey{f, 1, 1}));
  EXPECT_EQ(r->garbage[0].released_ns, now_);
  EXPECT_EQ(store_.ListGarbage(now_, 100).size(), 2u);
}

TEST_F(StoreTest, Rmdir) {
  uint64_t d = Mkdir(kRootIno, "d");
  uint64_t e = Mkdir(d, "e");
  Create(kRootIno, "f");
  EXPECT_EQ(Code(RmdirOp{.parent = kRootIno, .name = "d"}), ErrorCode::kNotEmpty);
  EXPECT_EQ(Code(RmdirOp{.parent = kRootIno, .name = "f"}), ErrorCode::kNotDir);
  EXPECT_EQ(Code(RmdirOp{.parent = kRootIno, .name = "zz"}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(RmdirOp{.parent = kRootIno, .name = "."}), ErrorCode::kInvalidArgument);
  ASSERT_EQ(Code(RmdirOp{.parent = d, .name = "e"}), ErrorCode::kOk);
  EXPECT_EQ(Attr(d).nlink, 2u);
  EXPECT_EQ(store_.GetAttr(e).status().code(), ErrorCode::kNotFound);
  ASSERT_EQ(Code(RmdirOp{.parent = kRootIno, .name = "d"}), ErrorCode::kOk);
  EXPECT_EQ(Attr(kRootIno).nlink, 2u);
}

// --- Rename ------------------------------------------------------------------

TEST_F(StoreTest, RenameFileToNewName) {
  uint64_t f = Create(kRootIno, "a");
  uint64_t d = Mkdir(kRootIno, "d");
  auto r = Do(RenameOp{.parent = kRootIno, .name = "a", .new_parent = d, .new_name = "b"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ino, f);
  EXPECT_FALSE(Exists(kRootIno, "a"));
  EXPECT_EQ(InoOf(d, "b"), f);
  EXPECT_EQ(Attr(f).ctime_ns, now_);
  EXPECT_EQ(Attr(d).mtime_ns, now_);
  EXPECT_EQ(Attr(kRootIno).mtime_ns, now_);
}

TEST_F(StoreTest, RenameMatrix) {
  struct Case {
    const char* what;
    bool src_dir;
    int dst;  // 0 none, 1 file, 2 empty dir, 3 non-empty dir
    uint32_t flags;
    ErrorCode expect;
  };
  const Case cases[] = {
      {"file to new name", false, 0, 0, ErrorCode::kOk},
      {"file over file", false, 1, 0, ErrorCode::kOk},
      {"file over empty dir", false, 2, 0, ErrorCode::kIsDir},
      {"file over full dir", false, 3, 0, ErrorCode::kIsDir},
      {"dir to new name", true, 0, 0, ErrorCode::kOk},
      {"dir over file", true, 1, 0, ErrorCode::kNotDir},
      {"dir over empty dir", true, 2, 0, ErrorCode::kOk},
      {"dir over full dir", true, 3, 0, ErrorCode::kNotEmpty},
      {"noreplace, no target", false, 0, kRenameNoReplace, ErrorCode::kOk},
      {"noreplace over file", false, 1, kRenameNoReplace, ErrorCode::kExists},
      {"noreplace over dir", true, 2, kRenameNoReplace, ErrorCode::kExists},
      {"exchange, no target", false, 0, kRenameExchange, ErrorCode::kNotFound},
      {"exchange file/file", false, 1, kRenameExchange, ErrorCode::kOk},
      {"exchange file/full dir", false, 3, kRenameExchange, ErrorCode::kOk},
      {"exchange dir/file", true, 1, kRenameExchange, ErrorCode::kOk},
      {"exchange dir/full dir", true, 3, kRenameExchange, ErrorCode::kOk},
      {"both flags", false, 1, kRenameExchange | kRenameNoReplace, ErrorCode::kInvalidArgument},
      {"unknown flag", false, 0, 4, ErrorCode::kInvalidArgument},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // Each case in its own pair of directories, so parents differ and the
    // ".." link bookkeeping is exercised.
    uint64_t from = Mkdir(kRootIno, "from" + std::to_string(n));
    uint64_t to = Mkdir(kRootIno, "to" + std::to_string(n));
    ++n;
    uint64_t src = c.src_dir ? Mkdir(from, "s") : Create(from, "s");
    uint64_t dst = 0;
    if (c.dst == 1) dst = Create(to, "t");
    if (c.dst >= 2) dst = Mkdir(to, "t");
    if (c.dst == 3) Create(dst, "inside");
    const InodeAttrs from_before = Attr(from), to_before = Attr(to);

    ErrorCode got = Code(
        RenameOp{.parent = from, .name = "s", .new_parent = to, .new_name = "t", .flags = c.flags});
    ASSERT_EQ(got, c.expect);
    if (got != ErrorCode::kOk) {
      // A failed rename changes nothing.
      EXPECT_EQ(InoOf(from, "s"), src);
      EXPECT_EQ(InoOf(to, "t"), dst);
      EXPECT_EQ(Attr(from), from_before);
      EXPECT_EQ(Attr(to), to_before);
      continue;
    }
    EXPECT_EQ(InoOf(to, "t"), src);
    if (c.flags & kRenameExchange) {
      EXPECT_EQ(InoOf(from, "s"), dst);
    } else {
      EXPECT_FALSE(Exists(from, "s"));
      if (dst != 0) {
        EXPECT_EQ(store_.GetAttr(dst).status().code(), ErrorCode::kNotFound);
      }
    }
    Status st = store_.CheckInvariants();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
}

TEST_F(StoreTest, RenameDirectoryUpdatesLinkCounts) {
  uint64_t a = Mkdir(kRootIno, "a");
  uint64_t b = Mkdir(kRootIno, "b");
  uint64_t d = Mkdir(a, "d");
  ASSERT_EQ(Code(RenameOp{.parent = a, .name = "d", .new_parent = b, .new_name = "d"}),
            ErrorCode::kOk);
  EXPECT_EQ(Attr(a).nlink, 2u);
  EXPECT_EQ(Attr(b).nlink, 3u);
  EXPECT_EQ(store_.Lookup(d, "..")->ino, b);
  // Over an empty directory in the same parent: the parent loses one subdir.
  Mkdir(b, "e");
  EXPECT_EQ(Attr(b).nlink, 4u);
  ASSERT_EQ(Code(RenameOp{.parent = b, .name = "d", .new_parent = b, .new_name = "e"}),
            ErrorCode::kOk);
  EXPECT_EQ(Attr(b).nlink, 3u);
  EXPECT_EQ(InoOf(b, "e"), d);
}

TEST_F(StoreTest, RenameIntoOwnSubtreeIsInvalid) {
  uint64_t a = Mkdir(kRootIno, "a");
  uint64_t b = Mkdir(a, "b");
  uint64_t c = Mkdir(b, "c");
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno, .name = "a", .new_parent = c, .new_name = "x"}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno, .name = "a", .new_parent = a, .new_name = "x"}),
            ErrorCode::kInvalidArgument);
  // Exchange in either direction also may not put a directory under itself.
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno,
                          .name = "a",
                          .new_parent = a,
                          .new_name = "b",
                          .flags = kRenameExchange}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(RenameOp{.parent = a,
                          .name = "b",
                          .new_parent = kRootIno,
                          .new_name = "a",
                          .flags = kRenameExchange}),
            ErrorCode::kInvalidArgument);
  // Onto an ancestor: the ancestor is not empty.
  EXPECT_EQ(Code(RenameOp{.parent = b, .name = "c", .new_parent = kRootIno, .new_name = "a"}),
            ErrorCode::kNotEmpty);
}

TEST_F(StoreTest, RenameOntoSameInodeIsNoOp) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = "g"}), ErrorCode::kOk);
  const InodeAttrs before = Attr(f);
  ASSERT_EQ(
      Code(RenameOp{.parent = kRootIno, .name = "f", .new_parent = kRootIno, .new_name = "g"}),
      ErrorCode::kOk);
  // Both names stay (POSIX: rename between links of one file does nothing).
  EXPECT_EQ(InoOf(kRootIno, "f"), f);
  EXPECT_EQ(InoOf(kRootIno, "g"), f);
  EXPECT_EQ(Attr(f), before);
  ASSERT_EQ(
      Code(RenameOp{.parent = kRootIno, .name = "f", .new_parent = kRootIno, .new_name = "f"}),
      ErrorCode::kOk);
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno,
                          .name = "f",
                          .new_parent = kRootIno,
                          .new_name = "f",
                          .flags = kRenameNoReplace}),
            ErrorCode::kExists);
}

TEST_F(StoreTest, RenameMissingSourceOrParent) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(
      Code(RenameOp{.parent = kRootIno, .name = "nope", .new_parent = kRootIno, .new_name = "x"}),
      ErrorCode::kNotFound);
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno, .name = "f", .new_parent = 999, .new_name = "x"}),
            ErrorCode::kNotFound);
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno, .name = "f", .new_parent = f, .new_name = "x"}),
            ErrorCode::kNotDir);
  EXPECT_EQ(Code(RenameOp{.parent = kRootIno,
                          .name = "f",
                          .new_parent = kRootIno,
                          .new_name = std::string(256, 'x')}),
            ErrorCode::kNameTooLong);
}

TEST_F(StoreTest, RenameOverFileReleasesItsShards) {
  Create(kRootIno, "a");
  uint64_t b = Create(kRootIno, "b");
  ASSERT_EQ(Code(CommitShardsOp{.ino = b, .shards = {Shard(0, 3, 100)}, .size = 100}),
            ErrorCode::kOk);
  auto r = Do(RenameOp{.parent = kRootIno, .name = "a", .new_parent = kRootIno, .new_name = "b"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->removed_inodes, std::vector<uint64_t>{b});
  ASSERT_EQ(r->garbage.size(), 1u);
  EXPECT_EQ(r->garbage[0].key, (ShardKey{b, 0, 3}));
}

// --- Setattr and truncate -----------------------------------------------------

TEST_F(StoreTest, SetattrFields) {
  uint64_t f = Create(kRootIno, "f");
  auto r =
      Do(SetattrOp{.ino = f,
                   .mask = kSetAttrMode | kSetAttrUid | kSetAttrGid | kSetAttrAtime | kSetAttrMtime,
                   .mode = 04711,
                   .uid = 10,
                   .gid = 20,
                   .atime_ns = 5,
                   .mtime_ns = -6});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->attrs->mode, 04711u);
  EXPECT_EQ(r->attrs->uid, 10u);
  EXPECT_EQ(r->attrs->gid, 20u);
  EXPECT_EQ(r->attrs->atime_ns, 5);
  EXPECT_EQ(r->attrs->mtime_ns, -6);
  EXPECT_EQ(r->attrs->ctime_ns, now_);
  // Only masked fields change.
  auto r2 = Do(SetattrOp{.ino = f, .mask = kSetAttrUid, .mode = 0, .uid = 11, .gid = 0});
  EXPECT_EQ(r2->attrs->mode, 04711u);
  EXPECT_EQ(r2->attrs->gid, 20u);
  EXPECT_EQ(Code(SetattrOp{.ino = 999, .mask = kSetAttrMode}), ErrorCode::kNotFound);
  EXPECT_EQ(Code(SetattrOp{.ino = f, .mask = 1u << 20}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(SetattrOp{.ino = kRootIno, .mask = kSetAttrSize, .size = 0}), ErrorCode::kIsDir);
  auto fifo = Do(MknodOp{.parent = kRootIno, .name = "p", .type = FileType::kFifo});
  EXPECT_EQ(Code(SetattrOp{.ino = fifo->ino, .mask = kSetAttrSize, .size = 0}),
            ErrorCode::kInvalidArgument);
  // chmod of a directory works too.
  EXPECT_EQ(Do(SetattrOp{.ino = kRootIno, .mask = kSetAttrMode, .mode = 0700})->attrs->mode, 0700u);
}

TEST_F(StoreTest, TruncateDropsAndShortensShards) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{.ino = f,
                                .shards = {Shard(0, 1, kShard), Shard(1, 1, kShard),
                                           Shard(2, 1, kShard), Shard(3, 1, 5)},
                                .size = 3ull * kShard + 5}),
            ErrorCode::kOk);
  // Cut into shard 1: shards 2 and 3 go, shard 1 keeps 100 bytes.
  auto r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = kShard + 100});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->attrs->size, kShard + 100u);
  EXPECT_EQ(r->attrs->mtime_ns, now_);
  ASSERT_EQ(r->garbage.size(), 2u);
  EXPECT_EQ(r->garbage[0].key, (ShardKey{f, 2, 1}));
  EXPECT_EQ(r->garbage[1].key, (ShardKey{f, 3, 1}));
  auto shards = store_.GetShards(f, 0, 100);
  ASSERT_EQ(shards->size(), 2u);
  EXPECT_EQ((*shards)[0].length, kShard);
  EXPECT_EQ((*shards)[1].length, 100u);
  EXPECT_EQ((*shards)[1].checksum, Shard(1, 1, 0).checksum);  // the object is unchanged

  // Exactly on a boundary: shard 1 goes entirely, shard 0 stays whole.
  r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = kShard});
  ASSERT_EQ(r->garbage.size(), 1u);
  EXPECT_EQ(store_.GetShards(f, 0, 100)->size(), 1u);
  EXPECT_EQ(store_.GetShards(f, 0, 100)->at(0).length, kShard);

  // Extending adds no shards (a hole reads as zeros).
  r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 10ull * kShard});
  EXPECT_TRUE(r->garbage.empty());
  EXPECT_EQ(store_.GetShards(f, 0, 100)->size(), 1u);
  EXPECT_EQ(Attr(f).size, 10ull * kShard);

  // To zero: everything goes.
  r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 0});
  EXPECT_EQ(r->garbage.size(), 1u);
  EXPECT_TRUE(store_.GetShards(f, 0, 100)->empty());
  EXPECT_EQ(store_.ListGarbage(now_, 100).size(), 4u);
}

// st_blocks comes from stored_bytes: what the shard table holds, so a
// sparse file's holes are not counted.
TEST_F(StoreTest, StoredBytesFollowTheShardTable) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Attr(f).stored_bytes, 0u);
  // Shards 0 and 3 of a four-shard file: 1 and 2 are holes.
  ASSERT_EQ(
      Code(CommitShardsOp{
          .ino = f, .shards = {Shard(0, 1, kShard), Shard(3, 1, 5)}, .size = 3ull * kShard + 5}),
      ErrorCode::kOk);
  EXPECT_EQ(Attr(f).stored_bytes, kShard + 5u);
  // A new generation of a hole's shard, shorter than a whole shard.
  ASSERT_EQ(
      Code(CommitShardsOp{.ino = f, .shards = {Shard(1, 2, 4096)}, .size = 3ull * kShard + 5}),
      ErrorCode::kOk);
  EXPECT_EQ(Attr(f).stored_bytes, kShard + 4096u + 5u);
  // Truncating into shard 0 drops 1 and 3 and shortens 0.
  auto r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 100});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->attrs->stored_bytes, 100u);
  // Growing adds only a hole.
  r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 10ull * kShard});
  EXPECT_EQ(r->attrs->stored_bytes, 100u);
  // Holes inside a shard, as its nodes reported them, are not counted
  // either; a shard whose nodes said nothing counts whole.
  ASSERT_EQ(Code(CommitShardsOp{.ino = f,
                                .shards = {WithData(Shard(4, 3, kShard), 8192),
                                           WithData(Shard(5, 3, kShard), 0), Shard(6, 3, 10)},
                                .size = 10ull * kShard}),
            ErrorCode::kOk);
  EXPECT_EQ(Attr(f).stored_bytes, 100u + 8192u + 10u);
  // Truncated below what the nodes hold: the length bounds it.
  r = Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 4ull * kShard + 1000});
  EXPECT_EQ(r->attrs->stored_bytes, 100u + 1000u);
  ASSERT_TRUE(Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 100}).ok());
  ASSERT_TRUE(Do(SetattrOp{.ino = f, .mask = kSetAttrSize, .size = 10ull * kShard}).ok());

  // What the nodes hold of each shard crosses the wire with the commit; an
  // entry without it stays without.
  const CommitShardsRequest commit{f, {WithData(Shard(0, 9, kShard), 4096), Shard(1, 9, 5)}, 7};
  auto commit_back = CommitShardsRequest::Decode(
      DecodeHeader(EncodeHeader(MessageType::kCommitShards, 1, commit.Encode()))->fields);
  ASSERT_TRUE(commit_back.ok()) << commit_back.status().ToString();
  EXPECT_EQ(commit_back->shards, commit.shards);

  // The field crosses the wire; a registry that does not send it reads as
  // a file without holes.
  auto back = AttrReply::Decode(
      DecodeHeader(EncodeHeader(MessageType::kGetAttr, 1, AttrReply{Attr(f)}.Encode()))->fields);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->attrs.stored_bytes, 100u);
  EXPECT_EQ(back->attrs.size, 10ull * kShard);
  const InodeAttrs without = Attr(f);
  FieldWriter stripped;
  stripped.U64("ino", without.ino)
      .U64("type", static_cast<uint8_t>(without.type))
      .U64("mode", without.mode)
      .U64("uid", without.uid)
      .U64("gid", without.gid)
      .U64("nlink", without.nlink)
      .U64("size", without.size)
      .U64("rdev", without.rdev)
      .I64("atime", without.atime_ns)
      .I64("mtime", without.mtime_ns)
      .I64("ctime", without.ctime_ns)
      .U64("shardsize", without.shard_size)
      .U64("goal", without.replication_goal);
  auto legacy = DecodeHeader(EncodeHeader(MessageType::kGetAttr, 1, stripped));
  ASSERT_TRUE(legacy.ok());
  auto legacy_attrs = DecodeAttrs(legacy->fields);
  ASSERT_TRUE(legacy_attrs.ok()) << legacy_attrs.status().ToString();
  EXPECT_EQ(legacy_attrs->stored_bytes, 10ull * kShard);
}

TEST_F(StoreTest, TruncateWithExplicitMtimeKeepsIt) {
  uint64_t f = Create(kRootIno, "f");
  auto r =
      Do(SetattrOp{.ino = f, .mask = kSetAttrSize | kSetAttrMtime, .size = 10, .mtime_ns = 42});
  EXPECT_EQ(r->attrs->mtime_ns, 42);
  EXPECT_EQ(r->attrs->size, 10u);
}

// --- Xattrs -------------------------------------------------------------------

// A listing with attributes says which names have xattrs, so a mount
// walking it need not ask for security.selinux and ACLs of each.
TEST_F(StoreTest, ReadDirWithAttrsSaysWhichInodesHaveXattrs) {
  uint64_t plain = Create(kRootIno, "plain");
  uint64_t tagged = Create(kRootIno, "tagged");
  ASSERT_EQ(Code(SetxattrOp{.ino = tagged, .name = "user.a", .value = "1"}), ErrorCode::kOk);
  auto page = store_.ReadDir(kRootIno, "", 10, /*with_attrs=*/true);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->entries.size(), 2u);
  for (const DirEntry& e : page->entries) {
    ASSERT_TRUE(e.has_xattrs.has_value()) << e.name;
    EXPECT_EQ(*e.has_xattrs, e.ino == tagged) << e.name;
  }
  EXPECT_EQ(page->entries[0].ino, plain);
  // The flag survives the wire.
  ReadDirReply reply{page->entries, false};
  auto env = DecodeHeader(EncodeHeader(MessageType::kReadDir, 1, reply.Encode()));
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  auto back = ReadDirReply::Decode(env->fields);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->entries[0].has_xattrs, std::optional<bool>(false));
  EXPECT_EQ(back->entries[1].has_xattrs, std::optional<bool>(true));
  // Without attributes the listing says nothing of xattrs either.
  auto bare = store_.ReadDir(kRootIno, "", 10, /*with_attrs=*/false);
  EXPECT_FALSE(bare->entries[0].has_xattrs.has_value());
}

TEST_F(StoreTest, XattrFlags) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.a", .value = "1", .flags = kXattrReplace}),
            ErrorCode::kNoData);
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.a", .value = "1", .flags = kXattrCreate}),
            ErrorCode::kOk);
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.a", .value = "2", .flags = kXattrCreate}),
            ErrorCode::kExists);
  EXPECT_EQ(*store_.GetXattr(f, "user.a"), "1");
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.a", .value = "3", .flags = kXattrReplace}),
            ErrorCode::kOk);
  EXPECT_EQ(*store_.GetXattr(f, "user.a"), "3");
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.a", .value = std::string("\0\xff", 2)}),
            ErrorCode::kOk);
  EXPECT_EQ(*store_.GetXattr(f, "user.a"), std::string("\0\xff", 2));
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "user.b", .value = ""}), ErrorCode::kOk);
  EXPECT_EQ(*store_.ListXattr(f), (std::vector<std::string>{"user.a", "user.b"}));
  EXPECT_EQ(Attr(f).ctime_ns, now_);

  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "x", .flags = kXattrCreate | kXattrReplace}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "", .value = "v"}), ErrorCode::kRange);
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = std::string(256, 'n')}), ErrorCode::kRange);
  EXPECT_EQ(Code(SetxattrOp{.ino = f, .name = "big", .value = std::string(65537, 'v')}),
            ErrorCode::kTooLarge);
  EXPECT_EQ(Code(SetxattrOp{.ino = 999, .name = "a"}), ErrorCode::kNotFound);

  EXPECT_EQ(Code(RemovexattrOp{.ino = f, .name = "user.a"}), ErrorCode::kOk);
  EXPECT_EQ(Code(RemovexattrOp{.ino = f, .name = "user.a"}), ErrorCode::kNoData);
  EXPECT_EQ(store_.GetXattr(f, "user.a").status().code(), ErrorCode::kNoData);
  EXPECT_EQ(Code(RemovexattrOp{.ino = 999, .name = "user.a"}), ErrorCode::kNotFound);
  EXPECT_EQ(store_.ListXattr(999).status().code(), ErrorCode::kNotFound);
}

// --- Shard commits and garbage -------------------------------------------------

TEST_F(StoreTest, CommitShardsReplacesGenerations) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 100)}, .size = 100}),
            ErrorCode::kOk);
  EXPECT_EQ(Attr(f).size, 100u);
  EXPECT_EQ(Attr(f).mtime_ns, now_);
  auto r = Do(CommitShardsOp{
      .ino = f, .shards = {Shard(0, 2, kShard), Shard(1, 2, 50)}, .size = kShard + 50});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->garbage.size(), 1u);
  EXPECT_EQ(r->garbage[0].key, (ShardKey{f, 0, 1}));
  EXPECT_EQ(r->garbage[0].replicas, (std::vector<std::string>{"n1", "n2"}));
  auto shards = *store_.GetShards(f, 1, 1);
  ASSERT_EQ(shards.size(), 1u);
  EXPECT_EQ(shards[0], Shard(1, 2, 50));

  // An older generation lost the race.
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10)}, .size = kShard + 50}),
            ErrorCode::kStale);
  // The same generation with a new replica list: only the dropped copy goes.
  r = Do(CommitShardsOp{.ino = f, .shards = {Shard(1, 2, 50, {"n2", "n3"})}, .size = kShard + 50});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->garbage.size(), 1u);
  EXPECT_EQ(r->garbage[0].key, (ShardKey{f, 1, 2}));
  EXPECT_EQ(r->garbage[0].replicas, std::vector<std::string>{"n1"});
}

TEST_F(StoreTest, SetShardReplicasMovesCopiesWithoutTouchingTheFile) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 5, 100)}, .size = 100}),
            ErrorCode::kOk);
  const InodeAttrs before = Attr(f);
  auto r = Do(SetShardReplicasOp{.ino = f, .index = 0, .generation = 5, .replicas = {"n2", "n9"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // The dropped copy becomes garbage; size and times stay.
  ASSERT_EQ(r->garbage.size(), 1u);
  EXPECT_EQ(r->garbage[0].replicas, std::vector<std::string>{"n1"});
  EXPECT_EQ(Attr(f), before);
  EXPECT_EQ(store_.GetShard(f, 0)->replicas, (std::vector<std::string>{"n2", "n9"}));
  EXPECT_EQ(store_.GarbageHolders(ShardKey{f, 0, 5}), std::vector<std::string>{"n1"});

  // Copying back to n1 takes it off the garbage list, so the collector
  // cannot delete the new copy.
  ASSERT_EQ(Code(SetShardReplicasOp{
                .ino = f, .index = 0, .generation = 5, .replicas = {"n2", "n9", "n1"}}),
            ErrorCode::kOk);
  EXPECT_TRUE(store_.GarbageHolders(ShardKey{f, 0, 5}).empty());

  // A rewritten shard: the repair is moot.
  EXPECT_EQ(Code(SetShardReplicasOp{.ino = f, .index = 0, .generation = 4, .replicas = {"n3"}}),
            ErrorCode::kStale);
  EXPECT_EQ(Code(SetShardReplicasOp{.ino = f, .index = 1, .generation = 5, .replicas = {"n3"}}),
            ErrorCode::kStale);
  EXPECT_EQ(Code(SetShardReplicasOp{.ino = 999, .index = 0, .generation = 5, .replicas = {"n3"}}),
            ErrorCode::kNotFound);
  EXPECT_EQ(Code(SetShardReplicasOp{.ino = f, .index = 0, .generation = 5, .replicas = {}}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      Code(SetShardReplicasOp{.ino = f, .index = 0, .generation = 5, .replicas = {"n3", "n3"}}),
      ErrorCode::kInvalidArgument);
}

TEST_F(StoreTest, ForEachShardAndPathsOf) {
  uint64_t d = Mkdir(kRootIno, "d");
  uint64_t f = Create(d, "f");
  uint64_t g = Create(kRootIno, "g");
  ASSERT_EQ(Code(CommitShardsOp{
                .ino = f, .shards = {Shard(0, 1, kShard), Shard(1, 1, 10)}, .size = kShard + 10}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(SetReplicationGoalOp{.ino = f, .goal = 4}), ErrorCode::kOk);
  std::map<uint64_t, std::pair<uint32_t, size_t>> seen;
  store_.ForEachShard([&](uint64_t ino, uint32_t goal, const ShardEntry&) {
    seen[ino].first = goal;
    seen[ino].second++;
  });
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[f], std::make_pair(4u, size_t{2}));
  auto paths = store_.PathsOf({f, g, 12345});
  EXPECT_EQ(paths.size(), 2u);
  EXPECT_EQ(paths[f], "/d/f");
  EXPECT_EQ(paths[g], "/g");
}

TEST_F(StoreTest, GarbageCursorSkipsEntriesAlreadySeen) {
  uint64_t f = Create(kRootIno, "f");
  for (uint64_t gen = 1; gen <= 5; ++gen) {
    ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, gen, 10)}, .size = 10}),
              ErrorCode::kOk);
  }
  auto first = store_.ListGarbage(now_, 2);
  ASSERT_EQ(first.size(), 2u);
  auto rest = store_.ListGarbage(now_, 100, first.back().key);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].key, (ShardKey{f, 0, 3}));
}

TEST_F(StoreTest, CommitShardsErrors) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(Code(CommitShardsOp{.ino = 999, .shards = {Shard(0, 1, 1)}, .size = 1}),
            ErrorCode::kNotFound);
  EXPECT_EQ(Code(CommitShardsOp{.ino = kRootIno, .shards = {Shard(0, 1, 1)}, .size = 1}),
            ErrorCode::kIsDir);
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 1, {})}, .size = 1}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 1, {"n1", "n1"})}, .size = 1}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, kShard + 1)}, .size = 2 * kShard}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(1, 1, 10)}, .size = kShard + 5}),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10), Shard(0, 2, 10)}, .size = 10}),
      ErrorCode::kInvalidArgument);
  auto p = Do(MknodOp{.parent = kRootIno, .name = "p", .type = FileType::kFifo});
  EXPECT_EQ(Code(CommitShardsOp{.ino = p->ino, .shards = {}, .size = 0}),
            ErrorCode::kInvalidArgument);
  // Nothing was changed by the failures.
  EXPECT_EQ(Attr(f).size, 0u);
  EXPECT_TRUE(store_.GetShards(f, 0, 10)->empty());
}

TEST_F(StoreTest, CommitShardsShrinkingSizeDropsTail) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(
      Code(CommitShardsOp{
          .ino = f, .shards = {Shard(0, 1, kShard), Shard(1, 1, kShard)}, .size = 2 * kShard}),
      ErrorCode::kOk);
  auto r = Do(CommitShardsOp{.ino = f, .shards = {Shard(0, 2, 10)}, .size = 10});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->garbage.size(), 2u);
  EXPECT_EQ(store_.GetShards(f, 0, 10)->size(), 1u);
}

TEST_F(StoreTest, GarbageListAndForget) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10)}, .size = 10}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 2, 10)}, .size = 10}),
            ErrorCode::kOk);
  const int64_t first_release = now_;
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 3, 10)}, .size = 10}),
            ErrorCode::kOk);
  // Listing honours the release time (the grace period).
  EXPECT_EQ(store_.ListGarbage(first_release - 1, 100).size(), 0u);
  EXPECT_EQ(store_.ListGarbage(first_release, 100).size(), 1u);
  EXPECT_EQ(store_.ListGarbage(now_, 100).size(), 2u);
  EXPECT_EQ(store_.ListGarbage(now_, 1).size(), 1u);
  EXPECT_EQ(store_.Stats().garbage, 2u);

  ASSERT_EQ(Code(ForgetGarbageOp{.keys = {ShardKey{f, 0, 1}, ShardKey{f, 0, 99}}}), ErrorCode::kOk);
  auto left = store_.ListGarbage(now_, 100);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].key, (ShardKey{f, 0, 2}));
  // Forgetting again is harmless.
  ASSERT_EQ(Code(ForgetGarbageOp{.keys = {ShardKey{f, 0, 1}}}), ErrorCode::kOk);
}

TEST_F(StoreTest, GarbageMergesReplicasOfOneGeneration) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(
      Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10, {"a", "b", "c"})}, .size = 10}),
      ErrorCode::kOk);
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10, {"b", "c"})}, .size = 10}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "f"}), ErrorCode::kOk);
  auto g = store_.ListGarbage(now_, 10);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].replicas, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(g[0].released_ns, now_);
}

// --- Open files and orphans ---------------------------------------------------

TEST_F(StoreTest, UnlinkOfOpenFileKeepsOrphanUntilClose) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 1, 10)}, .size = 10}),
            ErrorCode::kOk);
  ASSERT_TRUE(store_.OpenRef(f).ok());
  ASSERT_TRUE(store_.OpenRef(f).ok());
  EXPECT_EQ(store_.OpenRef(999).code(), ErrorCode::kNotFound);

  NamespaceOp unlink = UnlinkOp{.parent = kRootIno, .name = "f"};
  store_.Prepare(&unlink);
  EXPECT_TRUE(std::get<UnlinkOp>(unlink).keep_orphan);
  auto r = Do(unlink);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->orphaned_inodes, std::vector<uint64_t>{f});
  EXPECT_TRUE(r->garbage.empty());
  EXPECT_FALSE(Exists(kRootIno, "f"));
  // The open file still works: attrs, shards, writes.
  EXPECT_EQ(Attr(f).nlink, 0u);
  EXPECT_EQ(store_.GetShards(f, 0, 1)->size(), 1u);
  EXPECT_EQ(Code(CommitShardsOp{.ino = f, .shards = {Shard(0, 2, 20)}, .size = 20}),
            ErrorCode::kOk);
  EXPECT_EQ(store_.Orphans(), std::vector<uint64_t>{f});
  EXPECT_EQ(store_.Stats().orphans, 1u);
  // It cannot get a name back.
  EXPECT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = "back"}), ErrorCode::kNotFound);
  // Dropping it while open is refused (never logged, so replay is unaffected).
  EXPECT_EQ(Code(DropOrphanOp{.ino = f}), ErrorCode::kBusy);

  EXPECT_FALSE(store_.CloseRef(f, ++now_).has_value());
  std::optional<DropOrphanOp> drop = store_.CloseRef(f, ++now_);
  ASSERT_TRUE(drop.has_value());
  EXPECT_EQ(drop->ino, f);
  auto dr = Do(*drop);
  ASSERT_TRUE(dr.ok());
  EXPECT_EQ(dr->removed_inodes, std::vector<uint64_t>{f});
  ASSERT_EQ(dr->garbage.size(), 1u);
  EXPECT_EQ(dr->garbage[0].key, (ShardKey{f, 0, 2}));
  EXPECT_TRUE(store_.Orphans().empty());
  EXPECT_EQ(store_.GetAttr(f).status().code(), ErrorCode::kNotFound);
  // Closing something not open is ignored.
  EXPECT_FALSE(store_.CloseRef(f, now_).has_value());
}

TEST_F(StoreTest, ClosedFileIsNotAnOrphan) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_TRUE(store_.OpenRef(f).ok());
  EXPECT_FALSE(store_.CloseRef(f, ++now_).has_value());  // still linked
  auto r = Do(UnlinkOp{.parent = kRootIno, .name = "f"});
  EXPECT_EQ(r->removed_inodes, std::vector<uint64_t>{f});
  EXPECT_EQ(Code(DropOrphanOp{.ino = f}), ErrorCode::kNotFound);
  uint64_t g = Create(kRootIno, "g");
  EXPECT_EQ(Code(DropOrphanOp{.ino = g}), ErrorCode::kInvalidArgument);  // still linked
}

TEST_F(StoreTest, RenameOverOpenFileKeepsOrphan) {
  Create(kRootIno, "a");
  uint64_t b = Create(kRootIno, "b");
  ASSERT_TRUE(store_.OpenRef(b).ok());
  auto r = Do(RenameOp{.parent = kRootIno, .name = "a", .new_parent = kRootIno, .new_name = "b"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->orphaned_inodes, std::vector<uint64_t>{b});
  EXPECT_EQ(Attr(b).nlink, 0u);
  auto drop = store_.CloseRef(b, ++now_);
  ASSERT_TRUE(drop.has_value());
  EXPECT_TRUE(Do(*drop).ok());
}

TEST_F(StoreTest, UnlinkOfOneOfSeveralLinksIsNotOrphaning) {
  uint64_t f = Create(kRootIno, "f");
  ASSERT_EQ(Code(LinkOp{.ino = f, .parent = kRootIno, .name = "g"}), ErrorCode::kOk);
  ASSERT_TRUE(store_.OpenRef(f).ok());
  NamespaceOp unlink = UnlinkOp{.parent = kRootIno, .name = "f"};
  store_.Prepare(&unlink);
  EXPECT_FALSE(std::get<UnlinkOp>(unlink).keep_orphan);
  EXPECT_TRUE(Do(unlink).ok());
  EXPECT_EQ(Attr(f).nlink, 1u);
}

// --- Inode ids ------------------------------------------------------------------

TEST_F(StoreTest, AllocateInodesReservesRange) {
  auto r = Do(AllocateInodesOp{.count = 100});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first_ino, 2u);
  EXPECT_EQ(Create(kRootIno, "f"), 102u);
  // A reserved id can be used explicitly.
  auto g = Do(MknodOp{.parent = kRootIno, .name = "g", .ino = 50});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->ino, 50u);
  EXPECT_EQ(Code(AllocateInodesOp{.count = 0}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_.Apply(AllocateInodesOp{.count = 1, .first = 10}).status().code(),
            ErrorCode::kInvalidArgument);  // below the next free id
  EXPECT_EQ(store_.Stats().next_ino, 103u);
}

// --- Reads ------------------------------------------------------------------------

TEST_F(StoreTest, LookupErrors) {
  uint64_t f = Create(kRootIno, "f");
  EXPECT_EQ(store_.Lookup(kRootIno, "nope").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_.Lookup(f, "x").status().code(), ErrorCode::kNotDir);
  EXPECT_EQ(store_.Lookup(999, "x").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_.Lookup(kRootIno, std::string(300, 'x')).status().code(),
            ErrorCode::kNameTooLong);
  // Names from the wire: a path or a NUL is malformed, not merely absent.
  EXPECT_EQ(store_.Lookup(kRootIno, "f/../f").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_.Lookup(kRootIno, std::string("f\0x", 3)).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_.Lookup(kRootIno, "").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_.ReadDir(f, "", 10, false).status().code(), ErrorCode::kNotDir);
  EXPECT_EQ(store_.GetShards(kRootIno, 0, 1).status().code(), ErrorCode::kIsDir);
}

TEST_F(StoreTest, ReadDirPagesOverManyEntries) {
  constexpr int kEntries = 100'000;
  uint64_t d = Mkdir(kRootIno, "big");
  for (int i = 0; i < kEntries; ++i) {
    NamespaceOp op = MknodOp{.parent = d, .name = "file-" + std::to_string(i), .time_ns = 1};
    store_.Prepare(&op);
    ASSERT_TRUE(store_.Apply(op).ok());
  }
  Mkdir(d, "zsub");
  std::string cursor;
  std::string previous;
  size_t seen = 0, pages = 0;
  bool more = true;
  while (more) {
    auto page = store_.ReadDir(d, cursor, 997, /*with_attrs=*/pages % 2 == 0);
    ASSERT_TRUE(page.ok());
    for (const DirEntry& e : page->entries) {
      ASSERT_GT(e.name, previous);  // strictly ordered, no repeats
      previous = e.name;
      EXPECT_EQ(e.attrs.has_value(), pages % 2 == 0);
      if (e.attrs) {
        EXPECT_EQ(e.attrs->ino, e.ino);
      }
    }
    seen += page->entries.size();
    more = page->more;
    if (!page->entries.empty()) cursor = page->entries.back().name;
    ++pages;
    // Entries added behind the cursor while paging are not seen, entries
    // removed ahead of it are skipped: the cursor is a name.
    if (pages == 3) {
      ASSERT_EQ(Code(UnlinkOp{.parent = d, .name = "file-99999"}), ErrorCode::kOk);
    }
  }
  EXPECT_EQ(seen, static_cast<size_t>(kEntries));  // 100,000 + zsub - file-99999
  EXPECT_EQ(previous, "zsub");
  EXPECT_EQ(pages, (seen + 996) / 997);
  auto last = store_.ReadDir(d, "zsub", 10, false);
  EXPECT_TRUE(last->entries.empty());
  EXPECT_FALSE(last->more);
  auto sub = store_.ReadDir(d, "", 1, false);
  EXPECT_EQ(sub->entries[0].type, FileType::kRegular);
  EXPECT_TRUE(sub->more);
}

// --- Encoding, replay and snapshots -------------------------------------------------

std::vector<NamespaceOp> OneOfEach() {
  return {
      MknodOp{.parent = 1,
              .name = "f",
              .ino = 2,
              .type = FileType::kCharDevice,
              .mode = 0644,
              .uid = 1,
              .gid = 2,
              .rdev = 3,
              .shard_size = 8192,
              .replication_goal = 2,
              .time_ns = -5},
      MkdirOp{.parent = 1, .name = "d", .ino = 3, .mode = 0755, .uid = 4, .gid = 5, .time_ns = 6},
      SymlinkOp{
          .parent = 1, .name = "l", .ino = 4, .target = "t", .uid = 7, .gid = 8, .time_ns = 9},
      LinkOp{.ino = 2, .parent = 3, .name = std::string("n\xff", 2), .time_ns = 10},
      UnlinkOp{.parent = 1, .name = "f", .keep_orphan = true, .time_ns = 11},
      RmdirOp{.parent = 1, .name = "d", .time_ns = 12},
      RenameOp{.parent = 1,
               .name = "a",
               .new_parent = 3,
               .new_name = "b",
               .flags = 2,
               .keep_orphan = true,
               .time_ns = 13},
      SetattrOp{.ino = 2,
                .mask = 63,
                .mode = 0755,
                .uid = 1,
                .gid = 2,
                .size = 1ull << 40,
                .atime_ns = INT64_MIN,
                .mtime_ns = INT64_MAX,
                .time_ns = 14},
      SetxattrOp{
          .ino = 2, .name = "user.x", .value = std::string("\0v", 2), .flags = 1, .time_ns = 15},
      RemovexattrOp{.ino = 2, .name = "user.x", .time_ns = 16},
      CommitShardsOp{.ino = 2,
                     .shards = {Shard(0, 7, 100), WithData(Shard(5, UINT64_MAX, 1, {"z"}), 0)},
                     .size = 1 << 30,
                     .time_ns = 17},
      SetReplicationGoalOp{.ino = 2, .goal = 3, .time_ns = 18},
      AllocateInodesOp{.count = 10, .first = 100},
      ForgetGarbageOp{.keys = {ShardKey{2, 0, 7}, ShardKey{UINT64_MAX, UINT32_MAX, 0}}},
      DropOrphanOp{.ino = 2, .time_ns = 19},
      SetShardReplicasOp{
          .ino = 2, .index = 4, .generation = 7, .replicas = {"a", "b"}, .time_ns = 20},
  };
}

// Field-by-field equality through the encoder itself would be circular, so
// compare by re-encoding after a decode AND by checking a few fields directly.
TEST(NamespaceOpTest, EncodingRoundTripsEveryKind) {
  std::vector<NamespaceOp> ops = OneOfEach();
  ASSERT_EQ(ops.size(), std::variant_size_v<NamespaceOp>);
  for (const NamespaceOp& op : ops) {
    SCOPED_TRACE(std::string(OpName(op)));
    std::string bytes = EncodeOp(op);
    auto decoded = DecodeOp(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->index(), op.index());
    EXPECT_EQ(EncodeOp(*decoded), bytes);
  }
  auto setattr = DecodeOp(EncodeOp(ops[7]));
  EXPECT_EQ(std::get<SetattrOp>(*setattr).atime_ns, INT64_MIN);
  EXPECT_EQ(std::get<SetattrOp>(*setattr).size, 1ull << 40);
  auto commit = DecodeOp(EncodeOp(ops[10]));
  EXPECT_EQ(std::get<CommitShardsOp>(*commit).shards, std::get<CommitShardsOp>(ops[10]).shards);
  auto link = DecodeOp(EncodeOp(ops[3]));
  EXPECT_EQ(std::get<LinkOp>(*link).name, std::string("n\xff", 2));
  auto forget = DecodeOp(EncodeOp(ops[13]));
  EXPECT_EQ(std::get<ForgetGarbageOp>(*forget).keys, std::get<ForgetGarbageOp>(ops[13]).keys);
  auto moved = DecodeOp(EncodeOp(ops[15]));
  EXPECT_EQ(std::get<SetShardReplicasOp>(*moved).replicas, (std::vector<std::string>{"a", "b"}));
}

TEST(NamespaceOpTest, MalformedInputIsAnErrorNotACrash) {
  for (const NamespaceOp& op : OneOfEach()) {
    std::string bytes = EncodeOp(op);
    // Every proper prefix is malformed.
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      auto r = DecodeOp(std::string_view(bytes).substr(0, cut));
      EXPECT_FALSE(r.ok()) << OpName(op) << " cut at " << cut;
      if (!r.ok()) {
        EXPECT_EQ(r.status().code(), ErrorCode::kBadMessage);
      }
    }
    EXPECT_FALSE(DecodeOp(bytes + "x").ok());
  }
  EXPECT_FALSE(DecodeOp("\x93\x63\x01\x02").ok());                   // unknown kind 99
  EXPECT_FALSE(DecodeOp(std::string_view("\x92\x00\x01", 3)).ok());  // kind 0
  EXPECT_FALSE(DecodeOp("\xc0").ok());                               // nil
  EXPECT_FALSE(DecodeOp("\xdd\xff\xff\xff\xff").ok());               // forged huge array
  // A MknodOp with type 99.
  MknodOp bad{.parent = 1, .name = "x", .ino = 2};
  std::string bytes = EncodeOp(bad);
  size_t pos = bytes.find('x') + 1 + 1;  // after name, after ino (fixint 2)
  ASSERT_EQ(bytes[pos], 1);              // the type byte
  bytes[pos] = 99;
  EXPECT_FALSE(DecodeOp(bytes).ok());
  // Random bytes never crash.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 40, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    (void)DecodeOp(junk);
  }
}

TEST(NamespaceOpTest, OldDecodersIgnoreTrailingFields) {
  // [kind=rmdir(6), parent, name, time, <a future field>]
  std::string bytes = "\x95\x06\x01\xa1x\x05\xc3";
  auto r = DecodeOp(bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<RmdirOp>(*r).name, "x");
  EXPECT_EQ(std::get<RmdirOp>(*r).time_ns, 5);
}

// A seeded random workload over a small name space so ops collide often.
class RandomWorkload {
 public:
  explicit RandomWorkload(uint64_t seed) : rng_(seed) {}

  NamespaceOp Next(const NamespaceStore& store) {
    auto pick_dir = [&]() -> uint64_t {
      return dirs_.empty() || rng_() % 4 == 0 ? kRootIno : dirs_[rng_() % dirs_.size()];
    };
    auto name = [&]() { return std::string(1, static_cast<char>('a' + rng_() % 6)); };
    auto pick_ino = [&]() -> uint64_t { return 1 + rng_() % (store.Stats().next_ino + 1); };
    const int64_t t = ++time_;
    switch (rng_() % 14) {
      case 0:
      case 1:
        return MknodOp{
            .parent = pick_dir(), .name = name(), .mode = 0644, .shard_size = 4096, .time_ns = t};
      case 2:
        return MkdirOp{.parent = pick_dir(), .name = name(), .mode = 0755, .time_ns = t};
      case 3:
        return SymlinkOp{.parent = pick_dir(), .name = name(), .target = "x", .time_ns = t};
      case 4:
        return LinkOp{.ino = pick_ino(), .parent = pick_dir(), .name = name(), .time_ns = t};
      case 5:
        return UnlinkOp{.parent = pick_dir(), .name = name(), .time_ns = t};
      case 6:
        return RmdirOp{.parent = pick_dir(), .name = name(), .time_ns = t};
      case 7:
      case 8:
        return RenameOp{.parent = pick_dir(),
                        .name = name(),
                        .new_parent = pick_dir(),
                        .new_name = name(),
                        .flags = static_cast<uint32_t>(rng_() % 3),
                        .time_ns = t};
      case 9:
        return SetattrOp{.ino = pick_ino(),
                         .mask = static_cast<uint32_t>(rng_() % 64),
                         .mode = 0600,
                         .size = rng_() % 40000,
                         .time_ns = t};
      case 10:
        return SetxattrOp{.ino = pick_ino(),
                          .name = name(),
                          .value = "v",
                          .flags = static_cast<uint32_t>(rng_() % 3),
                          .time_ns = t};
      case 11: {
        uint64_t size = rng_() % 40000;
        std::vector<ShardEntry> shards;
        for (uint32_t i = 0; i * 4096ull < size && shards.size() < 3; i += 1 + rng_() % 3) {
          shards.push_back(Shard(i, t, std::min<uint64_t>(4096, size - i * 4096ull),
                                 {"n" + std::to_string(rng_() % 4)}));
        }
        return CommitShardsOp{.ino = pick_ino(), .shards = shards, .size = size, .time_ns = t};
      }
      case 12:
        return RemovexattrOp{.ino = pick_ino(), .name = name(), .time_ns = t};
      default: {
        auto garbage = store.ListGarbage(t, 3);
        ForgetGarbageOp op;
        for (const auto& g : garbage) op.keys.push_back(g.key);
        return op;
      }
    }
  }
  void Applied(const ApplyResult& r, const NamespaceOp& op) {
    if (std::holds_alternative<MkdirOp>(op)) dirs_.push_back(r.ino);
  }

 private:
  std::mt19937_64 rng_;
  std::vector<uint64_t> dirs_;
  int64_t time_ = 0;
};

TEST(NamespaceStoreRandomTest, InvariantsHoldAndReplayMatches) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    SCOPED_TRACE(seed);
    NamespaceStore live;
    RandomWorkload work(seed);
    std::vector<std::string> log;
    std::mt19937_64 opens(seed);
    int ok = 0;
    for (int i = 0; i < 3000; ++i) {
      NamespaceOp op = work.Next(live);
      // Sometimes hold files open, so orphans happen.
      if (opens() % 10 == 0) (void)live.OpenRef(1 + opens() % live.Stats().next_ino);
      live.Prepare(&op);
      std::string before = i % 50 == 0 ? live.DumpCanonical() : "";
      auto r = live.Apply(op);
      if (r.ok()) {
        ++ok;
        work.Applied(*r, op);
        log.push_back(EncodeOp(op));
      } else if (!before.empty()) {
        ASSERT_EQ(live.DumpCanonical(), before) << "failed " << OpName(op) << " changed the store";
      }
      Status st = live.CheckInvariants();
      ASSERT_TRUE(st.ok()) << "after op " << i << " " << OpName(op) << ": " << st.ToString();
      if (opens() % 7 == 0) {
        uint64_t ino = 1 + opens() % live.Stats().next_ino;
        if (auto drop = live.CloseRef(ino, i)) {
          NamespaceOp d = *drop;
          ASSERT_TRUE(live.Apply(d).ok());
          log.push_back(EncodeOp(d));
        }
      }
    }
    EXPECT_GT(ok, 1000);

    // Replaying the log onto a fresh store gives the same state.
    NamespaceStore replayed;
    for (const std::string& bytes : log) {
      auto op = DecodeOp(bytes);
      ASSERT_TRUE(op.ok());
      ASSERT_TRUE(replayed.Apply(*op).ok()) << OpName(*op);
    }
    EXPECT_EQ(replayed.DumpCanonical(), live.DumpCanonical());

    // So does a snapshot.
    NamespaceStore loaded;
    ASSERT_TRUE(loaded.LoadSnapshot(live.EncodeSnapshot()).ok());
    EXPECT_EQ(loaded.DumpCanonical(), live.DumpCanonical());
    EXPECT_EQ(loaded.Orphans(), live.Orphans());
    EXPECT_EQ(loaded.EncodeSnapshot(), live.EncodeSnapshot());
  }
}

TEST_F(StoreTest, SnapshotRoundTrip) {
  uint64_t d = Mkdir(kRootIno, "d");
  uint64_t f = Create(d, "f");
  ASSERT_EQ(
      Code(CommitShardsOp{.ino = f,
                          .shards = {WithData(Shard(0, 1, kShard, {"node-a", "node-b"}), 8192),
                                     Shard(2, 1, 7, {"node-c", "node-a"})},
                          .size = 2ull * kShard + 7}),
      ErrorCode::kOk);
  ASSERT_EQ(Code(CommitShardsOp{
                .ino = f, .shards = {Shard(2, 2, 7, {"node-c"})}, .size = 2ull * kShard + 7}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(SetxattrOp{.ino = f, .name = "user.k", .value = std::string("\0\1", 2)}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(SymlinkOp{.parent = d, .name = "l", .target = "f"}), ErrorCode::kOk);
  ASSERT_EQ(Code(MknodOp{.parent = d, .name = "dev", .type = FileType::kBlockDevice, .rdev = 77}),
            ErrorCode::kOk);
  ASSERT_EQ(Code(SetattrOp{.ino = d, .mask = kSetAttrAtime, .atime_ns = -100}), ErrorCode::kOk);
  uint64_t o = Create(kRootIno, "orphan");
  ASSERT_TRUE(store_.OpenRef(o).ok());
  ASSERT_EQ(Code(UnlinkOp{.parent = kRootIno, .name = "orphan"}), ErrorCode::kOk);

  std::string snap = store_.EncodeSnapshot();
  NamespaceStore loaded;
  ASSERT_TRUE(loaded.LoadSnapshot(snap).ok());
  EXPECT_EQ(loaded.DumpCanonical(), store_.DumpCanonical());
  EXPECT_EQ(loaded.Orphans(), std::vector<uint64_t>{o});
  EXPECT_EQ(loaded.OpenCount(o), 0u);  // opens are not part of a snapshot
  // Not stored in the snapshot: counted again from the shard table.
  EXPECT_EQ(loaded.GetAttr(f)->stored_bytes, 8192u + 7u);
  EXPECT_EQ(loaded.GetShard(f, 0)->data_bytes, std::optional<uint64_t>(8192));
  EXPECT_EQ(loaded.GetShard(f, 2)->data_bytes, std::nullopt);

  // A damaged snapshot is refused and leaves the store as it was.
  const std::string before = loaded.DumpCanonical();
  for (size_t cut : {size_t{0}, size_t{1}, snap.size() / 2, snap.size() - 1}) {
    Status st = loaded.LoadSnapshot(std::string_view(snap).substr(0, cut));
    EXPECT_EQ(st.code(), ErrorCode::kCorrupt) << cut;
  }
  EXPECT_EQ(loaded.DumpCanonical(), before);
  EXPECT_FALSE(loaded.LoadSnapshot(snap + "z").ok());
}

// Writes a snapshot by hand: header, then a root inode with the given nlink.
std::string HandMadeSnapshot(uint32_t root_nlink) {
  msgpack::sbuffer buf;
  codec::Packer pk(buf);
  pk.pack_array(5);
  pk.pack_uint32(1);  // version
  pk.pack_uint64(2);  // next_ino
  pk.pack_uint64(1);  // inodes
  pk.pack_uint64(0);  // garbage
  pk.pack_array(0);   // node table
  pk.pack_array(18);
  for (uint64_t v : {uint64_t{1}, uint64_t{2}, uint64_t{0755}, uint64_t{0}, uint64_t{0},
                     uint64_t{root_nlink}, uint64_t{0}, uint64_t{0}, uint64_t{0}, uint64_t{0},
                     uint64_t{0}, uint64_t{0}, uint64_t{0}, uint64_t{1}}) {
    pk.pack_uint64(v);
  }
  codec::PackStr(pk, "");
  pk.pack_array(0);
  pk.pack_array(0);
  pk.pack_array(0);
  return std::string(buf.data(), buf.size());
}

TEST(NamespaceSnapshotCodecTest, DecodableButInconsistentIsCorrupt) {
  NamespaceStore store;
  ASSERT_TRUE(store.LoadSnapshot(HandMadeSnapshot(2)).ok());
  EXPECT_EQ(store.LoadSnapshot(HandMadeSnapshot(3)).code(), ErrorCode::kCorrupt);
  EXPECT_TRUE(store.CheckInvariants().ok());
}

}  // namespace
}  // namespace shardfs
