// The registry's namespace service over the wire, against a real
// shardfs-registry process.
//
// Every namespace operation with its success and its POSIX error codes, as a
// mount sees them through NamespaceClient; hostile and malformed input sent
// over raw ZeroMQ and raw TCP, after which the same registry must still serve
// a normal client; and a SIGTERM restart that must keep everything. Node
// servers are played by in-process RegistryLinks with made-up node ids: the
// namespace only needs them in the cluster map, never talks to them (the
// garbage grace is long, so nothing is ever deleted from them).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "protocol/envelope.h"
#include "protocol/namespace_messages.h"
#include "src/meta_snapshot.h"
#include "src/namespace_client.h"
#include "src/namespace_op.h"
#include "src/namespace_store.h"
#include "src/registry_link.h"
#include "tests/integration/daemon_process.h"
#include "tests/raw_zmtp.h"
#include "tests/temp_dir.h"
#include "tests/test_key.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kReplicas = 2;
const std::vector<std::string> kFakeNodeIds = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01",
                                               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02"};

template <typename T>
ErrorCode CodeOf(const Result<T>& r) {
  return r.ok() ? ErrorCode::kOk : r.status().code();
}
ErrorCode CodeOf(const Status& s) {
  return s.code();
}

// Prints the code's name when an expectation on it fails.
#define EXPECT_CODE(expr, code) EXPECT_EQ(ErrorCodeName(CodeOf(expr)), ErrorCodeName(code))
#define ASSERT_CODE(expr, code) ASSERT_EQ(ErrorCodeName(CodeOf(expr)), ErrorCodeName(code))

MknodRequest File(uint64_t parent, const std::string& name, uint32_t mode = 0644) {
  MknodRequest r;
  r.parent = parent;
  r.name = name;
  r.type = FileType::kRegular;
  r.mode = mode;
  r.caller = {1000, 100};
  return r;
}

MknodRequest Dir(uint64_t parent, const std::string& name, uint32_t mode = 0755) {
  MknodRequest r = File(parent, name, mode);
  r.type = FileType::kDirectory;
  return r;
}

RenameRequest Move(uint64_t parent, const std::string& name, uint64_t new_parent,
                   const std::string& new_name, uint32_t flags = 0) {
  return RenameRequest{parent, name, new_parent, new_name, flags};
}

// A node that is only a name in the cluster map: registers and heartbeats
// like shardfs-node but serves nothing.
std::unique_ptr<RegistryLink> FakeNode(zmq::context_t& ctx, const std::string& registry,
                                       const std::string& id, int n) {
  RegistryLink::Options o;
  o.registry_endpoint = registry;
  o.heartbeat_interval = 200ms;
  o.rpc_timeout = 1000ms;
  o.failures_before_reset = 2;
  auto report = [id, n] {
    RegistryLink::NodeReport r;
    r.node_id = id;
    r.endpoint = "tcp://127.0.0.1:" + std::to_string(9 + n);  // nothing listens there
    r.host = "fake-host-" + std::to_string(n);
    r.capacity = 100ull << 30;
    r.used = 10ull << 30;
    return r;
  };
  return std::make_unique<RegistryLink>(ctx, o, report);
}

class RegistryNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreeTcpPortPair();
    beacon_port_ = FreeUdpPort();
    ASSERT_NE(port_, 0);
    ASSERT_NE(beacon_port_, 0);
    meta_ = dir_.Sub("meta");
    PrepareMeta();
    if (HasFatalFailure()) return;
    StartRegistry();
    if (HasFatalFailure()) return;
    NamespaceClient::Options o;
    o.attempt_timeout = 3000ms;
    o.budget = 6000ms;
    client_ = std::make_unique<NamespaceClient>(ctx_, Endpoint(), o);
    ASSERT_TRUE(WaitForRegistry()) << registry_.ReadLog();
  }

  void TearDown() override {
    for (auto& node : nodes_) node->Stop();
    nodes_.clear();
    client_.reset();
    if (registry_.pid() > 0) {
      int status = registry_.Stop(SIGTERM, 10s);
      EXPECT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "status " << status << "\n"
                                                        << registry_.ReadLog();
    }
    if (HasFailure()) std::cerr << "--- registry log ---\n" << registry_.ReadLog();
  }

  // Fills the metadata directory before the registry first starts.
  virtual void PrepareMeta() {}

  void StartRegistry() {
    DaemonProcess::Options o;
    o.argv = {BuildPath("nodeserver/shardfs-registry"),
              "--meta",
              meta_,
              "--listen",
              Endpoint(),
              "--beacon",
              "off",
              "--beacon-port",
              std::to_string(beacon_port_),
              "--cluster",
              "nstest-" + std::to_string(getpid()),
              "--replicas",
              std::to_string(kReplicas),
              "--gc-grace",
              "3600",
              "--log-level",
              "warn",
              "--key",
              key_.path()};
    o.log_path = dir_.Sub("registry.log");
    auto p = DaemonProcess::Start(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    registry_ = std::move(p).value();
  }

  bool WaitForRegistry() {
    return WaitUntil([&] { return registry_.Running() && client_->GetAttr(kRootIno).ok(); }, 20s,
                     20ms);
  }

  void StartFakeNodes() {
    for (size_t i = 0; i < kFakeNodeIds.size(); ++i) {
      nodes_.push_back(FakeNode(ctx_, Endpoint(), kFakeNodeIds[i], static_cast<int>(i)));
      ASSERT_TRUE(nodes_.back()->Start().ok());
    }
    ASSERT_TRUE(WaitUntil(
        [&] {
          auto fs = client_->StatFs();
          return fs.ok() && fs->live_nodes == kFakeNodeIds.size();
        },
        10s))
        << registry_.ReadLog();
  }

  // The registry still answers a well-formed request and is still running.
  void ExpectStillServing() {
    EXPECT_TRUE(registry_.Running()) << registry_.ReadLog();
    auto made = client_->Mknod(File(kRootIno, "alive-" + std::to_string(++alive_counter_)));
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    auto root = client_->GetAttr(kRootIno);
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    EXPECT_EQ(root->type, FileType::kDirectory);
  }

  std::string Endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  InodeAttrs MustMknod(const MknodRequest& r) {
    auto a = r.type == FileType::kDirectory ? client_->Mkdir(r) : client_->Mknod(r);
    EXPECT_TRUE(a.ok()) << r.name << ": " << a.status().ToString();
    return a.ok() ? *a : InodeAttrs{};
  }

  std::vector<std::string> ListNames(uint64_t dir) {
    std::vector<std::string> names;
    ReadDirRequest req{dir, "", 1000, false};
    while (true) {
      auto page = client_->ReadDir(req);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) break;
      for (const auto& e : page->entries) names.push_back(e.name);
      if (!page->more || page->entries.empty()) break;
      req.after = page->entries.back().name;
    }
    return names;
  }

  TempDir dir_{"registry-ns"};
  TestKey key_{dir_.Sub("cluster.key")};  // the registry's and this process's
  zmq::context_t ctx_;
  uint16_t port_ = 0;
  uint16_t beacon_port_ = 0;
  std::string meta_;
  DaemonProcess registry_;
  std::unique_ptr<NamespaceClient> client_;
  std::vector<std::unique_ptr<RegistryLink>> nodes_;
  int alive_counter_ = 0;
};

// ---------------------------------------------------------------------------
// Creation, lookup, attributes.

TEST_F(RegistryNamespaceTest, CreateLookupAndGetAttr) {
  InodeAttrs dir = MustMknod(Dir(kRootIno, "d", 0750));
  EXPECT_EQ(dir.type, FileType::kDirectory);
  EXPECT_EQ(dir.mode, 0750u);
  EXPECT_EQ(dir.uid, 1000u);
  EXPECT_EQ(dir.gid, 100u);
  EXPECT_EQ(dir.nlink, 2u);
  InodeAttrs file = MustMknod(File(dir.ino, "f", 0640));
  EXPECT_EQ(file.type, FileType::kRegular);
  EXPECT_EQ(file.mode, 0640u);
  EXPECT_EQ(file.nlink, 1u);
  EXPECT_EQ(file.size, 0u);
  EXPECT_GT(file.shard_size, 0u);
  EXPECT_NE(file.ino, dir.ino);

  auto looked = client_->Lookup(dir.ino, "f");
  ASSERT_TRUE(looked.ok()) << looked.status().ToString();
  EXPECT_EQ(looked->ino, file.ino);
  auto got = client_->GetAttr(file.ino);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, *looked);
  // "." and "..".
  auto dot = client_->Lookup(dir.ino, ".");
  ASSERT_TRUE(dot.ok());
  EXPECT_EQ(dot->ino, dir.ino);
  auto dotdot = client_->Lookup(dir.ino, "..");
  ASSERT_TRUE(dotdot.ok());
  EXPECT_EQ(dotdot->ino, kRootIno);
  // A subdirectory adds a link to its parent.
  auto root = client_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->nlink, 3u);

  // A fifo and a device node.
  MknodRequest fifo = File(dir.ino, "fifo");
  fifo.type = FileType::kFifo;
  EXPECT_EQ(MustMknod(fifo).type, FileType::kFifo);
  MknodRequest dev = File(dir.ino, "dev");
  dev.type = FileType::kCharDevice;
  dev.rdev = 0x0103;
  InodeAttrs dev_attrs = MustMknod(dev);
  EXPECT_EQ(dev_attrs.rdev, 0x0103u);

  EXPECT_CODE(client_->Lookup(dir.ino, "missing"), ErrorCode::kNotFound);
  EXPECT_CODE(client_->GetAttr(987654321), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Mknod(File(987654321, "x")), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Mknod(File(dir.ino, "f")), ErrorCode::kExists);
  EXPECT_CODE(client_->Mkdir(Dir(dir.ino, "f")), ErrorCode::kExists);
  EXPECT_CODE(client_->Mkdir(Dir(kRootIno, "d")), ErrorCode::kExists);
  EXPECT_CODE(client_->Mknod(File(file.ino, "x")), ErrorCode::kNotDir);
  EXPECT_CODE(client_->Mkdir(Dir(file.ino, "x")), ErrorCode::kNotDir);
  EXPECT_CODE(client_->Lookup(file.ino, "x"), ErrorCode::kNotDir);
  // A shard size that is not a multiple of 4 KiB.
  MknodRequest odd = File(dir.ino, "odd");
  odd.shard_size = 5000;
  EXPECT_CODE(client_->Mknod(odd), ErrorCode::kInvalidArgument);
}

