// The cluster key from outside: real daemons, a real mount, the real CLI.
//
// Outsiders (no key, --insecure, another cluster's key, the key a cluster
// had before it was replaced) must be refused with a message that says so,
// on their side and in the server's log, and must change nothing: the
// namespace stays as it was and an outsider node's data directory gets no
// shard. And what crosses the wire of a keyed cluster must be unreadable: a
// tcpdump of loopback while a file goes through a real mount must not
// contain the file's bytes, while the same capture of an --insecure cluster
// does (so the test can fail).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "tests/integration/test_cluster.h"

namespace shardfs {
namespace {

using namespace std::chrono_literals;

bool FuseAvailable() {
  return access("/dev/fuse", R_OK | W_OK) == 0;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Shards (and shards being written) a node's data directory holds.
size_t ShardFilesUnder(const std::string& data_dir) {
  size_t n = 0;
  for (const char* sub : {"/shards", "/tmp"}) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(data_dir + sub, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) ++n;
    }
  }
  return n;
}

std::string RandomHex(size_t bytes) {
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    char buf[3];
    std::snprintf(buf, sizeof(buf), "%02x", rd() & 0xff);
    out += buf;
  }
  return out;
}

// How an outsider is configured, and what its refusal must say.
struct Outsider {
  std::string what;
  std::vector<std::string> flags;  // key flags for the node, the mount and the CLI
  std::string says;                // in every refusal message
};

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // An outsider "without a key" must really have none.
    unsetenv("SHARDFS_KEY");
    TestCluster::Options o;
    o.nodes = 2;
    o.replicas = 2;
    cluster_ = std::make_unique<TestCluster>(o);
    Status st = cluster_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString() << cluster_->Logs();
    // Something in the namespace, so "unchanged" means something.
    const std::string local = cluster_->dir() + "/kept";
    std::ofstream(local) << "kept\n";
    ASSERT_EQ(Sh(cluster_->Cli("put " + local + " /kept"), &out_), 0) << out_;
  }
  void TearDown() override {
    if (HasFailure() && cluster_) std::printf("%s\n", cluster_->Logs().c_str());
  }

  // What the namespace looks like to a member.
  std::string Namespace() {
    std::string out;
    EXPECT_EQ(Sh(cluster_->Cli("ls /"), &out), 0) << out;
    return out;
  }

  std::string Flags(const std::vector<std::string>& flags) {
    std::string s;
    for (const auto& f : flags) s += f + " ";
    return s;
  }

  // The CLI, a node and a mount with `who`'s flags: all refused, clearly.
  void ExpectRefusedEverywhere(const Outsider& who) {
    SCOPED_TRACE(who.what);
    const std::string before = Namespace();
    const std::string cli = BuildPath("src/shardfs") + " --registry " +
                            cluster_->registry_endpoint() + " " + Flags(who.flags);
    std::string local = cluster_->dir() + "/local-" + std::to_string(++round_);
    std::ofstream(local) << "outsider data " << who.what << "\n";

    // The CLI: a write and a read.
    std::string out;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_NE(Sh(cli + "put " + local + " /outsider", &out), 0) << out;
    EXPECT_NE(out.find(who.says), std::string::npos) << out;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "refusal took too long";
    EXPECT_NE(Sh(cli + "ls /", &out), 0) << out;
    EXPECT_NE(out.find(who.says), std::string::npos) << out;

    // A node: never joins, stores nothing.
    const std::string data = cluster_->dir() + "/outsider-node-" + std::to_string(round_);
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(FreeTcpPort());
    DaemonProcess::Options node;
    node.argv = {
        BuildPath("nodeserver/shardfs-node"), "--data", data, "--listen", endpoint, "--registry",
        cluster_->registry_endpoint()};
    node.argv.insert(node.argv.end(), who.flags.begin(), who.flags.end());
    node.log_path = data + ".log";
    auto p = DaemonProcess::Start(node);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_TRUE(WaitUntil(
        [&] {
          const std::string log = p->ReadLog();
          return log.find(who.says) != std::string::npos;
        },
        15s))
        << p->ReadLog();
    std::string status;
    EXPECT_EQ(Sh(cluster_->Cli("--json status"), &status), 0) << status;
    EXPECT_EQ(status.find(endpoint), std::string::npos) << "an outsider node joined:\n" << status;
    EXPECT_EQ(cluster_->NodesUp(), 2);
    p->Stop();
    EXPECT_EQ(ShardFilesUnder(data), 0u);

    // A mount: refused before it mounts, with the reason on the terminal.
    if (FuseAvailable()) {
      const std::string mnt = cluster_->dir() + "/outsider-mnt-" + std::to_string(round_);
      ::mkdir(mnt.c_str(), 0755);
      std::vector<std::string> argv = {BuildPath("fuse/shardfs-mount"), "-f", "--registry",
                                       cluster_->registry_endpoint(), mnt};
      argv.insert(argv.end(), who.flags.begin(), who.flags.end());
      DaemonProcess::Options m;
      m.argv = argv;
      m.log_path = mnt + ".log";
      auto mount = DaemonProcess::Start(m);
      ASSERT_TRUE(mount.ok());
      auto exited = mount->WaitForExit(15s);
      EXPECT_TRUE(exited.has_value()) << "the mount did not give up:\n" << mount->ReadLog();
      if (exited) {
        EXPECT_FALSE(DaemonProcess::ExitedWith(*exited, 0));
      }
      EXPECT_NE(mount->ReadLog().find(who.says), std::string::npos) << mount->ReadLog();
      EXPECT_FALSE(IsMounted(mnt));
      if (IsMounted(mnt)) Sh("fusermount3 -u " + mnt);
      mount->Stop();
    }

    EXPECT_EQ(Namespace(), before);
  }

  std::unique_ptr<TestCluster> cluster_;
  std::string out_;
  int round_ = 0;
};

