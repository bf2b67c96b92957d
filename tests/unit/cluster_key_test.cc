// ClusterKey: the key file's format, its permissions, and how a program
// picks its key.
#include "src/cluster_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "tests/temp_dir.h"

namespace shardfs {
namespace {

void WriteText(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(ClusterKeyTest, GeneratedPairsDeriveTheirPublicHalf) {
  auto a = ClusterKey::Generate();
  auto b = ClusterKey::Generate();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->secret_z85.size(), 40u);
  EXPECT_EQ(a->public_z85.size(), 40u);
  EXPECT_NE(a->secret_z85, b->secret_z85);
  auto again = ClusterKey::FromSecret(a->secret_z85);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_z85, a->public_z85);
  EXPECT_EQ(again->Fingerprint(), a->Fingerprint());
  EXPECT_NE(a->Fingerprint(), b->Fingerprint());
  EXPECT_EQ(a->Fingerprint().size(), 16u);
}

TEST(ClusterKeyTest, FromSecretRefusesWhatIsNotAKey) {
  EXPECT_FALSE(ClusterKey::FromSecret("").ok());
  EXPECT_FALSE(ClusterKey::FromSecret("short").ok());
  EXPECT_FALSE(ClusterKey::FromSecret(std::string(41, 'a')).ok());
  // '"' and '~' are outside the Z85 alphabet.
  EXPECT_FALSE(ClusterKey::FromSecret(std::string(39, 'a') + "\"").ok());
  EXPECT_FALSE(ClusterKey::FromSecret(std::string(40, '~')).ok());
}

TEST(ClusterKeyTest, WrittenWithMode0600LoadsBackAndIsNeverOverwritten) {
  TempDir dir("cluster-key");
  auto key = ClusterKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string path = dir.Sub("cluster.key");
  ASSERT_TRUE(WriteClusterKey(path, *key).ok());
  EXPECT_EQ(ModeOf(path), 0600u);
  auto loaded = LoadClusterKey(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->secret_z85, key->secret_z85);
  EXPECT_EQ(loaded->public_z85, key->public_z85);

  auto other = ClusterKey::Generate();
  ASSERT_TRUE(other.ok());
  Status st = WriteClusterKey(path, *other);
  EXPECT_EQ(st.code(), ErrorCode::kExists) << st.ToString();
  EXPECT_EQ(LoadClusterKey(path)->secret_z85, key->secret_z85);
}

TEST(ClusterKeyTest, AKeyFileOthersMayReadIsRefused) {
  TempDir dir("cluster-key");
  auto key = ClusterKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string path = dir.Sub("cluster.key");
  ASSERT_TRUE(WriteClusterKey(path, *key).ok());
  for (mode_t mode : {0644, 0640, 0604, 0620}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto loaded = LoadClusterKey(path);
    ASSERT_FALSE(loaded.ok()) << std::oct << mode;
    EXPECT_EQ(loaded.status().code(), ErrorCode::kPermissionDenied);
    EXPECT_NE(loaded.status().message().find("chmod 600 " + path), std::string::npos)
        << loaded.status().message();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(LoadClusterKey(path).ok());
}

TEST(ClusterKeyTest, MalformedFilesAreRefusedWithTheirName) {
  TempDir dir("cluster-key");
  auto key = ClusterKey::Generate();
  ASSERT_TRUE(key.ok());
  const std::string good = "secret-key: " + key->secret_z85 + "\n";
  const std::vector<std::string> bad = {
      "",
      "# only a comment\n",
      key->secret_z85 + "\n",  // no label
      "secret-key: tooshort\n",
      good + good,
      good + "something else\n",
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string path = dir.Sub("bad" + std::to_string(i));
    WriteText(path, bad[i]);
    auto loaded = LoadClusterKey(path);
    EXPECT_FALSE(loaded.ok()) << bad[i];
    if (!loaded.ok()) {
      EXPECT_NE(loaded.status().message().find(path), std::string::npos);
    }
  }
  EXPECT_EQ(LoadClusterKey(dir.Sub("missing")).status().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(LoadClusterKey(dir.path()).ok());  // a directory
  // Comments, blank lines and spaces around the key are fine.
  WriteText(dir.Sub("spaced"), "# a comment\n\n  secret-key:   " + key->secret_z85 + "  \n");
  auto spaced = LoadClusterKey(dir.Sub("spaced"));
  ASSERT_TRUE(spaced.ok()) << spaced.status().ToString();
  EXPECT_EQ(spaced->public_z85, key->public_z85);
}

class ChooseClusterKeyTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("SHARDFS_KEY"); }
  void TearDown() override { unsetenv("SHARDFS_KEY"); }
  TempDir dir_{"choose-key"};
};

TEST_F(ChooseClusterKeyTest, InsecureMeansNoKeyAndContradictsAKeyFlag) {
  auto none = ChooseClusterKey("", true, dir_.Sub("default"), true);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->key.has_value());
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("default")));  // not created either
  auto both = ChooseClusterKey(dir_.Sub("k"), true, dir_.Sub("default"), false);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("--insecure"), std::string::npos);
  // An environment set for the whole machine does not stop one --insecure run.
  setenv("SHARDFS_KEY", dir_.Sub("k").c_str(), 1);
  EXPECT_TRUE(ChooseClusterKey("", true, dir_.Sub("default"), false).ok());
}

TEST_F(ChooseClusterKeyTest, FlagThenEnvironmentThenDefault) {
  auto a = ClusterKey::Generate();
  auto b = ClusterKey::Generate();
  auto c = ClusterKey::Generate();
  ASSERT_TRUE(WriteClusterKey(dir_.Sub("a"), *a).ok());
  ASSERT_TRUE(WriteClusterKey(dir_.Sub("b"), *b).ok());
  ASSERT_TRUE(WriteClusterKey(dir_.Sub("c"), *c).ok());
  setenv("SHARDFS_KEY", dir_.Sub("b").c_str(), 1);
  auto flag = ChooseClusterKey(dir_.Sub("a"), false, dir_.Sub("c"), false);
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->key->secret_z85, a->secret_z85);
  EXPECT_EQ(flag->path, dir_.Sub("a"));
  auto env = ChooseClusterKey("", false, dir_.Sub("c"), false);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->key->secret_z85, b->secret_z85);
  unsetenv("SHARDFS_KEY");
  auto def = ChooseClusterKey("", false, dir_.Sub("c"), false);
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->key->secret_z85, c->secret_z85);
  EXPECT_FALSE(def->created);
}

TEST_F(ChooseClusterKeyTest, AMissingDefaultIsMadeOnlyWhereAsked) {
  auto refused = ChooseClusterKey("", false, dir_.Sub("default"), false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(refused.status().message().find("--key"), std::string::npos);
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("default")));

  auto made = ChooseClusterKey("", false, dir_.Sub("default"), true);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_TRUE(made->created);
  EXPECT_EQ(ModeOf(dir_.Sub("default")), 0600u);
  auto again = ChooseClusterKey("", false, dir_.Sub("default"), true);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->key->secret_z85, made->key->secret_z85);

  // A file named with --key is never made up: a typo must not start a new
  // cluster.
  auto named = ChooseClusterKey(dir_.Sub("typo"), false, dir_.Sub("default"), true);
  EXPECT_FALSE(named.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("typo")));
}

}  // namespace
}  // namespace shardfs