TEST_F(RegistryNamespaceTest, NamesAreCheckedForLengthAndForm) {
  const std::string max_name(kMaxNameLength, 'n');
  auto ok = client_->Mknod(File(kRootIno, max_name));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(client_->Lookup(kRootIno, max_name).ok());

  const std::string too_long(kMaxNameLength + 1, 'n');
  EXPECT_CODE(client_->Mknod(File(kRootIno, too_long)), ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Mkdir(Dir(kRootIno, too_long)), ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Lookup(kRootIno, too_long), ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Link(ok->ino, kRootIno, too_long), ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Rename(Move(kRootIno, max_name, kRootIno, too_long)),
              ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Unlink(kRootIno, too_long), ErrorCode::kNameTooLong);
  // Up to the wire limit the store answers ENAMETOOLONG; past it the message
  // itself is refused.
  EXPECT_CODE(client_->Mknod(File(kRootIno, std::string(kMaxWireName, 'n'))),
              ErrorCode::kNameTooLong);
  EXPECT_CODE(client_->Mknod(File(kRootIno, std::string(kMaxWireName + 1, 'n'))),
              ErrorCode::kBadMessage);

  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "a/b", std::string("a\0b", 3)}) {
    EXPECT_CODE(client_->Mknod(File(kRootIno, bad)), ErrorCode::kInvalidArgument)
        << "name '" << bad << "'";
  }
  // Names are bytes: anything but '/' and NUL goes.
  EXPECT_TRUE(client_->Mknod(File(kRootIno, "\xff\xfe ünï\ncode")).ok());
}

TEST_F(RegistryNamespaceTest, UnlinkAndRmdirErrors) {
  InodeAttrs dir = MustMknod(Dir(kRootIno, "d"));
  MustMknod(File(dir.ino, "f"));
  InodeAttrs empty = MustMknod(Dir(kRootIno, "empty"));

  EXPECT_CODE(client_->Unlink(kRootIno, "d"), ErrorCode::kIsDir);
  EXPECT_CODE(client_->Rmdir(dir.ino, "f"), ErrorCode::kNotDir);
  EXPECT_CODE(client_->Rmdir(kRootIno, "d"), ErrorCode::kNotEmpty);
  EXPECT_CODE(client_->Unlink(kRootIno, "missing"), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Rmdir(kRootIno, "missing"), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Unlink(987654321, "f"), ErrorCode::kNotFound);

  EXPECT_TRUE(client_->Rmdir(kRootIno, "empty").ok());
  EXPECT_CODE(client_->GetAttr(empty.ino), ErrorCode::kNotFound);
  auto root = client_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->nlink, 3u);  // ".", and ".." of d

  EXPECT_TRUE(client_->Unlink(dir.ino, "f").ok());
  EXPECT_CODE(client_->Lookup(dir.ino, "f"), ErrorCode::kNotFound);
  EXPECT_TRUE(client_->Rmdir(kRootIno, "d").ok());
  root = client_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->nlink, 2u);
  EXPECT_TRUE(ListNames(kRootIno).empty());
}