TEST_F(SecurityTest, OutsidersAreRefusedClearlyAndChangeNothing) {
  TempDir elsewhere("other-cluster");
  TestKey other(elsewhere.Sub("cluster.key"), TestKey::Scope::kFileOnly);
  std::vector<Outsider> outsiders = {
      {"another cluster's key", other.Flag(), "different cluster key"},
      {"--insecure", {"--insecure"}, "requires a cluster key"},
  };
  if (!std::filesystem::exists(std::string(kDefaultKeyPath))) {
    // Nothing to go on at all: refused before a single connection.
    outsiders.push_back({"no key", {}, "no cluster key"});
  }
  for (const auto& who : outsiders) ASSERT_NO_FATAL_FAILURE(ExpectRefusedEverywhere(who));
  // The registry named what it refused, and where from.
  const std::string log = cluster_->registry().ReadLog();
  EXPECT_NE(log.find("security: refused a connection"), std::string::npos) << log;
  EXPECT_NE(log.find("127.0.0.1"), std::string::npos) << log;
  // Members were never disturbed.
  EXPECT_EQ(cluster_->NodesUp(), 2);
}

TEST_F(SecurityTest, TheOldKeyIsRefusedOnceTheKeyIsReplaced) {
  const std::string content = "written under the first key\n";
  const std::string local = cluster_->dir() + "/first";
  std::ofstream(local) << content;
  ASSERT_EQ(Sh(cluster_->Cli("put " + local + " /first"), &out_), 0) << out_;

  // The operator's replacement: keep a copy of the old key (a forgotten
  // client still has it), stop everything, make a new key, start again.
  const std::string old_key = cluster_->dir() + "/old.key";
  ASSERT_EQ(Sh("cp -p " + cluster_->key_path() + " " + old_key), 0);
  cluster_->registry().Stop();
  for (int i = 0; i < 2; ++i) cluster_->node(i).Stop();
  ASSERT_EQ(::unlink(cluster_->key_path().c_str()), 0);
  ASSERT_EQ(Sh(cluster_->Cli("keygen " + cluster_->key_path()), &out_), 0) << out_;
  EXPECT_NE(out_.find("fingerprint"), std::string::npos) << out_;
  // keygen never overwrites.
  EXPECT_NE(Sh(cluster_->Cli("keygen " + cluster_->key_path()), &out_), 0) << out_;
  EXPECT_NE(out_.find("already exists"), std::string::npos) << out_;
  struct stat st {};
  ASSERT_EQ(::stat(cluster_->key_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(cluster_->StartRegistry().ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(cluster_->StartNode(i).ok());
  ASSERT_TRUE(WaitUntil([&] { return cluster_->NodesUp() == 2; }, 20s)) << cluster_->Logs();

  // Members with the new key still read what was written under the old one.
  const std::string back = cluster_->dir() + "/back";
  ASSERT_EQ(Sh(cluster_->Cli("get /first " + back), &out_), 0) << out_;
  EXPECT_EQ(ReadAll(back), content);

  ASSERT_NO_FATAL_FAILURE(
      ExpectRefusedEverywhere({"the replaced key", {"--key", old_key}, "different cluster key"}));
}

// What an attacker on the network sees. Needs tcpdump and root (it is
// installed by scripts/install-deps; CI runs as root).
class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FuseAvailable()) GTEST_SKIP() << "/dev/fuse is not usable";
    if (geteuid() != 0 || Sh("command -v tcpdump") != 0) {
      if (std::getenv("CI") != nullptr) FAIL() << "needs root and tcpdump";
      GTEST_SKIP() << "needs root and tcpdump";
    }
  }

  // Copies a file holding `marker` (and named after `name_marker`) into a
  // real mount of a fresh cluster while tcpdump records loopback; returns
  // the capture's bytes.
  std::string CaptureCopy(bool insecure, const std::string& marker,
                          const std::string& name_marker) {
    TestCluster::Options o;
    o.nodes = 2;
    o.replicas = 2;
    o.insecure = insecure;
    TestCluster cluster(o);
    Status st = cluster.Start();
    EXPECT_TRUE(st.ok()) << st.ToString() << cluster.Logs();
    if (!st.ok()) return "";
    TestMount mount(cluster, cluster.dir() + "/mnt");
    st = mount.Mount();
    EXPECT_TRUE(st.ok()) << st.ToString() << mount.Log();
    if (!st.ok()) return "";

    // 1 MiB of the marker, in lines, so that many copies sit whole inside
    // one TCP segment of the control capture.
    const std::string local = cluster.dir() + "/" + name_marker;
    {
      std::ofstream out(local);
      for (size_t written = 0; written < (1u << 20); written += marker.size() + 1) {
        out << marker << "\n";
      }
    }
    const std::string pcap = cluster.dir() + "/capture.pcap";
    DaemonProcess::Options t;
    // -U: every packet goes to the file at once; a large buffer so loopback
    // at full speed is not dropped.
    t.argv = {"tcpdump", "-i", "lo", "-n", "-U", "-B", "16384", "-w", pcap, "tcp"};
    t.log_path = cluster.dir() + "/tcpdump.log";
    auto tcpdump = DaemonProcess::Start(t);
    EXPECT_TRUE(tcpdump.ok()) << tcpdump.status().ToString();
    if (!tcpdump.ok()) return "";
    EXPECT_TRUE(WaitUntil(
        [&] { return tcpdump->ReadLog().find("listening on") != std::string::npos; }, 10s))
        << tcpdump->ReadLog();
    std::string out;
    EXPECT_EQ(
        Sh("cp " + local + " " + mount.path() + "/ && sync " + mount.path() + "/" + name_marker,
           &out),
        0)
        << out;
    // Read it back through a second mount-side open, from the nodes.
    EXPECT_EQ(Sh("cmp " + local + " " + mount.path() + "/" + name_marker, &out), 0) << out;
    mount.Unmount();
    // Let the last packets reach the capture, then stop it (its PID only).
    std::this_thread::sleep_for(500ms);
    tcpdump->Stop(SIGINT, 10s);
    std::string bytes = ReadAll(pcap);
    EXPECT_GT(bytes.size(), 1u << 20) << "the capture missed the copy:\n" << tcpdump->ReadLog();
    return bytes;
  }
};

TEST_F(CaptureTest, AKeyedClusterSendsNothingReadableAndAnInsecureOneDoes) {
  const std::string marker = "shardfs-capture-marker-" + RandomHex(8);
  const std::string name = "name-marker-" + RandomHex(8);
  std::string secure = CaptureCopy(false, marker, name);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(secure.find(marker), std::string::npos) << "file contents crossed the wire in clear";
  EXPECT_EQ(secure.find(name), std::string::npos) << "a file name crossed the wire in clear";

  // The control: the same capture of an --insecure cluster finds both, so
  // a capture that sees nothing cannot pass for encryption.
  const std::string insecure_name = "name-marker-" + RandomHex(8);
  std::string insecure = CaptureCopy(true, marker, insecure_name);
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(insecure.find(marker), std::string::npos);
  EXPECT_NE(insecure.find(insecure_name), std::string::npos);
}

}  // namespace
}  // namespace shardfs