TEST_F(RegistryNamespaceTest, HardLinksCountLinks) {
  InodeAttrs dir = MustMknod(Dir(kRootIno, "d"));
  InodeAttrs file = MustMknod(File(kRootIno, "f"));
  auto linked = client_->Link(file.ino, dir.ino, "g");
  ASSERT_TRUE(linked.ok()) << linked.status().ToString();
  EXPECT_EQ(linked->ino, file.ino);
  EXPECT_EQ(linked->nlink, 2u);
  EXPECT_EQ(client_->Lookup(dir.ino, "g")->ino, file.ino);

  EXPECT_CODE(client_->Link(file.ino, dir.ino, "g"), ErrorCode::kExists);
  EXPECT_CODE(client_->Link(dir.ino, kRootIno, "dirlink"), ErrorCode::kNotPermitted);
  EXPECT_CODE(client_->Link(987654321, kRootIno, "x"), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Link(file.ino, file.ino, "x"), ErrorCode::kNotDir);

  EXPECT_TRUE(client_->Unlink(kRootIno, "f").ok());
  auto after = client_->GetAttr(file.ino);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->nlink, 1u);
  EXPECT_TRUE(client_->Unlink(dir.ino, "g").ok());
  EXPECT_CODE(client_->GetAttr(file.ino), ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------
// Rename.

TEST_F(RegistryNamespaceTest, RenameMovesReplacesAndRefuses) {
  InodeAttrs a = MustMknod(Dir(kRootIno, "a"));
  InodeAttrs b = MustMknod(Dir(kRootIno, "b"));
  InodeAttrs f = MustMknod(File(a.ino, "f"));
  InodeAttrs g = MustMknod(File(b.ino, "g"));

  // Plain move across directories.
  ASSERT_TRUE(client_->Rename(Move(a.ino, "f", b.ino, "f2")).ok());
  EXPECT_CODE(client_->Lookup(a.ino, "f"), ErrorCode::kNotFound);
  EXPECT_EQ(client_->Lookup(b.ino, "f2")->ino, f.ino);
  // Replacing a file drops the old one.
  ASSERT_TRUE(client_->Rename(Move(b.ino, "f2", b.ino, "g")).ok());
  EXPECT_EQ(client_->Lookup(b.ino, "g")->ino, f.ino);
  EXPECT_CODE(client_->GetAttr(g.ino), ErrorCode::kNotFound);
  // Two names of one inode: rename does nothing, both stay.
  ASSERT_TRUE(client_->Link(f.ino, a.ino, "same").ok());
  ASSERT_TRUE(client_->Rename(Move(a.ino, "same", b.ino, "g")).ok());
  EXPECT_EQ(client_->Lookup(a.ino, "same")->ino, f.ino);
  EXPECT_EQ(client_->GetAttr(f.ino)->nlink, 2u);

  InodeAttrs full = MustMknod(Dir(kRootIno, "full"));
  MustMknod(File(full.ino, "x"));
  InodeAttrs empty = MustMknod(Dir(kRootIno, "empty"));
  EXPECT_CODE(client_->Rename(Move(kRootIno, "missing", kRootIno, "z")), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Rename(Move(987654321, "f", kRootIno, "z")), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Rename(Move(b.ino, "g", kRootIno, "empty")), ErrorCode::kIsDir);
  EXPECT_CODE(client_->Rename(Move(kRootIno, "empty", b.ino, "g")), ErrorCode::kNotDir);
  EXPECT_CODE(client_->Rename(Move(kRootIno, "empty", kRootIno, "full")), ErrorCode::kNotEmpty);
  EXPECT_CODE(client_->Rename(Move(b.ino, "g", f.ino, "z")), ErrorCode::kNotDir);
  EXPECT_CODE(client_->Rename(Move(kRootIno, "a", kRootIno, std::string(256, 'x'))),
              ErrorCode::kNameTooLong);

  // A directory replacing an empty directory; parents' link counts follow.
  ASSERT_TRUE(client_->Rename(Move(kRootIno, "a", kRootIno, "empty")).ok());
  EXPECT_CODE(client_->GetAttr(empty.ino), ErrorCode::kNotFound);
  EXPECT_EQ(client_->Lookup(kRootIno, "empty")->ino, a.ino);
  ASSERT_TRUE(client_->Rename(Move(kRootIno, "empty", b.ino, "a")).ok());
  EXPECT_EQ(client_->GetAttr(kRootIno)->nlink, 4u);  // b, full, and "."/".."
  EXPECT_EQ(client_->GetAttr(b.ino)->nlink, 3u);
  EXPECT_EQ(client_->Lookup(a.ino, "..")->ino, b.ino);
}

TEST_F(RegistryNamespaceTest, RenameOfADirectoryIntoItsOwnSubtreeIsInvalid) {
  InodeAttrs a = MustMknod(Dir(kRootIno, "a"));
  InodeAttrs b = MustMknod(Dir(a.ino, "b"));
  InodeAttrs c = MustMknod(Dir(b.ino, "c"));
  EXPECT_CODE(client_->Rename(Move(kRootIno, "a", a.ino, "x")), ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->Rename(Move(kRootIno, "a", c.ino, "x")), ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->Rename(Move(a.ino, "b", c.ino, "x")), ErrorCode::kInvalidArgument);
  // Exchanging an ancestor with its descendant would do the same.
  EXPECT_CODE(client_->Rename(Move(kRootIno, "a", b.ino, "c", kRenameExchange)),
              ErrorCode::kInvalidArgument);
  // Nothing moved.
  EXPECT_EQ(client_->Lookup(kRootIno, "a")->ino, a.ino);
  EXPECT_EQ(client_->Lookup(a.ino, "b")->ino, b.ino);
  EXPECT_EQ(client_->Lookup(b.ino, "c")->ino, c.ino);
  // Moving down is wrong, moving up is fine.
  ASSERT_TRUE(client_->Rename(Move(b.ino, "c", kRootIno, "c")).ok());
  EXPECT_EQ(client_->Lookup(c.ino, "..")->ino, kRootIno);
}

TEST_F(RegistryNamespaceTest, RenameNoReplaceAndExchange) {
  InodeAttrs a = MustMknod(Dir(kRootIno, "a"));
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  InodeAttrs g = MustMknod(File(kRootIno, "g"));

  EXPECT_CODE(client_->Rename(Move(kRootIno, "f", kRootIno, "g", kRenameNoReplace)),
              ErrorCode::kExists);
  EXPECT_EQ(client_->Lookup(kRootIno, "g")->ino, g.ino);
  ASSERT_TRUE(client_->Rename(Move(kRootIno, "f", kRootIno, "h", kRenameNoReplace)).ok());
  EXPECT_EQ(client_->Lookup(kRootIno, "h")->ino, f.ino);

  // Exchange a file in the root with a directory: both stay, swapped, and
  // the directory's ".." link moves with it.
  InodeAttrs sub = MustMknod(Dir(a.ino, "sub"));
  ASSERT_TRUE(client_->Rename(Move(kRootIno, "h", a.ino, "sub", kRenameExchange)).ok());
  EXPECT_EQ(client_->Lookup(kRootIno, "h")->ino, sub.ino);
  EXPECT_EQ(client_->Lookup(a.ino, "sub")->ino, f.ino);
  EXPECT_EQ(client_->Lookup(sub.ino, "..")->ino, kRootIno);
  EXPECT_EQ(client_->GetAttr(a.ino)->nlink, 2u);
  EXPECT_EQ(client_->GetAttr(kRootIno)->nlink, 4u);  // a, h(sub)

  EXPECT_CODE(client_->Rename(Move(kRootIno, "g", kRootIno, "nothere", kRenameExchange)),
              ErrorCode::kNotFound);
  EXPECT_CODE(
      client_->Rename(Move(kRootIno, "g", kRootIno, "h", kRenameExchange | kRenameNoReplace)),
      ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->Rename(Move(kRootIno, "g", kRootIno, "x", 1u << 7)),
              ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Attributes, symlinks, xattrs.

TEST_F(RegistryNamespaceTest, SetAttrChangesModeOwnerSizeAndTimes) {
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  SetAttrRequest r;
  r.ino = f.ino;
  r.mask = kSetAttrMode | kSetAttrUid | kSetAttrGid | kSetAttrAtime | kSetAttrMtime;
  r.mode = 04711;
  r.uid = 7;
  r.gid = 8;
  r.atime_ns = 1'000'000'000;
  r.mtime_ns = -5;  // before the epoch
  auto set = client_->SetAttr(r);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->mode, 04711u);
  EXPECT_EQ(set->uid, 7u);
  EXPECT_EQ(set->gid, 8u);
  EXPECT_EQ(set->atime_ns, 1'000'000'000);
  EXPECT_EQ(set->mtime_ns, -5);
  EXPECT_GT(set->ctime_ns, f.ctime_ns - 1);

  SetAttrRequest grow;
  grow.ino = f.ino;
  grow.mask = kSetAttrSize;
  grow.size = 10ull << 30;
  auto grown = client_->SetAttr(grow);
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(grown->size, 10ull << 30);
  EXPECT_EQ(client_->GetAttr(f.ino)->size, 10ull << 30);

  SetAttrRequest now;
  now.ino = f.ino;
  now.mask = kSetAttrMtime;
  now.mtime_now = true;
  auto touched = client_->SetAttr(now);
  ASSERT_TRUE(touched.ok());
  EXPECT_GT(touched->mtime_ns, 1'500'000'000'000'000'000);  // the registry's clock, after 2017

  InodeAttrs d = MustMknod(Dir(kRootIno, "d"));
  SetAttrRequest truncate_dir = grow;
  truncate_dir.ino = d.ino;
  EXPECT_CODE(client_->SetAttr(truncate_dir), ErrorCode::kIsDir);
  SetAttrRequest bad_mask;
  bad_mask.ino = f.ino;
  bad_mask.mask = 1u << 20;
  EXPECT_CODE(client_->SetAttr(bad_mask), ErrorCode::kInvalidArgument);
  SetAttrRequest missing = r;
  missing.ino = 987654321;
  EXPECT_CODE(client_->SetAttr(missing), ErrorCode::kNotFound);
}

TEST_F(RegistryNamespaceTest, SymlinkAndReadlink) {
  SymlinkRequest s{kRootIno, "link", "../some/where", {5, 6}};
  auto made = client_->Symlink(s);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_EQ(made->type, FileType::kSymlink);
  EXPECT_EQ(made->size, s.target.size());
  auto target = client_->Readlink(made->ino);
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, s.target);

  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  EXPECT_CODE(client_->Readlink(f.ino), ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->Readlink(987654321), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Symlink(s), ErrorCode::kExists);
  EXPECT_CODE(client_->Symlink(SymlinkRequest{kRootIno, "empty", "", {}}), ErrorCode::kNotFound);
  EXPECT_CODE(client_->Symlink(SymlinkRequest{kRootIno, "long", std::string(4096, 'x'), {}}),
              ErrorCode::kNameTooLong);
  EXPECT_TRUE(client_->Symlink(SymlinkRequest{kRootIno, "max", std::string(4095, 'x'), {}}).ok());
}

TEST_F(RegistryNamespaceTest, XattrCreateAndReplaceFlags) {
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  EXPECT_CODE(client_->GetXattr(f.ino, "user.a"), ErrorCode::kNoData);
  EXPECT_CODE(client_->SetXattr(f.ino, "user.a", "v", kXattrReplace), ErrorCode::kNoData);
  ASSERT_TRUE(client_->SetXattr(f.ino, "user.a", "one", kXattrCreate).ok());
  EXPECT_CODE(client_->SetXattr(f.ino, "user.a", "two", kXattrCreate), ErrorCode::kExists);
  EXPECT_EQ(*client_->GetXattr(f.ino, "user.a"), "one");
  ASSERT_TRUE(client_->SetXattr(f.ino, "user.a", "two", kXattrReplace).ok());
  EXPECT_EQ(*client_->GetXattr(f.ino, "user.a"), "two");
  ASSERT_TRUE(client_->SetXattr(f.ino, "user.a", "three", 0).ok());  // either way
  ASSERT_TRUE(client_->SetXattr(f.ino, "user.b", std::string("\0bin\xff", 5), 0).ok());
  EXPECT_EQ(*client_->GetXattr(f.ino, "user.b"), std::string("\0bin\xff", 5));
  ASSERT_TRUE(client_->SetXattr(f.ino, "user.empty", "", 0).ok());
  EXPECT_EQ(*client_->GetXattr(f.ino, "user.empty"), "");

  auto names = client_->ListXattr(f.ino);
  ASSERT_TRUE(names.ok());
  std::vector<std::string> sorted = *names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{"user.a", "user.b", "user.empty"}));

  EXPECT_CODE(client_->SetXattr(f.ino, "user.c", "v", kXattrCreate | kXattrReplace),
              ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->SetXattr(f.ino, "", "v", 0), ErrorCode::kRange);
  EXPECT_CODE(client_->SetXattr(f.ino, std::string(256, 'n'), "v", 0), ErrorCode::kRange);
  EXPECT_CODE(client_->SetXattr(f.ino, "user.big", std::string(kMaxXattrValueSize + 1, 'v'), 0),
              ErrorCode::kTooLarge);
  EXPECT_TRUE(client_->SetXattr(f.ino, "user.big", std::string(kMaxXattrValueSize, 'v'), 0).ok());
  EXPECT_CODE(client_->SetXattr(987654321, "user.a", "v", 0), ErrorCode::kNotFound);

  ASSERT_TRUE(client_->RemoveXattr(f.ino, "user.a").ok());
  EXPECT_CODE(client_->RemoveXattr(f.ino, "user.a"), ErrorCode::kNoData);
  EXPECT_CODE(client_->GetXattr(f.ino, "user.a"), ErrorCode::kNoData);
  // Directories carry xattrs too.
  ASSERT_TRUE(client_->SetXattr(kRootIno, "user.root", "r", kXattrCreate).ok());
  EXPECT_EQ(*client_->GetXattr(kRootIno, "user.root"), "r");
}

// ---------------------------------------------------------------------------
// Directories.

TEST_F(RegistryNamespaceTest, ReadDirPagesInNameOrderWithAttributes) {
  InodeAttrs d = MustMknod(Dir(kRootIno, "d"));
  std::set<std::string> expected;
  for (int i = 0; i < 25; ++i) {
    std::string name = "e" + std::to_string(i);
    MustMknod(File(d.ino, name));
    expected.insert(name);
  }
  MustMknod(Dir(d.ino, "sub"));
  expected.insert("sub");

  ReadDirRequest req{d.ino, "", 7, true};
  std::vector<std::string> got;
  int pages = 0;
  while (true) {
    auto page = client_->ReadDir(req);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ++pages;
    EXPECT_LE(page->entries.size(), 7u);
    for (const auto& e : page->entries) {
      got.push_back(e.name);
      ASSERT_TRUE(e.attrs.has_value());
      EXPECT_EQ(e.attrs->ino, e.ino);
      EXPECT_EQ(e.attrs->type, e.type);
      EXPECT_EQ(e.type, e.name == "sub" ? FileType::kDirectory : FileType::kRegular);
    }
    if (!page->more) break;
    req.after = page->entries.back().name;
  }
  EXPECT_EQ(pages, 4);
  EXPECT_EQ(got, std::vector<std::string>(expected.begin(), expected.end()));

  // Without plus, no attributes; the cursor is a name, so one that no longer
  // exists still resumes in the right place.
  auto page = client_->ReadDir(ReadDirRequest{d.ino, "e15x", 1000, false});
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->entries.empty());
  EXPECT_EQ(page->entries.front().name, "e16");
  EXPECT_FALSE(page->entries.front().attrs.has_value());
  EXPECT_FALSE(page->more);

  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  EXPECT_CODE(client_->ReadDir(ReadDirRequest{f.ino, "", 10, false}), ErrorCode::kNotDir);
  EXPECT_CODE(client_->ReadDir(ReadDirRequest{987654321, "", 10, false}), ErrorCode::kNotFound);
  EXPECT_CODE(client_->ReadDir(ReadDirRequest{d.ino, "", kMaxReadDirPage + 1, false}),
              ErrorCode::kBadMessage);
  EXPECT_CODE(client_->ReadDir(ReadDirRequest{d.ino, "", 0, false}), ErrorCode::kBadMessage);
}

// A directory of 100,000 entries, written into the metadata directory as a
// snapshot before the registry starts (100,000 fdatasync'd creates would
// take minutes), then listed over the wire.
class HugeDirectoryTest : public RegistryNamespaceTest {
 protected:
  static constexpr int kEntries = 100'000;

  void PrepareMeta() override {
    NamespaceStore store;
    MkdirOp mkdir;
    mkdir.parent = kRootIno;
    mkdir.name = "huge";
    mkdir.mode = 0755;
    mkdir.time_ns = 1;
    NamespaceOp op = mkdir;
    store.Prepare(&op);
    auto dir = store.Apply(op);
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    dir_ino_ = dir->ino;
    for (int i = 0; i < kEntries; ++i) {
      MknodOp m;
      m.parent = dir_ino_;
      m.name = Name(i);
      m.mode = 0644;
      m.time_ns = 2 + i;
      op = m;
      store.Prepare(&op);
      auto made = store.Apply(op);
      ASSERT_TRUE(made.ok()) << made.status().ToString();
    }
    std::filesystem::create_directories(meta_);
    auto written = WriteSnapshotFile(meta_, 1, store.EncodeSnapshot());
    ASSERT_TRUE(written.ok()) << written.status().ToString();
  }

  // Not in creation order once sorted as bytes: "f1" < "f10" < "f2".
  static std::string Name(int i) { return "f" + std::to_string(i); }

  uint64_t dir_ino_ = 0;
};

TEST_F(HugeDirectoryTest, ReadDirPagesThroughAHundredThousandEntries) {
  std::vector<std::string> expected;
  for (int i = 0; i < kEntries; ++i) expected.push_back(Name(i));
  std::sort(expected.begin(), expected.end());
  ASSERT_EQ(client_->Lookup(kRootIno, "huge")->ino, dir_ino_);

  // Lists the whole directory in pages of `max`; returns the time taken.
  auto list = [&](uint64_t max, int expected_pages) {
    const auto start = Clock::now();
    std::vector<std::string> got;
    got.reserve(kEntries);
    ReadDirRequest req{dir_ino_, "", max, false};
    int pages = 0;
    while (true) {
      auto page = client_->ReadDir(req);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) break;
      ++pages;
      EXPECT_LE(page->entries.size(), max);
      for (auto& e : page->entries) got.push_back(std::move(e.name));
      if (!page->more || page->entries.empty()) break;
      req.after = got.back();
    }
    const auto took = Clock::now() - start;
    EXPECT_EQ(pages, expected_pages) << "pages of " << max;
    EXPECT_EQ(got.size(), expected.size()) << "pages of " << max;
    EXPECT_TRUE(got == expected) << "pages of " << max;
    return took;
  };
  // What a mount asks for, and the largest page the protocol allows.
  const auto plain = list(1000, kEntries / 1000);
  const auto largest = list(kMaxReadDirPage, kEntries / static_cast<int>(kMaxReadDirPage));

  // Readdirplus in smaller pages, with a change between pages: an entry
  // removed ahead of the cursor is not listed, one added behind it is not
  // listed, nothing is listed twice.
  const auto plus_start = Clock::now();
  ASSERT_TRUE(client_->Unlink(dir_ino_, expected[50'000]).ok());
  std::set<std::string> seen;
  ReadDirRequest req{dir_ino_, "", 1000, true};
  bool changed = false;
  while (true) {
    auto page = client_->ReadDir(req);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const auto& e : page->entries) {
      ASSERT_TRUE(e.attrs.has_value());
      ASSERT_TRUE(seen.insert(e.name).second) << "listed twice: " << e.name;
    }
    if (!page->more) break;
    req.after = page->entries.back().name;
    if (!changed && seen.size() > 60'000) {
      ASSERT_TRUE(client_->Mknod(File(dir_ino_, "a-behind-the-cursor")).ok());
      ASSERT_TRUE(client_->Unlink(dir_ino_, expected[90'000]).ok());
      changed = true;
    }
  }
  const auto plus = Clock::now() - plus_start;
  EXPECT_TRUE(changed);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kEntries - 2));
  EXPECT_FALSE(seen.contains(expected[50'000]));
  EXPECT_FALSE(seen.contains(expected[90'000]));
  EXPECT_FALSE(seen.contains("a-behind-the-cursor"));

  // Each page costs a seek, not a scan from the start: the whole listing is
  // well within a few seconds even on a loaded machine.
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::cerr << "readdir of " << kEntries << " entries: " << ms(plain) << " ms in pages of 1000, "
            << ms(largest) << " ms in pages of " << kMaxReadDirPage << "; readdirplus: " << ms(plus)
            << " ms\n";
  EXPECT_LT(plain, 5s);
  EXPECT_LT(plus, 5s);
  // Pages of 10,000 are slower than they should be: every entry is encoded
  // through its own FieldWriter, whose buffer starts at 8 KiB.
  EXPECT_LT(largest, 10s);
}

// ---------------------------------------------------------------------------
// Shards, open files, statfs.

TEST_F(RegistryNamespaceTest, AllocateShardsWithoutLiveNodesIsUnavailable) {
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  // Straight over the wire, so the client's retry of kUnavailable does not
  // hide how quickly the registry answers.
  RpcChannel channel(ctx_, Endpoint());
  const auto start = Clock::now();
  auto raw = channel.Call(MessageType::kAllocateShards, AllocateShardsRequest{f.ino, {0}}.Encode(),
                          3000ms);
  EXPECT_CODE(raw, ErrorCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, 2s);

  NamespaceClient::Options short_budget;
  short_budget.attempt_timeout = 500ms;
  short_budget.budget = 1000ms;
  NamespaceClient client(ctx_, Endpoint(), short_budget);
  EXPECT_CODE(client.AllocateShards(AllocateShardsRequest{f.ino, {0, 1}}), ErrorCode::kUnavailable);
  auto attrs = client_->GetAttr(f.ino);
  ASSERT_TRUE(attrs.ok());
  EXPECT_EQ(attrs->size, 0u);
  auto table = client_->GetShardTable(f.ino, 0, 100);
  ASSERT_TRUE(table.ok());
  EXPECT_TRUE(table->shards.empty());
}

TEST_F(RegistryNamespaceTest, AllocateAndCommitShards) {
  StartFakeNodes();
  ASSERT_FALSE(HasFatalFailure());
  MknodRequest req = File(kRootIno, "f");
  req.shard_size = 4096;
  InodeAttrs f = MustMknod(req);
  EXPECT_EQ(f.shard_size, 4096u);

  auto alloc = client_->AllocateShards(AllocateShardsRequest{f.ino, {0, 1, 2}});
  ASSERT_TRUE(alloc.ok()) << alloc.status().ToString();
  ASSERT_EQ(alloc->placements.size(), 3u);
  EXPECT_EQ(alloc->min_replicas, 2u);
  std::set<uint64_t> generations;
  for (size_t i = 0; i < 3; ++i) {
    const ShardPlacement& p = alloc->placements[i];
    EXPECT_EQ(p.index, i);
    generations.insert(p.generation);
    std::set<std::string> replicas(p.replicas.begin(), p.replicas.end());
    EXPECT_EQ(replicas, std::set<std::string>(kFakeNodeIds.begin(), kFakeNodeIds.end()));
  }
  EXPECT_EQ(generations.size(), 3u) << "generations must be unique";
  ASSERT_EQ(alloc->nodes.size(), 2u);
  for (const auto& n : alloc->nodes) EXPECT_TRUE(n.endpoint.starts_with("tcp://127.0.0.1:"));

  CommitShardsRequest commit;
  commit.ino = f.ino;
  commit.size = 2 * 4096 + 100;
  for (const auto& p : alloc->placements) {
    commit.shards.push_back(ShardEntry{p.index, p.generation, p.index == 2 ? 100u : 4096u,
                                       0xabc0 + p.index, p.replicas, std::nullopt});
  }
  auto committed = client_->CommitShards(commit);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->size, commit.size);

  auto table = client_->GetShardTable(f.ino, 0, 1024);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->attrs.size, commit.size);
  EXPECT_EQ(table->shards, commit.shards);
  EXPECT_EQ(table->nodes.size(), 2u);
  auto middle = client_->GetShardTable(f.ino, 1, 1);
  ASSERT_TRUE(middle.ok());
  ASSERT_EQ(middle->shards.size(), 1u);
  EXPECT_EQ(middle->shards[0], commit.shards[1]);

  // A newer generation of shard 0 replaces it; the older one is then stale.
  auto again = client_->AllocateShards(AllocateShardsRequest{f.ino, {0}});
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->placements[0].generation, *generations.rbegin());
  CommitShardsRequest newer = commit;
  newer.shards = {
      ShardEntry{0, again->placements[0].generation, 4096, 1, {kFakeNodeIds[0]}, std::nullopt}};
  ASSERT_TRUE(client_->CommitShards(newer).ok());
  EXPECT_CODE(client_->CommitShards(commit), ErrorCode::kStale);
  table = client_->GetShardTable(f.ino, 0, 1);
  ASSERT_TRUE(table.ok());
  ASSERT_EQ(table->shards.size(), 1u);
  EXPECT_EQ(table->shards[0], newer.shards[0]);

  // Commits that cannot be right.
  CommitShardsRequest past_end = newer;
  past_end.size = 100;
  EXPECT_CODE(client_->CommitShards(past_end), ErrorCode::kInvalidArgument);
  CommitShardsRequest no_replicas = newer;
  no_replicas.shards[0].replicas.clear();
  EXPECT_CODE(client_->CommitShards(no_replicas), ErrorCode::kInvalidArgument);
  CommitShardsRequest twice = newer;
  twice.shards.push_back(twice.shards[0]);
  EXPECT_CODE(client_->CommitShards(twice), ErrorCode::kInvalidArgument);
  InodeAttrs d = MustMknod(Dir(kRootIno, "d"));
  CommitShardsRequest to_dir = newer;
  to_dir.ino = d.ino;
  EXPECT_CODE(client_->CommitShards(to_dir), ErrorCode::kIsDir);
  EXPECT_CODE(client_->GetShardTable(d.ino, 0, 10), ErrorCode::kIsDir);
  EXPECT_CODE(client_->AllocateShards(AllocateShardsRequest{d.ino, {0}}),
              ErrorCode::kInvalidArgument);
  EXPECT_CODE(client_->AllocateShards(AllocateShardsRequest{987654321, {0}}), ErrorCode::kNotFound);
  EXPECT_CODE(client_->GetShardTable(987654321, 0, 10), ErrorCode::kNotFound);

  // The last possible index (2^32 - 1) works end to end.
  auto last = client_->AllocateShards(AllocateShardsRequest{f.ino, {UINT32_MAX}});
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  CommitShardsRequest far;
  far.ino = f.ino;
  far.size = uint64_t{UINT32_MAX} * 4096 + 10;
  far.shards = {
      ShardEntry{UINT32_MAX, last->placements[0].generation, 10, 7, kFakeNodeIds, std::nullopt}};
  ASSERT_TRUE(client_->CommitShards(far).ok());
  auto far_table = client_->GetShardTable(f.ino, UINT32_MAX, kMaxShardsPerMessage);
  ASSERT_TRUE(far_table.ok());
  ASSERT_EQ(far_table->shards.size(), 1u);
  EXPECT_EQ(far_table->shards[0], far.shards[0]);
  EXPECT_EQ(client_->GetAttr(f.ino)->size, far.size);

  // Truncating cuts the table.
  SetAttrRequest cut;
  cut.ino = f.ino;
  cut.mask = kSetAttrSize;
  cut.size = 4096 + 10;
  ASSERT_TRUE(client_->SetAttr(cut).ok());
  table = client_->GetShardTable(f.ino, 0, kMaxShardsPerMessage);
  ASSERT_TRUE(table.ok());
  ASSERT_EQ(table->shards.size(), 2u);
  EXPECT_EQ(table->shards[1].index, 1u);
  EXPECT_EQ(table->shards[1].length, 10u);
}

// Growing a file keeps every shard, up to the largest size a u64 holds
// (the arithmetic that finds the first shard past the end must not wrap).
TEST_F(RegistryNamespaceTest, GrowingAFileToTheLargestSizeKeepsItsShards) {
  MknodRequest req = File(kRootIno, "f");
  req.shard_size = 4096;
  InodeAttrs f = MustMknod(req);
  CommitShardsRequest commit;
  commit.ino = f.ino;
  commit.size = 8192;
  commit.shards = {ShardEntry{0, 1, 4096, 1, {kFakeNodeIds[0]}, std::nullopt},
                   ShardEntry{1, 2, 4096, 2, {kFakeNodeIds[1]}, std::nullopt}};
  ASSERT_TRUE(client_->CommitShards(commit).ok());
  // 0xff80000000000001 ends in shard 2^52 - 2^41, whose low 32 bits are 0.
  for (uint64_t size : {uint64_t{1} << 62, uint64_t{0xff80000000000001}, UINT64_MAX - 4096,
                        UINT64_MAX - 1, UINT64_MAX}) {
    SetAttrRequest grow;
    grow.ino = f.ino;
    grow.mask = kSetAttrSize;
    grow.size = size;
    auto grown = client_->SetAttr(grow);
    ASSERT_TRUE(grown.ok()) << grown.status().ToString();
    EXPECT_EQ(grown->size, size);
    auto table = client_->GetShardTable(f.ino, 0, 100);
    ASSERT_TRUE(table.ok());
    EXPECT_EQ(table->shards, commit.shards) << "size " << size;
  }
  // The same through a commit that sets the size.
  CommitShardsRequest huge = commit;
  huge.shards = {ShardEntry{2, 3, 4096, 3, {kFakeNodeIds[0]}, std::nullopt}};
  huge.size = UINT64_MAX;
  ASSERT_TRUE(client_->CommitShards(huge).ok());
  auto table = client_->GetShardTable(f.ino, 0, 100);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->shards.size(), 3u);
}

TEST_F(RegistryNamespaceTest, OpenUnlinkedFileKeepsItsShardTableUntilRelease) {
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  CommitShardsRequest commit;
  commit.ino = f.ino;
  commit.size = 1000;
  commit.shards = {ShardEntry{0, 1, 1000, 42, {kFakeNodeIds[0], kFakeNodeIds[1]}, std::nullopt}};
  ASSERT_TRUE(client_->CommitShards(commit).ok());

  auto opened = client_->Open(f.ino);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->size, 1000u);
  auto opened_twice = client_->Open(f.ino);  // a second handle
  ASSERT_TRUE(opened_twice.ok());
  ASSERT_TRUE(client_->Unlink(kRootIno, "f").ok());
  EXPECT_CODE(client_->Lookup(kRootIno, "f"), ErrorCode::kNotFound);

  auto orphan = client_->GetAttr(f.ino);
  ASSERT_TRUE(orphan.ok()) << orphan.status().ToString();
  EXPECT_EQ(orphan->nlink, 0u);
  auto table = client_->GetShardTable(f.ino, 0, 10);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->shards, commit.shards);
  // An unlinked file cannot get a name back.
  EXPECT_CODE(client_->Link(f.ino, kRootIno, "back"), ErrorCode::kNotFound);

  ASSERT_TRUE(client_->Release(f.ino).ok());
  EXPECT_TRUE(client_->GetShardTable(f.ino, 0, 10).ok()) << "one handle is still open";
  ASSERT_TRUE(client_->Release(f.ino).ok());
  EXPECT_CODE(client_->GetAttr(f.ino), ErrorCode::kNotFound);
  EXPECT_CODE(client_->GetShardTable(f.ino, 0, 10), ErrorCode::kNotFound);
  // Releasing what is gone, or was never open, is harmless.
  EXPECT_TRUE(client_->Release(f.ino).ok());
  EXPECT_CODE(client_->Open(f.ino), ErrorCode::kNotFound);

  // A rename over an open file keeps it alive the same way.
  InodeAttrs a = MustMknod(File(kRootIno, "a"));
  InodeAttrs b = MustMknod(File(kRootIno, "b"));
  ASSERT_TRUE(client_->Open(b.ino).ok());
  ASSERT_TRUE(client_->Rename(Move(kRootIno, "a", kRootIno, "b")).ok());
  EXPECT_EQ(client_->GetAttr(b.ino)->nlink, 0u);
  EXPECT_EQ(client_->Lookup(kRootIno, "b")->ino, a.ino);
  ASSERT_TRUE(client_->Release(b.ino).ok());
  EXPECT_CODE(client_->GetAttr(b.ino), ErrorCode::kNotFound);
}

// Create-and-open and open-with-table take the open ref in the same round
// trip, so an unlink right after keeps the file until its release.
TEST_F(RegistryNamespaceTest, CreateAndOpenAndOpenWithTableKeepUnlinkedFiles) {
  auto created = client_->CreateAndOpen(File(kRootIno, "made-open"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const InodeAttrs* made = &created->attrs;
  ASSERT_TRUE(client_->Unlink(kRootIno, "made-open").ok());
  EXPECT_EQ(client_->GetAttr(made->ino)->nlink, 0u) << "created open: kept as an orphan";
  ASSERT_TRUE(client_->Release(made->ino).ok());
  EXPECT_CODE(client_->GetAttr(made->ino), ErrorCode::kNotFound);

  InodeAttrs f = MustMknod(File(kRootIno, "table-open"));
  CommitShardsRequest commit;
  commit.ino = f.ino;
  commit.size = 1000;
  commit.shards = {ShardEntry{0, 1, 1000, 42, {kFakeNodeIds[0], kFakeNodeIds[1]}, std::nullopt}};
  ASSERT_TRUE(client_->CommitShards(commit).ok());
  auto table = client_->OpenWithTable(f.ino, 16);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->attrs.size, 1000u);
  EXPECT_EQ(table->shards, commit.shards);
  ASSERT_TRUE(client_->Unlink(kRootIno, "table-open").ok());
  EXPECT_TRUE(client_->GetShardTable(f.ino, 0, 10).ok()) << "opened with its table: kept";
  ASSERT_TRUE(client_->Release(f.ino).ok());
  EXPECT_CODE(client_->GetAttr(f.ino), ErrorCode::kNotFound);
  // A plain table read opens nothing.
  InodeAttrs g = MustMknod(File(kRootIno, "table-only"));
  ASSERT_TRUE(client_->GetShardTable(g.ino, 0, 10).ok());
  ASSERT_TRUE(client_->Unlink(kRootIno, "table-only").ok());
  EXPECT_CODE(client_->GetAttr(g.ino), ErrorCode::kNotFound);
  EXPECT_CODE(client_->OpenWithTable(g.ino, 16), ErrorCode::kNotFound);
}

// Every change of a name reports the directories it changed, as they are
// after it: what the mount answers the kernel's next GETATTR with.
TEST_F(RegistryNamespaceTest, NameChangesReportTheChangedDirectories) {
  NamespaceClient reporting(ctx_, Endpoint(), NamespaceClient::Options());
  std::vector<InodeAttrs> seen;
  reporting.set_changed_dirs_listener([&](const std::vector<InodeAttrs>& dirs) {
    seen.insert(seen.end(), dirs.begin(), dirs.end());
  });
  auto expect_reported = [&](std::vector<uint64_t> inos, const char* what) {
    std::vector<uint64_t> got;
    for (const auto& d : seen) {
      got.push_back(d.ino);
      EXPECT_EQ(d.type, FileType::kDirectory) << what;
      auto now = client_->GetAttr(d.ino);
      ASSERT_TRUE(now.ok()) << what;
      EXPECT_EQ(d, *now) << what << ": the attributes after the change";
    }
    EXPECT_EQ(got, inos) << what;
    seen.clear();
  };
  auto a = reporting.Mkdir(Dir(kRootIno, "dirs-a"));
  ASSERT_TRUE(a.ok());
  expect_reported({kRootIno}, "mkdir");
  auto b = reporting.Mkdir(Dir(kRootIno, "dirs-b"));
  ASSERT_TRUE(b.ok());
  seen.clear();
  auto f = reporting.Mknod(File(a->ino, "f"));
  ASSERT_TRUE(f.ok());
  expect_reported({a->ino}, "mknod");
  ASSERT_TRUE(reporting.Link(f->ino, b->ino, "g").ok());
  expect_reported({b->ino}, "link");
  ASSERT_TRUE(reporting.Symlink(SymlinkRequest{a->ino, "s", "f", {1000, 100}}).ok());
  expect_reported({a->ino}, "symlink");
  ASSERT_TRUE(reporting.Rename(Move(a->ino, "f", a->ino, "f2")).ok());
  expect_reported({a->ino}, "rename in one directory");
  ASSERT_TRUE(reporting.Rename(Move(a->ino, "f2", b->ino, "f3")).ok());
  expect_reported({a->ino, b->ino}, "rename across directories");
  ASSERT_TRUE(reporting.Unlink(b->ino, "f3").ok());
  expect_reported({b->ino}, "unlink");
  ASSERT_TRUE(reporting.Unlink(a->ino, "s").ok());
  ASSERT_TRUE(reporting.Unlink(b->ino, "g").ok());
  seen.clear();
  ASSERT_TRUE(reporting.Rmdir(kRootIno, "dirs-b").ok());
  expect_reported({kRootIno}, "rmdir");
  // Failed changes and reads report nothing.
  EXPECT_CODE(reporting.Unlink(a->ino, "missing"), ErrorCode::kNotFound);
  ASSERT_TRUE(reporting.GetAttr(a->ino).ok());
  EXPECT_TRUE(seen.empty());
}

TEST_F(RegistryNamespaceTest, StatFsCountsInodesAndNodes) {
  auto empty = client_->StatFs();
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->inodes, 1u);  // the root
  EXPECT_EQ(empty->live_nodes, 0u);
  EXPECT_EQ(empty->total_bytes, 0u);
  EXPECT_EQ(empty->free_bytes, 0u);

  MustMknod(Dir(kRootIno, "d"));
  MustMknod(File(kRootIno, "f"));
  StartFakeNodes();
  ASSERT_FALSE(HasFatalFailure());
  auto fs = client_->StatFs();
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(fs->inodes, 3u);
  EXPECT_EQ(fs->live_nodes, 2u);
  // Two nodes of 100 GiB with 10 used each, every byte stored twice.
  EXPECT_EQ(fs->total_bytes, 2 * (100ull << 30) / kReplicas);
  EXPECT_EQ(fs->free_bytes, 2 * (90ull << 30) / kReplicas);
}

// ---------------------------------------------------------------------------
// Restart.

// Everything a client can observe of the tree, as text.
std::string DescribeTree(NamespaceClient& c) {
  std::string out;
  std::vector<std::pair<uint64_t, std::string>> dirs{{kRootIno, "/"}};
  while (!dirs.empty()) {
    auto [dir, path] = dirs.back();
    dirs.pop_back();
    ReadDirRequest req{dir, "", 100, true};
    while (true) {
      auto page = c.ReadDir(req);
      if (!page.ok()) return "readdir failed: " + page.status().ToString();
      for (const auto& e : page->entries) {
        const InodeAttrs& a = *e.attrs;
        out += path + e.name + " ino=" + std::to_string(a.ino) +
               " type=" + std::to_string(static_cast<int>(a.type)) +
               " mode=" + std::to_string(a.mode) + " uid=" + std::to_string(a.uid) +
               " nlink=" + std::to_string(a.nlink) + " size=" + std::to_string(a.size) +
               " mtime=" + std::to_string(a.mtime_ns) + " ctime=" + std::to_string(a.ctime_ns) +
               " goal=" + std::to_string(a.replication_goal) + "\n";
        auto xattrs = c.ListXattr(a.ino);
        if (xattrs.ok()) {
          std::sort(xattrs->begin(), xattrs->end());
          for (const auto& x : *xattrs) out += "  xattr " + x + "=" + *c.GetXattr(a.ino, x) + "\n";
        }
        if (a.type == FileType::kSymlink) out += "  -> " + *c.Readlink(a.ino) + "\n";
        if (a.type == FileType::kRegular) {
          auto t = c.GetShardTable(a.ino, 0, kMaxShardsPerMessage);
          if (!t.ok()) return "shard table failed: " + t.status().ToString();
          for (const auto& s : t->shards) {
            out += "  shard " + std::to_string(s.index) + " gen=" + std::to_string(s.generation) +
                   " len=" + std::to_string(s.length) + " sum=" + std::to_string(s.checksum);
            for (const auto& r : s.replicas) out += " " + r;
            out += "\n";
          }
        }
        if (a.type == FileType::kDirectory) dirs.push_back({a.ino, path + e.name + "/"});
      }
      if (!page->more) break;
      req.after = page->entries.back().name;
    }
  }
  return out;
}

TEST_F(RegistryNamespaceTest, SigtermRestartKeepsEverything) {
  StartFakeNodes();
  ASSERT_FALSE(HasFatalFailure());
  InodeAttrs d = MustMknod(Dir(kRootIno, "d"));
  InodeAttrs sub = MustMknod(Dir(d.ino, "sub"));
  for (int i = 0; i < 20; ++i) {
    MknodRequest r = File(i % 2 ? d.ino : sub.ino, "file" + std::to_string(i));
    r.shard_size = 4096;
    InodeAttrs f = MustMknod(r);
    auto alloc = client_->AllocateShards(AllocateShardsRequest{f.ino, {0, 1}});
    ASSERT_TRUE(alloc.ok()) << alloc.status().ToString();
    CommitShardsRequest c{f.ino, {}, 4096 + static_cast<uint64_t>(i), true};
    for (const auto& p : alloc->placements) {
      c.shards.push_back(ShardEntry{p.index, p.generation, p.index == 0 ? 4096u : i + 0u, 1000u + i,
                                    p.replicas, std::nullopt});
    }
    if (i == 0) c.shards.pop_back();  // size 4096: only shard 0
    ASSERT_TRUE(client_->CommitShards(c).ok());
  }
  ASSERT_TRUE(client_->Link(client_->Lookup(d.ino, "file1")->ino, kRootIno, "hard").ok());
  ASSERT_TRUE(client_->Symlink(SymlinkRequest{kRootIno, "sym", "d/file1", {3, 4}}).ok());
  ASSERT_TRUE(client_->SetXattr(d.ino, "user.k", "v", kXattrCreate).ok());
  ASSERT_TRUE(client_->Rename(Move(d.ino, "file3", sub.ino, "moved")).ok());
  ASSERT_TRUE(client_->Unlink(d.ino, "file5").ok());
  SetAttrRequest chmod;
  chmod.ino = sub.ino;
  chmod.mask = kSetAttrMode;
  chmod.mode = 0700;
  ASSERT_TRUE(client_->SetAttr(chmod).ok());
  ASSERT_TRUE(client_->SetReplicas(SetReplicasRequest{d.ino, 3, true}).ok());
  auto before_fs = client_->StatFs();
  ASSERT_TRUE(before_fs.ok());

  const std::string before = DescribeTree(*client_);
  ASSERT_NE(before.find("shard 1 gen="), std::string::npos) << before;

  for (int round = 0; round < 2; ++round) {
    int status = registry_.Stop(SIGTERM, 10s);
    ASSERT_TRUE(DaemonProcess::ExitedWith(status, 0)) << "status " << status << "\n"
                                                      << registry_.ReadLog();
    StartRegistry();
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(WaitForRegistry()) << registry_.ReadLog();
    EXPECT_EQ(DescribeTree(*client_), before) << "after restart " << round;
    auto fs = client_->StatFs();
    ASSERT_TRUE(fs.ok());
    EXPECT_EQ(fs->inodes, before_fs->inodes);
  }
  // The nodes re-register on their next heartbeat; placement needs them.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto fs = client_->StatFs();
        return fs.ok() && fs->live_nodes == kFakeNodeIds.size();
      },
      10s));
  // New ids never collide with old ones after a restart.
  InodeAttrs fresh = MustMknod(File(kRootIno, "fresh"));
  EXPECT_GT(fresh.ino, sub.ino);
  auto alloc = client_->AllocateShards(AllocateShardsRequest{fresh.ino, {0}});
  ASSERT_TRUE(alloc.ok()) << alloc.status().ToString();
  EXPECT_GT(alloc->placements[0].generation, fresh.ino);
}

// ---------------------------------------------------------------------------
// Bad input.

// A raw DEALER socket: sends exactly the frames given and reads one reply.
class RawPeer {
 public:
  RawPeer(zmq::context_t& ctx, const std::string& endpoint)
      : socket_(ctx, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvtimeo, 5000);
    socket_.set(zmq::sockopt::sndtimeo, 5000);
    // Hostile input, but from a member: the checks under test sit behind
    // the handshake.
    if (Status st = SecureClientSocket(ctx, socket_); !st.ok()) ADD_FAILURE() << st.ToString();
    socket_.connect(endpoint);
  }

  // The decoded reply header, or an error if none came or it does not decode.
  Result<Envelope> Exchange(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket_.send(zmq::buffer(frames[i]), flags)) {
        return Status::Error(ErrorCode::kTimeout, "send timed out");
      }
    }
    std::vector<zmq::message_t> reply;
    auto got = zmq::recv_multipart(socket_, std::back_inserter(reply));
    if (!got) return Status::Error(ErrorCode::kTimeout, "no reply within 5 s");
    if (reply.size() != 1) return Status::Error(ErrorCode::kBadMessage, "reply is not one frame");
    return DecodeHeader(
        std::string_view(static_cast<const char*>(reply[0].data()), reply[0].size()));
  }

 private:
  zmq::socket_t socket_;
};

std::string Header(uint16_t type, const FieldWriter& fields, uint64_t id = 77) {
  return EncodeHeader(type, id, fields);
}
std::string Header(MessageType type, const FieldWriter& fields, uint64_t id = 77) {
  return EncodeHeader(type, id, fields);
}

// A MessagePack header built by hand, for shapes FieldWriter cannot make.
std::string Pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fn) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  fn(pk);
  return std::string(buf.data(), buf.size());
}

ErrorCode ErrorOf(const Result<Envelope>& reply) {
  if (!reply.ok()) return ErrorCode::kOk;  // no usable reply: never a match
  if (!reply->IsError()) return ErrorCode::kOk;
  return StatusFromErrorFields(reply->fields).code();
}

#define EXPECT_ERROR_REPLY(reply, code)                             \
  do {                                                              \
    auto _r = (reply);                                              \
    ASSERT_TRUE(_r.ok()) << "no reply: " << _r.status().ToString(); \
    EXPECT_TRUE(_r->IsError()) << "type " << _r->type;              \
    EXPECT_EQ(ErrorCodeName(ErrorOf(_r)), ErrorCodeName(code))      \
        << StatusFromErrorFields(_r->fields).ToString();            \
  } while (0)

TEST_F(RegistryNamespaceTest, WrongVersionGetsAnErrorWithTheRequestId) {
  RawPeer peer(ctx_, Endpoint());
  for (uint64_t version : {0ull, 2ull, 65535ull}) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(4);
    pk.pack_uint64(version);
    pk.pack_uint16(static_cast<uint16_t>(MessageType::kGetAttr));
    pk.pack_uint64(4242);
    InoRequest{kRootIno}.Encode().AppendTo(&buf);
    auto reply = peer.Exchange({std::string(buf.data(), buf.size())});
    EXPECT_ERROR_REPLY(reply, ErrorCode::kVersionMismatch);
    EXPECT_EQ(reply->request_id, 4242u);
  }
  ExpectStillServing();
}

TEST_F(RegistryNamespaceTest, UnknownMessageTypesGetAnError) {
  RawPeer peer(ctx_, Endpoint());
  for (uint16_t type : {0, 1, 2, 99, 150, 299, static_cast<int>(MessageType::kRenewSession) + 1,
                        350, 399, 400, 1000, 0x8000 | 300, 65535}) {
    auto reply = peer.Exchange({Header(type, InoRequest{kRootIno}.Encode(), 1000 + type)});
    EXPECT_ERROR_REPLY(reply, ErrorCode::kUnknownType);
    EXPECT_EQ(reply->request_id, 1000u + type) << type;
  }
  ExpectStillServing();
}

TEST_F(RegistryNamespaceTest, MalformedRequestsGetErrorsAndChangeNothing) {
  InodeAttrs f = MustMknod(File(kRootIno, "f"));
  const std::string mb(1 << 20, 'n');
  struct Case {
    std::string what;
    MessageType type;
    FieldWriter fields;
    ErrorCode code;
  };
  std::vector<Case> cases;
  auto add = [&](std::string what, MessageType type, FieldWriter fields, ErrorCode code) {
    cases.push_back(Case{std::move(what), type, std::move(fields), code});
  };
  // Missing fields.
  add("lookup {}", MessageType::kLookup, FieldWriter(), ErrorCode::kBadMessage);
  add("getattr {}", MessageType::kGetAttr, FieldWriter(), ErrorCode::kBadMessage);
  add("mknod without name", MessageType::kMknod,
      std::move(
          FieldWriter().U64("parent", 1).U64("type", 1).U64("mode", 0).U64("uid", 0).U64("gid", 0)),
      ErrorCode::kBadMessage);
  add("rename without flags", MessageType::kRename,
      std::move(
          FieldWriter().U64("parent", 1).Str("name", "f").U64("newparent", 1).Str("newname", "g")),
      ErrorCode::kBadMessage);
  add("setattr without mask", MessageType::kSetAttr, std::move(FieldWriter().U64("ino", f.ino)),
      ErrorCode::kBadMessage);
  add("commit without shards", MessageType::kCommitShards,
      std::move(FieldWriter().U64("ino", f.ino).U64("size", 0)), ErrorCode::kBadMessage);
  add("readdir without max", MessageType::kReadDir, std::move(FieldWriter().U64("ino", 1)),
      ErrorCode::kBadMessage);
  // Wrong types.
  add("parent as a string", MessageType::kLookup,
      std::move(FieldWriter().Str("parent", "1").Str("name", "f")), ErrorCode::kBadMessage);
  add("name as a number", MessageType::kLookup,
      std::move(FieldWriter().U64("parent", 1).U64("name", 5)), ErrorCode::kBadMessage);
  add("negative ino", MessageType::kGetAttr, std::move(FieldWriter().I64("ino", -1)),
      ErrorCode::kBadMessage);
  add("plus as a number", MessageType::kReadDir,
      std::move(FieldWriter().U64("ino", 1).U64("max", 10).U64("plus", 1)), ErrorCode::kBadMessage);
  add("indexes as a map", MessageType::kAllocateShards,
      std::move(FieldWriter().U64("ino", f.ino).Map("indexes", FieldWriter())),
      ErrorCode::kBadMessage);
  add("shards as strings", MessageType::kCommitShards,
      std::move(FieldWriter().U64("ino", f.ino).U64("size", 0).StrArray("shards", {"x"})),
      ErrorCode::kBadMessage);
  add("unknown file type", MessageType::kMknod,
      std::move(FieldWriter()
                    .U64("parent", 1)
                    .Str("name", "t")
                    .U64("type", 99)
                    .U64("mode", 0)
                    .U64("uid", 0)
                    .U64("gid", 0)),
      ErrorCode::kBadMessage);
  add("mode past 32 bits", MessageType::kMknod,
      std::move(FieldWriter()
                    .U64("parent", 1)
                    .Str("name", "t")
                    .U64("type", 1)
                    .U64("mode", 1ull << 32)
                    .U64("uid", 0)
                    .U64("gid", 0)),
      ErrorCode::kBadMessage);
  add("replication goal 17", MessageType::kMknod,
      std::move(FieldWriter()
                    .U64("parent", 1)
                    .Str("name", "t")
                    .U64("type", 1)
                    .U64("mode", 0)
                    .U64("uid", 0)
                    .U64("gid", 0)
                    .U64("goal", 17)),
      ErrorCode::kBadMessage);
  add("unknown xattr flags", MessageType::kSetXattr,
      std::move(
          FieldWriter().U64("ino", f.ino).Str("name", "user.a").Bin("value", "v").U64("flags", 4)),
      ErrorCode::kBadMessage);
  // Absurd sizes.
  add("1 MB name in lookup", MessageType::kLookup,
      std::move(FieldWriter().U64("parent", 1).Str("name", mb)), ErrorCode::kBadMessage);
  add("1 MB name in mknod", MessageType::kMknod, File(kRootIno, mb).Encode(),
      ErrorCode::kBadMessage);
  add("1 MB symlink target", MessageType::kSymlink, SymlinkRequest{kRootIno, "s", mb, {}}.Encode(),
      ErrorCode::kBadMessage);
  add("1 MB xattr value", MessageType::kSetXattr, XattrRequest{f.ino, "user.a", mb, 0}.Encode(),
      ErrorCode::kBadMessage);
  add("1 MB readdir cursor", MessageType::kReadDir,
      std::move(FieldWriter().U64("ino", 1).Str("after", mb).U64("max", 10)),
      ErrorCode::kBadMessage);
  add("readdir max 10^9", MessageType::kReadDir,
      std::move(FieldWriter().U64("ino", 1).U64("max", 1'000'000'000)), ErrorCode::kBadMessage);
  add("readdir max 2^64-1", MessageType::kReadDir,
      std::move(FieldWriter().U64("ino", 1).U64("max", UINT64_MAX)), ErrorCode::kBadMessage);
  add("shard index 2^32", MessageType::kAllocateShards,
      std::move(FieldWriter().U64("ino", f.ino).U64Array("indexes", {1ull << 32})),
      ErrorCode::kBadMessage);
  add("shard index 2^64-1", MessageType::kAllocateShards,
      std::move(FieldWriter().U64("ino", f.ino).U64Array("indexes", {0, UINT64_MAX})),
      ErrorCode::kBadMessage);
  add("65537 shard indexes", MessageType::kAllocateShards,
      std::move(FieldWriter()
                    .U64("ino", f.ino)
                    .U64Array("indexes", std::vector<uint64_t>(kMaxShardsPerMessage + 1, 0))),
      ErrorCode::kBadMessage);
  add("shard table from 2^32", MessageType::kGetShardTable,
      std::move(FieldWriter().U64("ino", f.ino).U64("first", 1ull << 32).U64("count", 1)),
      ErrorCode::kBadMessage);
  add("shard table count 2^32", MessageType::kGetShardTable,
      std::move(FieldWriter().U64("ino", f.ino).U64("first", 0).U64("count", 1ull << 32)),
      ErrorCode::kBadMessage);
  {
    FieldWriter entry;
    entry.U64("idx", 1ull << 32)
        .U64("gen", 1)
        .U64("len", 1)
        .U64("sum", 0)
        .StrArray("replicas", {"a"});
    add("commit of index 2^32", MessageType::kCommitShards,
        std::move(FieldWriter()
                      .U64("ino", f.ino)
                      .U64("size", 1)
                      .MapArray("shards",
                                [&] {
                                  std::vector<FieldWriter> v;
                                  v.push_back(std::move(entry));
                                  return v;
                                }())),
        ErrorCode::kBadMessage);
  }
  {
    FieldWriter entry;
    entry.U64("idx", 0).U64("gen", 1).U64("len", 1).U64("sum", 0).StrArray(
        "replicas", std::vector<std::string>(kMaxReplicas + 1, "n"));
    std::vector<FieldWriter> v;
    v.push_back(std::move(entry));
    add("17 replicas", MessageType::kCommitShards,
        std::move(FieldWriter().U64("ino", f.ino).U64("size", 1).MapArray("shards", v)),
        ErrorCode::kBadMessage);
  }
  // Valid shape, impossible content: the store's errors.
  add("65536 indexes, no nodes", MessageType::kAllocateShards,
      std::move(FieldWriter()
                    .U64("ino", f.ino)
                    .U64Array("indexes", std::vector<uint64_t>(kMaxShardsPerMessage, 0))),
      ErrorCode::kUnavailable);
  add("readdir of ino 0", MessageType::kReadDir,
      std::move(FieldWriter().U64("ino", 0).U64("max", 10)), ErrorCode::kNotFound);
  add("getattr of 2^64-1", MessageType::kGetAttr, InoRequest{UINT64_MAX}.Encode(),
      ErrorCode::kNotFound);

  RawPeer peer(ctx_, Endpoint());
  uint64_t id = 500;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto reply = peer.Exchange({Header(c.type, c.fields, ++id)});
    EXPECT_ERROR_REPLY(reply, c.code);
    EXPECT_EQ(reply->request_id, id);
  }
  // None of it changed the namespace.
  EXPECT_EQ(ListNames(kRootIno), std::vector<std::string>{"f"});
  EXPECT_EQ(*client_->GetAttr(f.ino), f);
  ExpectStillServing();
}

TEST_F(RegistryNamespaceTest, MalformedEnvelopesGetErrors) {
  RawPeer peer(ctx_, Endpoint());
  const std::string good = Header(MessageType::kGetAttr, InoRequest{kRootIno}.Encode());
  struct Case {
    std::string what;
    std::vector<std::string> frames;
    ErrorCode code;
  };
  std::vector<Case> cases = {
      {"empty frame", {""}, ErrorCode::kBadMessage},
      {"not msgpack", {"\xc1\xc1\xc1"}, ErrorCode::kBadMessage},
      {"a string", {Pack([](auto& pk) { pk.pack(std::string("hello")); })}, ErrorCode::kBadMessage},
      {"3-item array",
       {Pack([](auto& pk) {
         pk.pack_array(3);
         pk.pack(1);
         pk.pack(301);
         pk.pack(1);
       })},
       ErrorCode::kBadMessage},
      {"fields not a map",
       {Pack([](auto& pk) {
         pk.pack_array(4);
         pk.pack(1);
         pk.pack(301);
         pk.pack(1);
         pk.pack_array(0);
       })},
       ErrorCode::kBadMessage},
      {"negative type",
       {Pack([](auto& pk) {
         pk.pack_array(4);
         pk.pack(1);
         pk.pack(-301);
         pk.pack(1);
         pk.pack_map(0);
       })},
       ErrorCode::kBadMessage},
      {"type past 16 bits",
       {Pack([](auto& pk) {
         pk.pack_array(4);
         pk.pack(1);
         pk.pack(70000);
         pk.pack(1);
         pk.pack_map(0);
       })},
       ErrorCode::kBadMessage},
      {"trailing bytes", {good + "x"}, ErrorCode::kBadMessage},
      {"truncated", {good.substr(0, good.size() - 1)}, ErrorCode::kBadMessage},
      // A tiny message claiming a 4-billion-item array must not make the
      // parser allocate for it.
      {"huge array claim", {std::string("\xdd\xff\xff\xff\xff", 5)}, ErrorCode::kBadMessage},
      {"huge map claim",
       {std::string("\x94\x01\xcd\x01\x2d\x01\xdf\xff\xff\xff\xff", 11)},
       ErrorCode::kBadMessage},
      {"deep nesting", {std::string(10000, '\x91')}, ErrorCode::kBadMessage},
      {"header over 4 MiB", {std::string(kMaxHeaderBytes + 1, '\x90')}, ErrorCode::kTooLarge},
      {"three frames", {good, "a", "b"}, ErrorCode::kBadMessage},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_ERROR_REPLY(peer.Exchange(c.frames), c.code);
  }
  // A payload frame on a namespace request is not an error worth a
  // disconnect: the request is served, the payload ignored.
  auto with_payload = peer.Exchange({good, "payload bytes"});
  ASSERT_TRUE(with_payload.ok()) << with_payload.status().ToString();
  ExpectStillServing();
}

TEST_F(RegistryNamespaceTest, RandomBytesAndMutatedRequestsOverZeroMq) {
  InodeAttrs d = MustMknod(Dir(kRootIno, "d"));
  InodeAttrs f = MustMknod(File(d.ino, "f"));
  // Well-formed requests of every namespace type, to mutate.
  std::vector<std::pair<MessageType, FieldWriter>> seeds;
  seeds.emplace_back(MessageType::kLookup, NameRequest{d.ino, "f"}.Encode());
  seeds.emplace_back(MessageType::kGetAttr, InoRequest{f.ino}.Encode());
  seeds.emplace_back(MessageType::kMknod, File(d.ino, "new").Encode());
  seeds.emplace_back(MessageType::kMkdir, Dir(d.ino, "newdir").Encode());
  seeds.emplace_back(MessageType::kSymlink, SymlinkRequest{d.ino, "s", "t", {}}.Encode());
  seeds.emplace_back(MessageType::kLink, LinkRequest{f.ino, d.ino, "l"}.Encode());
  seeds.emplace_back(MessageType::kRename, Move(d.ino, "f", d.ino, "g").Encode());
  seeds.emplace_back(MessageType::kReadDir, ReadDirRequest{d.ino, "", 100, true}.Encode());
  seeds.emplace_back(MessageType::kSetXattr, XattrRequest{f.ino, "user.x", "v", 0}.Encode());
  seeds.emplace_back(MessageType::kAllocateShards, AllocateShardsRequest{f.ino, {0, 1}}.Encode());
  seeds.emplace_back(
      MessageType::kCommitShards,
      CommitShardsRequest{f.ino, {ShardEntry{0, 1, 10, 2, {"n1"}, std::nullopt}}, 10, true}
          .Encode());
  seeds.emplace_back(MessageType::kGetShardTable, GetShardTableRequest{f.ino, 0, 10}.Encode());
  SetAttrRequest sa;
  sa.ino = f.ino;
  sa.mask = kSetAttrMode;
  sa.mode = 0600;
  seeds.emplace_back(MessageType::kSetAttr, sa.Encode());
  std::vector<std::string> encoded;
  for (const auto& [type, fields] : seeds) encoded.push_back(Header(type, fields));

  std::mt19937_64 rng(20240611);
  RawPeer peer(ctx_, Endpoint());
  int replies = 0;
  int errors = 0;
  const auto start = Clock::now();
  for (int i = 0; i < 3000; ++i) {
    std::string frame;
    switch (i % 3) {
      case 0: {  // pure noise
        frame.resize(rng() % 512);
        for (char& c : frame) c = static_cast<char>(rng());
        break;
      }
      case 1: {  // a valid request with a few bytes changed
        frame = encoded[rng() % encoded.size()];
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) frame[rng() % frame.size()] = static_cast<char>(rng());
        break;
      }
      default: {  // a valid request cut short or with noise appended
        frame = encoded[rng() % encoded.size()];
        if (rng() % 2) {
          frame.resize(rng() % frame.size());
        } else {
          for (int k = rng() % 16; k >= 0; --k) frame.push_back(static_cast<char>(rng()));
        }
        break;
      }
    }
    auto reply = peer.Exchange({frame});
    ASSERT_TRUE(reply.ok()) << "message " << i
                            << " got no usable reply: " << reply.status().ToString() << "\n"
                            << registry_.ReadLog();
    ++replies;
    if (reply->IsError()) ++errors;
  }
  std::cerr << replies << " replies, " << errors << " errors, in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
            << " ms\n";
  EXPECT_GE(errors, 2000);  // all noise and all cut or padded requests
  ExpectStillServing();
  // Whatever the mutated requests did, they did it by the rules.
  auto root = client_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
}

// Connects a plain TCP socket to the registry's port.
int TcpConnect(uint16_t port) {
  // A server that says nothing is waited for briefly.
  return raw_zmtp::ConnectLoopback(port, 0, timeval{0, 300'000});
}

void SendAll(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server hung up on us: also fine
    off += static_cast<size_t>(n);
  }
}

// Reads until the peer closes or goes quiet.
void Drain(int fd) {
  char buf[4096];
  while (recv(fd, buf, sizeof(buf), 0) > 0) {
  }
}

// The first bytes of a ZMTP 3.0 greeting (signature and version).
std::string ZmtpSignature() {
  std::string s("\xff\0\0\0\0\0\0\0\x01\x7f", 10);
  s += '\x03';
  s += '\x00';
  return s;
}

TEST_F(RegistryNamespaceTest, GarbageOverRawTcp) {
  std::mt19937_64 rng(7);
  // An idle connection that never says anything must not block others.
  int idle = TcpConnect(port_);
  ASSERT_GE(idle, 0);

  for (int i = 0; i < 20; ++i) {
    int fd = TcpConnect(port_);
    ASSERT_GE(fd, 0);
    std::string noise(1 + rng() % 8192, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    SendAll(fd, noise);
    if (i % 2) Drain(fd);
    close(fd);
  }
  {
    // A greeting with an unknown security mechanism.
    int fd = TcpConnect(port_);
    ASSERT_GE(fd, 0);
    std::string g = ZmtpSignature();
    g += std::string("BOGUS") + std::string(15, '\0');
    g += std::string(32, '\0');
    SendAll(fd, g);
    Drain(fd);
    close(fd);
  }
  {
    // A proper NULL greeting, then a frame that claims 2^62 bytes.
    int fd = TcpConnect(port_);
    ASSERT_GE(fd, 0);
    std::string g = ZmtpSignature();
    g += std::string("NULL") + std::string(16, '\0');
    g += std::string(32, '\0');
    g += std::string("\x06\x40\0\0\0\0\0\0\0", 9);
    g += std::string(1000, 'x');
    SendAll(fd, g);
    Drain(fd);
    close(fd);
  }
  {
    // Half a greeting, then silence and a hang-up.
    int fd = TcpConnect(port_);
    ASSERT_GE(fd, 0);
    SendAll(fd, ZmtpSignature().substr(0, 5));
    close(fd);
  }
  ExpectStillServing();
  close(idle);
  ExpectStillServing();
}

}  // namespace
}  // namespace shardfs
