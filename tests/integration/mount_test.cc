// The cluster as an ordinary directory: real daemons, a real FUSE mount, and
// the tools people use on it (cp, tar, git, dd, fio, ...).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/integration/test_cluster.h"

namespace shardfs {
namespace {

// Every FUSE test must run in CI: a machine without /dev/fuse is a failure
// there, and a skip only on a developer's machine.
bool FuseAvailable() {
  return access("/dev/fuse", R_OK | W_OK) == 0;
}
bool InCi() {
  return std::getenv("CI") != nullptr;
}

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FuseAvailable()) {
      if (InCi()) FAIL() << "/dev/fuse is not usable";
      GTEST_SKIP() << "/dev/fuse is not usable";
    }
    cluster_ = std::make_unique<TestCluster>(ClusterOptions());
    Status st = cluster_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString() << cluster_->Logs();
    mount_ = std::make_unique<TestMount>(*cluster_, cluster_->dir() + "/mnt", MountArgs());
    st = mount_->Mount();
    ASSERT_TRUE(st.ok()) << st.ToString();
    m_ = mount_->path();
  }
  // Flags added to the mount's command line.
  virtual std::vector<std::string> MountArgs() { return {}; }
  void TearDown() override {
    if (HasFailure() && cluster_) {
      std::printf("%s\n--- mount\n%s\n", cluster_->Logs().c_str(),
                  mount_ ? mount_->Log().c_str() : "");
    }
    mount_.reset();
    cluster_.reset();
  }
  virtual TestCluster::Options ClusterOptions() { return TestCluster::Options(); }

  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<TestMount> mount_;
  std::string m_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (size_t i = n - n % 8; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

// The same shell script run in a local directory and in the mount must leave
// the same tree behind: the mount behaves like a local file system for the
// everyday tools.
TEST_F(MountTest, EverydayToolsBehaveAsOnALocalDisk) {
  TempDir local("shardfs-local");
  const std::string script = R"SH(
set -e
echo hello > a.txt
echo world >> a.txt
cat a.txt > b.txt
mkdir -p dir/sub/deeper
cp a.txt dir/sub/deeper/c.txt
mv b.txt dir/moved.txt
ln dir/moved.txt hard.txt
ln -s dir/moved.txt soft.txt
cat soft.txt >> a.txt
chmod 640 a.txt
chmod 755 dir/sub
touch -d '2001-02-03 04:05:06' dir/moved.txt
head -c 3000000 /dev/zero | tr '\0' 'x' > big.txt
truncate -s 1000 big.txt
truncate -s 9000000 big.txt
seq 100000 | head -c 10000 > patch.bin
cp patch.bin dd.bin
dd if=/dev/zero of=dd.bin bs=1k seek=5000 count=3 conv=notrunc 2>/dev/null
dd if=patch.bin of=dd.bin bs=512 seek=3 count=2 conv=notrunc 2>/dev/null
for i in $(seq 1 50); do echo "line $i" >> appended.txt; done
mkdir tarsrc && cp a.txt dd.bin tarsrc/ && tar cf t.tar tarsrc && mkdir untar && tar xf t.tar -C untar && rm t.tar
rm -r tarsrc
mkdir gone && touch gone/x gone/y && rm -r gone
git init -q repo
cd repo
cp ../a.txt ../dd.bin .
git add a.txt dd.bin
git -c user.name=t -c user.email=t@t commit -qm first
echo change >> a.txt
git -c user.name=t -c user.email=t@t commit -qam second
git log --format=%s > ../gitlog.txt
git fsck >/dev/null 2>&1
cd ..
rm -rf repo/.git/hooks
ls -l --time-style=+ dir hard.txt soft.txt | awk '{print $1, $2, $5, $6, $7}' > listing.txt
)SH";
  WriteFile(local.path() + "/../script-" + std::to_string(getpid()) + ".sh", script);
  const std::string script_path = local.path() + "/../script-" + std::to_string(getpid()) + ".sh";
  std::string out;
  ASSERT_EQ(Sh("cd " + local.path() + " && bash " + script_path, &out), 0) << out;
  ASSERT_EQ(Sh("cd " + m_ + " && bash " + script_path, &out), 0) << out;
  std::remove(script_path.c_str());
  // .git holds index files with inode numbers and times: compare the rest.
  EXPECT_EQ(Sh("diff -r --no-dereference -x .git " + local.path() + " " + m_, &out), 0) << out;
  EXPECT_EQ(ReadFile(m_ + "/gitlog.txt"), "second\nfirst\n");
  EXPECT_EQ(ReadFile(m_ + "/listing.txt"), ReadFile(local.path() + "/listing.txt"));
  struct stat st;
  ASSERT_EQ(stat((m_ + "/dir/moved.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_EQ(st.st_mtim.tv_sec, 981173106);  // 2001-02-03 04:05:06 UTC
  ASSERT_EQ(stat((m_ + "/big.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 9000000);
  ASSERT_EQ(stat((m_ + "/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(MountTest, CopyATreeOf2000FilesInAndOut) {
  TempDir src("shardfs-tree");
  // Mostly small files, some across shard boundaries, a few large: 0 B to 50 MiB.
  std::mt19937 rng(42);
  size_t total = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string dir = src.path() + "/d" + std::to_string(i % 40);
    ::mkdir(dir.c_str(), 0755);
    size_t size;
    if (i < 4) {
      size = std::vector<size_t>{50u << 20, 20u << 20, (8u << 20) + 1, 4u << 20}[i];
    } else if (i % 100 == 0) {
      size = rng() % (6u << 20);
    } else if (i % 10 == 0) {
      size = 0;
    } else {
      size = rng() % 20000;
    }
    total += size;
    WriteFile(dir + "/f" + std::to_string(i), RandomBytes(size, static_cast<uint32_t>(i)));
  }
  std::string out;
  ASSERT_EQ(Sh("cp -r " + src.path() + " " + m_ + "/tree", &out), 0) << out;
  TempDir back("shardfs-back");
  ASSERT_EQ(Sh("cp -r " + m_ + "/tree " + back.path() + "/tree", &out), 0) << out;
  EXPECT_EQ(Sh("diff -r " + src.path() + " " + back.path() + "/tree", &out), 0) << out;
  EXPECT_EQ(Sh("diff -r " + src.path() + " " + m_ + "/tree", &out), 0) << out;
  ASSERT_EQ(Sh("find " + m_ + "/tree -type f | wc -l", &out), 0);
  EXPECT_EQ(std::stoi(out), 2000);
  EXPECT_GT(total, 80u << 20);
}

TEST_F(MountTest, FioVerifiesSequentialAndRandomWrites) {
  std::string out;
  ASSERT_EQ(Sh("fio --name=seq --directory=" + m_ +
                   " --size=32m --bs=1m --rw=write --verify=crc32c --do_verify=1"
                   " --ioengine=psync --end_fsync=1",
               &out),
            0)
      << out;
  EXPECT_NE(out.find("err= 0"), std::string::npos) << out;
  ASSERT_EQ(Sh("fio --name=rand --directory=" + m_ +
                   " --size=8m --bs=4k --rw=randwrite --verify=crc32c --do_verify=1"
                   " --ioengine=psync --fsync=64 --randseed=7",
               &out),
            0)
      << out;
  EXPECT_NE(out.find("err= 0"), std::string::npos) << out;
}

TEST_F(MountTest, SparseFileBeyond4GiBStoresOnlyWhatWasWritten) {
  const std::string path = m_ + "/sparse";
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const off_t far = 5ll << 30;
  ASSERT_EQ(pwrite(fd, "end", 3, far), 3);
  ASSERT_EQ(pwrite(fd, "start", 5, 0), 5);
  ASSERT_EQ(close(fd), 0);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, far + 3);
  fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[16];
  ASSERT_EQ(pread(fd, buf, 16, far - 8), 11);
  EXPECT_EQ(std::string(buf, 11), std::string(8, '\0') + "end");
  ASSERT_EQ(pread(fd, buf, 8, 3ll << 30), 8);
  EXPECT_EQ(std::string(buf, 8), std::string(8, '\0'));
  ASSERT_EQ(pread(fd, buf, 5, 0), 5);
  EXPECT_EQ(std::string(buf, 5), "start");
  close(fd);
  // Two shards hold data; the 5 GiB between them store nothing.
  std::string out;
  ASSERT_EQ(Sh(cluster_->Cli("--json info /sparse"), &out), 0) << out;
  size_t shards = 0;
  for (size_t p = 0; (p = out.find("\"generation\"", p)) != std::string::npos; ++p) ++shards;
  EXPECT_EQ(shards, 2u) << out;
  EXPECT_NE(out.find("\"stored\": 4096"), std::string::npos) << out;  // shard 0: "start"
  // And says so: st_blocks counts what the nodes store of the two shards,
  // not 5 GiB, so du, cp --sparse and tar --sparse see the holes. Shard 0
  // was written when the file already reached past it, so it is 4 MiB long,
  // but all of it after "start" is zeros, which the nodes keep as holes:
  // one 4 KiB page; the last shard holds its 3 bytes (one page as well).
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 2 * 4096 / 512);
  ASSERT_EQ(Sh("du -B1 " + path, &out), 0) << out;
  EXPECT_EQ(out.substr(0, out.find_first_of(" \t")), std::to_string(2 * 4096)) << out;
  // The nodes keep the zeros after "start" as holes: the replicas of both
  // shards take a few pages each, not 4 MiB.
  uint64_t node_bytes = 0;
  for (int i = 0; access(cluster_->NodeDir(i).c_str(), F_OK) == 0; ++i) {
    ASSERT_EQ(Sh("du -sB1 " + cluster_->NodeDir(i) + "/shards", &out), 0) << out;
    node_bytes += std::stoull(out);
  }
  EXPECT_GT(node_bytes, 0u);
  EXPECT_LT(node_bytes, 1u << 20);

  // A file without holes counts all of its size.
  const std::string full = m_ + "/full";
  fd = open(full.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  const std::string mib(1 << 20, 'x');
  for (int i = 0; i < 5; ++i) ASSERT_EQ(write(fd, mib.data(), mib.size()), ssize_t(mib.size()));
  ASSERT_EQ(write(fd, "tail", 4), 4);
  ASSERT_EQ(close(fd), 0);
  ASSERT_EQ(stat(full.c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, (5 << 20) / 512 + 8);
}

// SEEK_DATA and SEEK_HOLE find where a file holds data, so cp, tar and
// rsync skip a sparse file's holes instead of reading zeros. While the
// writes are buffered here a written shard is all data; once committed,
// the pages of zeros the nodes keep as holes are holes too.
TEST_F(MountTest, SeekDataAndSeekHoleFindTheHoles) {
  const std::string path = m_ + "/holes";
  const off_t shard = 4 << 20;
  const off_t end = 3 * shard + 6;
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "a", 1, 10), 1);
  ASSERT_EQ(pwrite(fd, "b", 1, end - 1), 1);
  // `data_end`: where the data around "a" ends.
  auto check = [&](int f, off_t data_end) {
    EXPECT_EQ(lseek(f, 0, SEEK_DATA), 0);
    EXPECT_EQ(lseek(f, 7, SEEK_DATA), 7);
    EXPECT_EQ(lseek(f, 0, SEEK_HOLE), data_end);
    EXPECT_EQ(lseek(f, data_end, SEEK_DATA), 3 * shard);
    EXPECT_EQ(lseek(f, shard + 1, SEEK_HOLE), shard + 1);
    EXPECT_EQ(lseek(f, shard, SEEK_DATA), 3 * shard);
    EXPECT_EQ(lseek(f, 3 * shard + 2, SEEK_DATA), 3 * shard + 2);
    EXPECT_EQ(lseek(f, 3 * shard, SEEK_HOLE), end);  // the end of the file counts as one
    errno = 0;
    EXPECT_EQ(lseek(f, end, SEEK_DATA), -1);
    EXPECT_EQ(errno, ENXIO);
    errno = 0;
    EXPECT_EQ(lseek(f, end, SEEK_HOLE), -1);
    EXPECT_EQ(errno, ENXIO);
  };
  {
    SCOPED_TRACE("buffered");
    check(fd, shard);
  }
  ASSERT_EQ(close(fd), 0);
  fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  {
    SCOPED_TRACE("committed");
    check(fd, 4096);
  }
  close(fd);

  // Grown by truncate: the new tail is a hole with no data after it.
  ASSERT_EQ(truncate(path.c_str(), 10 * shard), 0);
  fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(lseek(fd, 3 * shard, SEEK_HOLE), end);
  EXPECT_EQ(lseek(fd, 9 * shard, SEEK_HOLE), 9 * shard);
  errno = 0;
  EXPECT_EQ(lseek(fd, end, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  close(fd);

  // Cut short inside a shard with holes (same object, shorter length): the
  // data past the new end is gone from the answers at once.
  const std::string cut = m_ + "/cut";
  fd = open(cut.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "a", 1, 10), 1);
  ASSERT_EQ(pwrite(fd, "z", 1, 3 << 20), 1);
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  fd = open(cut.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(lseek(fd, 5000, SEEK_DATA), 3 << 20);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  errno = 0;
  EXPECT_EQ(lseek(fd, 5000, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 4096);
  close(fd);

  // cp and tar find the holes and leave them out.
  const std::string local = cluster_->dir() + "/holes.copy";
  std::string out;
  ASSERT_EQ(Sh("cp " + path + " " + local + " && du -B1 " + local, &out), 0) << out;
  EXPECT_LT(std::stoull(out), 1u << 20) << out;
  ASSERT_EQ(Sh("cmp " + path + " " + local, &out), 0) << out;
  const std::string tar = cluster_->dir() + "/holes.tar";
  ASSERT_EQ(Sh("tar -cSf " + tar + " -C " + m_ + " holes && stat -c %s " + tar, &out), 0) << out;
  EXPECT_LT(std::stoull(out), 1u << 20) << out;
}

TEST_F(MountTest, UnlinkedOpenFileStaysReadable) {
  const std::string path = m_ + "/doomed";
  const std::string data = RandomBytes(5 << 20, 9);
  WriteFile(path, data);
  int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_NE(access(path.c_str(), F_OK), 0);
  std::string back(data.size(), '\0');
  ASSERT_EQ(pread(fd, back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_TRUE(back == data);
  close(fd);
}

TEST_F(MountTest, SharedWritableMmap) {
  const std::string path = m_ + "/mapped";
  WriteFile(path, std::string(3 << 20, 'a'));
  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, 3 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memcpy(static_cast<char*>(p) + 1000, "mapped!", 7);
  ASSERT_EQ(msync(p, 3 << 20, MS_SYNC), 0);
  munmap(p, 3 << 20);
  close(fd);
  std::string back = ReadFile(path);
  ASSERT_EQ(back.size(), 3u << 20);
  EXPECT_EQ(back.substr(995, 15), "aaaaamapped!aaa");
}

TEST_F(MountTest, XattrsAndStatfs) {
  const std::string path = m_ + "/x";
  WriteFile(path, "x");
  ASSERT_EQ(setxattr(path.c_str(), "user.color", "blue", 4, XATTR_CREATE), 0);
  EXPECT_EQ(setxattr(path.c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(setxattr(path.c_str(), "user.size", "1", 1, XATTR_REPLACE), -1);
  EXPECT_EQ(errno, ENODATA);
  char buf[64];
  ASSERT_EQ(getxattr(path.c_str(), "user.color", buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "blue");
  EXPECT_EQ(getxattr(path.c_str(), "user.color", buf, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  ASSERT_GT(listxattr(path.c_str(), buf, sizeof(buf)), 0);
  EXPECT_EQ(std::string(buf), "user.color");
  ASSERT_EQ(removexattr(path.c_str(), "user.color"), 0);
  EXPECT_EQ(getxattr(path.c_str(), "user.color", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);

  struct statvfs vfs;
  ASSERT_EQ(statvfs(m_.c_str(), &vfs), 0);
  EXPECT_GT(vfs.f_blocks, 0u);
  EXPECT_EQ(vfs.f_namemax, 255u);
}

TEST_F(MountTest, PosixErrorsAndPermissions) {
  EXPECT_EQ(mkdir((m_ + "/d").c_str(), 0755), 0);
  EXPECT_EQ(mkdir((m_ + "/d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  WriteFile(m_ + "/d/f", "f");
  EXPECT_EQ(rmdir((m_ + "/d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(open((m_ + "/d/f/x").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOTDIR);
  EXPECT_EQ(open((m_ + "/nope").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(open((m_ + "/" + std::string(256, 'n')).c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(open((m_ + "/d/f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(rename((m_ + "/d").c_str(), (m_ + "/d/sub").c_str()), -1);
  EXPECT_EQ(errno, EINVAL);
  // O_TRUNC and O_APPEND.
  int fd = open((m_ + "/d/f").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "12345", 5), 5);
  close(fd);
  fd = open((m_ + "/d/f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(write(fd, "67", 2), 2);
  close(fd);
  EXPECT_EQ(ReadFile(m_ + "/d/f"), "1234567");
  // The kernel checks modes for us (default_permissions): nobody may not
  // read a 0600 file of root's. Other users need a mount with allow_other,
  // and the test's directory must let them in.
  ASSERT_EQ(chmod(cluster_->dir().c_str(), 0755), 0);
  TestMount shared(*cluster_, cluster_->dir() + "/mnt-shared", {"-o", "allow_other"});
  ASSERT_TRUE(shared.Mount().ok());
  const std::string& m_ = shared.path();
  ASSERT_EQ(chmod((m_ + "/d/f").c_str(), 0600), 0);
  std::string out;
  EXPECT_NE(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups cat " + m_ + "/d/f", &out), 0);
  EXPECT_NE(out.find("Permission denied"), std::string::npos) << out;
  ASSERT_EQ(chmod((m_ + "/d/f").c_str(), 0644), 0);
  EXPECT_EQ(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups cat " + m_ + "/d/f", &out), 0)
      << out;
  // A file made by another user belongs to that user.
  ASSERT_EQ(chmod(m_.c_str(), 0777), 0);
  ASSERT_EQ(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups touch " + m_ + "/theirs", &out),
            0)
      << out;
  struct stat st;
  ASSERT_EQ(stat((m_ + "/theirs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
}

// Close-to-open between two mounts of one cluster.
TEST_F(MountTest, SecondMountSeesClosedFilesAndRenames) {
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  const std::string data = RandomBytes(9 << 20, 3);
  WriteFile(m_ + "/shared.bin", data);
  EXPECT_TRUE(ReadFile(other.path() + "/shared.bin") == data);
  // A rewrite on the second mount is seen by a new open on the first.
  const std::string data2 = RandomBytes(1 << 20, 4);
  WriteFile(other.path() + "/shared.bin", data2);
  EXPECT_TRUE(ReadFile(m_ + "/shared.bin") == data2);
  ASSERT_EQ(rename((m_ + "/shared.bin").c_str(), (m_ + "/renamed.bin").c_str()), 0);
  EXPECT_TRUE(WaitUntil([&] { return access((other.path() + "/renamed.bin").c_str(), F_OK) == 0; },
                        std::chrono::seconds(3)));
  EXPECT_TRUE(WaitUntil([&] { return access((other.path() + "/shared.bin").c_str(), F_OK) != 0; },
                        std::chrono::seconds(3)));
}

TEST_F(MountTest, ReadOnlyMountRefusesWrites) {
  WriteFile(m_ + "/ro", "data");
  TestMount ro(*cluster_, cluster_->dir() + "/mnt-ro", {"-o", "ro"});
  ASSERT_TRUE(ro.Mount().ok());
  EXPECT_EQ(ReadFile(ro.path() + "/ro"), "data");
  EXPECT_EQ(open((ro.path() + "/new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
}

// What mount(8) and an fstab line run: the helper with SOURCE DIR -o OPTS;
// it returns once the mount is ready and the daemon runs in the background.
TEST_F(MountTest, MountHelperMountsInTheBackground) {
  const std::string dir = cluster_->dir() + "/mnt-helper";
  ::mkdir(dir.c_str(), 0755);
  std::string out;
  ASSERT_EQ(Sh(BuildPath("fuse/mount.shardfs") + " " + cluster_->registry_endpoint() + " " + dir +
                   " -o rw,_netdev,attr_timeout=2,key=" + cluster_->key_path(),
               &out),
            0)
      << out;
  EXPECT_TRUE(IsMounted(dir));
  WriteFile(dir + "/via-helper", "helper");
  EXPECT_EQ(ReadFile(m_ + "/via-helper"), "helper");
  EXPECT_EQ(Sh("fusermount3 -u " + dir, &out), 0) << out;
  EXPECT_FALSE(IsMounted(dir));
  // An unknown option is refused with a message, not ignored.
  EXPECT_NE(Sh(BuildPath("fuse/mount.shardfs") + " " + cluster_->registry_endpoint() + " " + dir +
                   " -o bogus,key=" + cluster_->key_path(),
               &out),
            0);
  EXPECT_NE(out.find("unknown mount option"), std::string::npos) << out;
  EXPECT_FALSE(IsMounted(dir));
}

// Whether a running process has `text` in its command line.
bool ProcessMentions(const std::string& text) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos) return true;
  }
  return false;
}

// mount(8) itself: `mount -t fuse.shardfs` and an fstab line find the helper
// as /sbin/mount.fuse.shardfs, as installed. The test puts it there in a
// private mount namespace (a directory bound over /sbin, seen by nothing
// else on the machine), so it needs root; the mounts made there are
// unmounted by the script whatever happens, which ends their daemons.
TEST_F(MountTest, MountTypeFuseShardfsAndFstabUseTheHelper) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  const std::string d = cluster_->dir();
  const std::string opts = "attr_timeout=2,key=" + cluster_->key_path();
  WriteFile(d + "/fstab", cluster_->registry_endpoint() + " " + d +
                              "/mnt-fstab fuse.shardfs _netdev," + opts + " 0 0\n");
  // $1 the test's directory, $2 the registry, $3 the options, $4 the helper.
  WriteFile(d + "/mount-t.sh", R"SH(
set -e
trap 'umount "$1/mnt-type" 2>/dev/null || true; umount "$1/mnt-fstab" 2>/dev/null || true' EXIT
mkdir -p "$1/sbin" "$1/mnt-type" "$1/mnt-fstab"
ln -s "$4" "$1/sbin/mount.fuse.shardfs"
mount --bind "$1/sbin" /sbin
mount -t fuse.shardfs -o "$3" "$2" "$1/mnt-type"
grep -q " $1/mnt-type fuse.shardfs " /proc/self/mounts
echo type > "$1/mnt-type/via-type"
umount "$1/mnt-type"
mount -T "$1/fstab" "$1/mnt-fstab"
grep -q " $1/mnt-fstab fuse.shardfs " /proc/self/mounts
cat "$1/mnt-fstab/via-type"
echo fstab > "$1/mnt-fstab/via-fstab"
umount "$1/mnt-fstab"
)SH");
  std::string out;
  ASSERT_EQ(
      Sh("unshare --mount --propagation private sh -x " + d + "/mount-t.sh " + d + " " +
             cluster_->registry_endpoint() + " " + opts + " " + BuildPath("fuse/mount.shardfs"),
         &out),
      0)
      << out;
  // What those mounts wrote is in the cluster, seen through the test's mount.
  EXPECT_EQ(ReadFile(m_ + "/via-type"), "type\n");
  EXPECT_EQ(ReadFile(m_ + "/via-fstab"), "fstab\n");
  // Nothing of it is left: not the bind over /sbin, not the mounts, and
  // their daemons ended with the unmounts.
  struct stat sbin = {}, ours = {};
  ASSERT_EQ(stat("/sbin/.", &sbin), 0);
  ASSERT_EQ(stat((d + "/sbin").c_str(), &ours), 0);
  EXPECT_FALSE(sbin.st_dev == ours.st_dev && sbin.st_ino == ours.st_ino);
  EXPECT_FALSE(IsMounted(d + "/mnt-type"));
  EXPECT_FALSE(IsMounted(d + "/mnt-fstab"));
  EXPECT_TRUE(WaitUntil([&] { return !ProcessMentions(d + "/mnt-"); }, std::chrono::seconds(10)));
}

// The replication goal as a virtual xattr: settable, readable, validated,
// not listed (so cp -a does not carry it elsewhere).
TEST_F(MountTest, ReplicationGoalIsAVirtualXattr) {
  const std::string f = m_ + "/goal";
  WriteFile(f, "x");
  const char* name = "user.shardfs.replicas";
  ASSERT_EQ(setxattr(f.c_str(), name, "2", 1, 0), 0) << strerror(errno);
  char buf[16] = {};
  ssize_t n = getxattr(f.c_str(), name, buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "2");
  std::string info;
  ASSERT_EQ(Sh(cluster_->Cli("--json info /goal"), &info), 0);
  EXPECT_NE(info.find("\"replication_goal\": 2"), std::string::npos) << info;
  for (const char* bad : {"0", "17", "abc", ""}) {
    EXPECT_EQ(setxattr(f.c_str(), name, bad, strlen(bad), 0), -1) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
  char names[256] = {};
  n = listxattr(f.c_str(), names, sizeof(names));
  EXPECT_EQ(std::string(names, n > 0 ? static_cast<size_t>(n) : 0).find("shardfs"),
            std::string::npos);
}

// fsync makes durable what was written before it, also the shards that were
// stored (without sync) as they filled up.
class MountSyncTest : public MountTest {
 protected:
  TestCluster::Options ClusterOptions() override {
    TestCluster::Options o;
    o.node_args = {"--log-level", "debug"};
    return o;
  }
  // Shards the nodes made durable on request, from their logs.
  size_t SyncedShards() {
    size_t total = 0;
    for (int i = 0; i < 3; ++i) {
      const std::string log = cluster_->node(i).ReadLog();
      const std::string marker = "fsync: made ";
      for (size_t pos = 0; (pos = log.find(marker, pos)) != std::string::npos; ++pos) {
        total += std::strtoul(log.c_str() + pos + marker.size(), nullptr, 10);
      }
    }
    return total;
  }
};

TEST_F(MountSyncTest, FsyncMakesShardsStoredEarlierDurable) {
  const std::string f = m_ + "/big";
  int fd = open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  // Three full 4 MiB shards (stored as they fill, without sync) and a bit.
  const std::string data = RandomBytes((12u << 20) + 100, 77);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(SyncedShards(), 0u);
  ASSERT_EQ(fsync(fd), 0) << strerror(errno);
  // R=3: each of the three full shards on three nodes. (The tail shard is
  // written with sync at the fsync itself.)
  EXPECT_EQ(SyncedShards(), 9u);
  // Nothing new to make durable: a second fsync asks nobody.
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_EQ(SyncedShards(), 9u);
  close(fd);
  EXPECT_EQ(ReadFile(f), data);
}

// POSIX: fsync on any descriptor makes durable what was written through
// the ones closed before it (`cp f mnt/; sync mnt/f`, an editor and a
// separate process that syncs), not only what this descriptor wrote.
TEST_F(MountSyncTest, FsyncOnANewDescriptorSyncsWhatClosedOnesWrote) {
  const std::string f = m_ + "/closed";
  // Three full shards and a tail, all stored without sync (the tail at
  // close): 4 shards on 3 nodes.
  const std::string data = RandomBytes((12u << 20) + 100, 78);
  WriteFile(f, data);
  EXPECT_EQ(SyncedShards(), 0u);
  int fd = open(f.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fsync(fd), 0) << strerror(errno);
  EXPECT_EQ(SyncedShards(), 12u);
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_EQ(SyncedShards(), 12u);
  close(fd);
  // The same through the tools: cp, then sync(1) on the file (a new
  // descriptor and fsync).
  std::string out;
  ASSERT_EQ(Sh("cp " + f + " " + m_ + "/copy && sync " + m_ + "/copy", &out), 0) << out;
  EXPECT_EQ(SyncedShards(), 24u);
  EXPECT_EQ(ReadFile(m_ + "/copy"), data);
}

// Shards nobody fsyncs are made durable in the background after
// `sync_after` seconds, and at unmount, so the mount's list stays bounded.
TEST_F(MountSyncTest, UnsyncedShardsAreMadeDurableInTheBackgroundAndAtUnmount) {
  TestMount soon(*cluster_, cluster_->dir() + "/mnt-soon", {"-o", "sync_after=0.5"});
  ASSERT_TRUE(soon.Mount().ok());
  const std::string data = RandomBytes((8u << 20) + 100, 79);
  WriteFile(soon.path() + "/later", data);  // 3 shards on 3 nodes
  EXPECT_TRUE(WaitUntil([&] { return SyncedShards() == 9u; }, std::chrono::seconds(30)))
      << SyncedShards();
  // The default (30 s) leaves them to the unmount.
  WriteFile(m_ + "/at-unmount", data);
  EXPECT_EQ(SyncedShards(), 9u);
  mount_->Unmount();
  EXPECT_EQ(SyncedShards(), 18u);
  soon.Unmount();
  EXPECT_EQ(SyncedShards(), 18u);
}

// The mount's log at debug level, for the tests below that count what the
// mount asked of the cluster.
class MountDebugLogTest : public MountTest {
 protected:
  std::vector<std::string> MountArgs() override { return {"--log-level", "debug"}; }
  static size_t Count(const std::string& log, const std::string& what) {
    size_t n = 0;
    for (size_t pos = 0; (pos = log.find(what, pos)) != std::string::npos; pos += what.size()) ++n;
    return n;
  }
};

// O_DIRECT reads go to the mount every time, past the kernel's page cache.
class DirectReader {
 public:
  explicit DirectReader(const std::string& path) : fd_(open(path.c_str(), O_RDONLY | O_DIRECT)) {
    buf_ = static_cast<char*>(std::aligned_alloc(4096, kMax));
  }
  ~DirectReader() {
    if (fd_ >= 0) close(fd_);
    std::free(buf_);
  }
  bool ok() const { return fd_ >= 0 && buf_ != nullptr; }
  // `length` a multiple of 4096, at most kMax.
  std::string Read(off_t offset, size_t length) {
    ssize_t n = pread(fd_, buf_, length, offset);
    return n < 0 ? std::string("error: ") + strerror(errno)
                 : std::string(buf_, static_cast<size_t>(n));
  }
  static constexpr size_t kMax = 1 << 20;

 private:
  int fd_;
  char* buf_;
};

// The kernel asks for security.capability before every write; the mount
// answers from what it knows instead of asking the registry each time, and
// still sees its own xattr changes at once and other mounts' within the
// attribute timeout.
TEST_F(MountDebugLogTest, AbsentXattrsAreAnsweredWithoutTheRegistry) {
  const std::string path = m_ + "/caps";
  const std::string ask = "getxattr security.capability of inode";
  // Made by another mount, so this one knows nothing of its xattrs.
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  WriteFile(other.path() + "/caps", "x");
  int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::string block(4096, 'w');
  for (int i = 0; i < 64; ++i) {
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), i * 4096), 4096);
  }
  ASSERT_EQ(close(fd), 0);
  // One question, then one per attribute timeout (1 s) at most; 64
  // without the cache.
  EXPECT_GE(Count(mount_->Log(), ask), 1u) << mount_->Log();
  EXPECT_LE(Count(mount_->Log(), ask), 3u) << mount_->Log();
  // A file this mount creates has no xattrs: not even one question.
  const size_t before = Count(mount_->Log(), ask);
  fd = open((m_ + "/fresh").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 16; ++i) ASSERT_EQ(write(fd, block.data(), block.size()), 4096);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Count(mount_->Log(), ask), before);

  // Known absent, then set here: seen at once.
  char buf[64];
  EXPECT_EQ(getxattr(path.c_str(), "user.tag", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_EQ(setxattr(path.c_str(), "user.tag", "one", 3, 0), 0);
  ASSERT_EQ(getxattr(path.c_str(), "user.tag", buf, sizeof(buf)), 3);
  EXPECT_EQ(std::string(buf, 3), "one");
  ASSERT_EQ(removexattr(path.c_str(), "user.tag"), 0);
  EXPECT_EQ(getxattr(path.c_str(), "user.tag", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);
  // Set by another mount: seen once the attribute timeout has passed.
  ASSERT_EQ(setxattr((other.path() + "/caps").c_str(), "user.tag", "two", 3, 0), 0);
  EXPECT_TRUE(WaitUntil([&] { return getxattr(path.c_str(), "user.tag", buf, sizeof(buf)) == 3; },
                        std::chrono::seconds(3)));
  EXPECT_EQ(std::string(buf, 3), "two");
}

// Write-behind: the write that completes a shard does not wait for the
// nodes, and a store that fails in the background is not lost: the next
// write, or else the close, reports it, and its bytes are stored again.
TEST_F(MountTest, FailedBackgroundStoreIsReportedAndNotLost) {
  // Warm up: connections to every node exist, so frozen nodes time out
  // rather than refuse.
  WriteFile(m_ + "/warm", RandomBytes(9 << 20, 1));
  ASSERT_EQ(ReadFile(m_ + "/warm").size(), 9u << 20);
  // No child process may be started while these are open: its copy of the
  // descriptors is closed at its exec or exit, and that close (a FUSE
  // flush) would be told the error instead.
  int at_write = open((m_ + "/at-write").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  int at_close = open((m_ + "/at-close").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(at_write, 0);
  ASSERT_GE(at_close, 0);
  // Two of three nodes frozen: no shard can reach min(2, R) replicas.
  ASSERT_TRUE(cluster_->node(1).Signal(SIGSTOP).ok());
  ASSERT_TRUE(cluster_->node(2).Signal(SIGSTOP).ok());
  const std::string shard1 = RandomBytes(4 << 20, 2);
  const std::string shard2 = RandomBytes(4 << 20, 3);
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(write(at_write, shard1.data(), shard1.size()), static_cast<ssize_t>(shard1.size()));
  ASSERT_EQ(write(at_close, shard2.data(), shard2.size()), static_cast<ssize_t>(shard2.size()));
  // A store to a frozen node takes two 4 s timeouts; the writes did not wait.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  auto count = [](const std::string& log, const std::string& what) {
    size_t n = 0;
    for (size_t p = 0; (p = log.find(what, p)) != std::string::npos; ++p) ++n;
    return n;
  };
  const std::string failed = "in the background failed";
  ASSERT_TRUE(
      WaitUntil([&] { return count(mount_->Log(), failed) >= 2; }, std::chrono::seconds(40)))
      << mount_->Log();
  // The nodes are back: storing again would work now, yet the failure is
  // reported, once.
  ASSERT_TRUE(cluster_->node(1).Signal(SIGCONT).ok());
  ASSERT_TRUE(cluster_->node(2).Signal(SIGCONT).ok());
  // Up again in the registry's map, if it marked them down (read from its
  // log: the CLI would fork).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::string log = cluster_->registry().ReadLog();
        return count(log, " is back") >= count(log, " is down");
      },
      std::chrono::seconds(20)));
  const std::string more(1 << 20, 'm');
  EXPECT_EQ(write(at_write, more.data(), more.size()), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(close(at_write), 0) << strerror(errno);
  EXPECT_EQ(close(at_close), -1);
  EXPECT_EQ(errno, EIO);
  // Nothing a write(2) accepted was lost.
  EXPECT_TRUE(ReadFile(m_ + "/at-write") == shard1);
  EXPECT_TRUE(ReadFile(m_ + "/at-close") == shard2);
}

// While shards are on their way to the nodes, reads of them (past the page
// cache) see what was written.
TEST_F(MountTest, ReadsSeeShardsBeingStored) {
  const std::string path = m_ + "/rw";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  const std::string data = RandomBytes(16 << 20, 5);
  DirectReader reader(path);
  ASSERT_TRUE(reader.ok()) << strerror(errno);
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_EQ(pwrite(fd, data.data() + off, 1 << 20, static_cast<off_t>(off)), 1 << 20);
    // The shard just completed, and the first bytes of the file.
    ASSERT_TRUE(reader.Read(static_cast<off_t>(off), 1 << 20) == data.substr(off, 1 << 20)) << off;
    ASSERT_TRUE(reader.Read(0, 4096) == data.substr(0, 4096)) << off;
  }
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(ReadFile(path) == data);
}

// Read-ahead: a sequential reader has the next shards fetched ahead, a
// random one does not.
TEST_F(MountDebugLogTest, SequentialReadsFetchAheadRandomReadsDoNot) {
  const std::string data = RandomBytes(32 << 20, 6);
  WriteFile(m_ + "/seq", data);
  WriteFile(m_ + "/rand", data);
  const std::string fetched = "for a sequential reader";
  {
    DirectReader reader(m_ + "/seq");
    ASSERT_TRUE(reader.ok()) << strerror(errno);
    for (size_t off = 0; off < data.size(); off += 1 << 20) {
      ASSERT_TRUE(reader.Read(static_cast<off_t>(off), 1 << 20) == data.substr(off, 1 << 20))
          << off;
    }
  }
  const size_t sequential = Count(mount_->Log(), fetched);
  // Shards 1 to 7 of 8 (shard 0 is being read when the pattern shows).
  EXPECT_GE(sequential, 6u) << mount_->Log();
  EXPECT_LE(sequential, 7u) << mount_->Log();
  {
    DirectReader reader(m_ + "/rand");
    ASSERT_TRUE(reader.ok());
    std::mt19937 rng(11);
    for (int i = 0; i < 300; ++i) {
      const off_t off = static_cast<off_t>(rng() % (data.size() / 4096)) * 4096;
      ASSERT_TRUE(reader.Read(off, 4096) == data.substr(static_cast<size_t>(off), 4096)) << off;
    }
  }
  EXPECT_EQ(Count(mount_->Log(), fetched), sequential);
}

// A small file closed here is fetched from a node while the registry
// confirms its table at the next open (RecentShardEntries). Those bytes are
// served only while the table still names the generation they were fetched
// for: after another mount rewrote the file, the reopen reads the new bytes.
TEST_F(MountDebugLogTest, ReopenedSmallFilesAreFetchedDuringTheOpenAndNeverStale) {
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  const std::string path = m_ + "/small";
  const std::string fetched = "while the registry confirms it";
  auto read_direct = [&] {
    DirectReader reader(path);  // opens and closes: one open each
    return reader.ok() ? reader.Read(0, 1 << 20) : std::string("cannot open");
  };
  const std::string v1 = RandomBytes(8192, 21);
  WriteFile(path, v1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(read_direct() == v1) << i;
  // Every one of the three opens fetched: the file was closed here after
  // being written, and after each read.
  EXPECT_EQ(Count(mount_->Log(), fetched), 3u) << mount_->Log();

  // Rewritten elsewhere (same size, and then a different one): the guessed
  // generation is fetched, found old, and not used.
  const std::string v2 = RandomBytes(8192, 22);
  WriteFile(other.path() + "/small", v2);
  EXPECT_TRUE(read_direct() == v2);
  EXPECT_TRUE(read_direct() == v2);
  const std::string v3 = RandomBytes(5000, 23);
  WriteFile(other.path() + "/small", v3);
  EXPECT_TRUE(read_direct() == v3);
  EXPECT_EQ(Count(mount_->Log(), fetched), 6u);

  // Grown past what is remembered: no more guesses, still right.
  const std::string big = RandomBytes(300 << 10, 24);
  WriteFile(other.path() + "/small", big);
  EXPECT_TRUE(read_direct() == big.substr(0, 1 << 20));
  EXPECT_TRUE(read_direct() == big.substr(0, 1 << 20));
  EXPECT_EQ(Count(mount_->Log(), fetched), 7u);

  // Removed elsewhere: the open fails as it should.
  ASSERT_EQ(unlink((other.path() + "/small").c_str()), 0);
  EXPECT_TRUE(WaitUntil([&] { return read_direct() == "cannot open"; }, std::chrono::seconds(4)));
}

// Close-to-open with read-ahead: bytes fetched ahead for one generation of
// a file are never served after another mount rewrote it and this one
// opened it again, even while an older handle keeps the file open here.
TEST_F(MountTest, ReadAheadServesNoStaleBytesAfterARewriteElsewhere) {
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  const std::string path = m_ + "/stale";
  const std::string old_data = RandomBytes(24 << 20, 7);
  WriteFile(path, old_data);
  DirectReader old_reader(path);
  ASSERT_TRUE(old_reader.ok()) << strerror(errno);
  // Half the file, sequentially: the shards after it are fetched ahead.
  for (size_t off = 0; off < (12u << 20); off += 1 << 20) {
    ASSERT_TRUE(old_reader.Read(static_cast<off_t>(off), 1 << 20) == old_data.substr(off, 1 << 20));
  }
  // Same size, new bytes, from the other mount.
  const std::string new_data = RandomBytes(24 << 20, 8);
  WriteFile(other.path() + "/stale", new_data);
  DirectReader reader(path);
  ASSERT_TRUE(reader.ok());
  for (size_t off = 0; off < new_data.size(); off += 1 << 20) {
    ASSERT_TRUE(reader.Read(static_cast<off_t>(off), 1 << 20) == new_data.substr(off, 1 << 20))
        << off;
  }
}

// A missing name is remembered by the kernel for the entry timeout (a
// negative entry): probing it again does not ask the registry, creating it
// here shows at once, creating it on another mount within the timeout.
TEST_F(MountDebugLogTest, MissingNamesAreRememberedForTheEntryTimeout) {
  const std::string ask = "lookup probe in ";
  struct stat st;
  for (int i = 0; i < 50; ++i) ASSERT_NE(lstat((m_ + "/probe").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  // One question, then one per entry timeout (1 s) at most.
  EXPECT_GE(Count(mount_->Log(), ask), 1u) << mount_->Log();
  EXPECT_LE(Count(mount_->Log(), ask), 3u) << mount_->Log();
  // Made here: seen at once.
  WriteFile(m_ + "/probe", "here");
  EXPECT_EQ(ReadFile(m_ + "/probe"), "here");
  ASSERT_EQ(unlink((m_ + "/probe").c_str()), 0);
  ASSERT_NE(lstat((m_ + "/probe").c_str(), &st), 0);
  // Made elsewhere: seen once the entry timeout has passed.
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  ASSERT_NE(lstat((m_ + "/probe2").c_str(), &st), 0);
  WriteFile(other.path() + "/probe2", "there");
  EXPECT_TRUE(
      WaitUntil([&] { return ReadFile(m_ + "/probe2") == "there"; }, std::chrono::seconds(3)));
}

// Makes the kernel forget the dentries it is not using, so the next access
// to each name is a LOOKUP again (as after the entry timeout, but now).
void ForgetDentries() {
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "2\n";
}

size_t RegistryLookupsIn(const std::string& log, const std::string& dir_prefix) {
  size_t n = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("lookup " + dir_prefix) != std::string::npos &&
        line.find("asking the registry") != std::string::npos) {
      ++n;
    }
  }
  return n;
}

// stat of every name in a directory (ls -l, find, rsync, diff -r) asks the
// registry for the listing once, not for each name.
TEST_F(MountDebugLogTest, LookupsInAWalkedDirectoryComeFromOneListing) {
  ASSERT_EQ(mkdir((m_ + "/walk").c_str(), 0755), 0);
  for (int i = 0; i < 100; ++i) WriteFile(m_ + "/walk/f" + std::to_string(i), "x");
  ForgetDentries();
  struct stat st;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(lstat((m_ + "/walk/f" + std::to_string(i)).c_str(), &st), 0) << i;
    EXPECT_EQ(st.st_size, 1);
  }
  for (int i = 0; i < 20; ++i) {  // missing names: answered by the listing too
    ASSERT_NE(lstat((m_ + "/walk/g" + std::to_string(i)).c_str(), &st), 0);
    EXPECT_EQ(errno, ENOENT);
  }
  // Two misses start the listing; a slow machine may list once more when
  // the first listing's second runs out. 120 without the listing.
  EXPECT_LE(RegistryLookupsIn(mount_->Log(), "f"), 6u) << mount_->Log();
  EXPECT_LE(RegistryLookupsIn(mount_->Log(), "g"), 3u) << mount_->Log();
}

// ls -l asks for security.selinux and the POSIX ACL of every name; the
// directory listing says which names have xattrs at all, so a mount that
// knows nothing of these files answers those from it.
TEST_F(MountDebugLogTest, ListingSaysWhichFilesHaveNoXattrs) {
  ASSERT_EQ(mkdir((m_ + "/xl").c_str(), 0755), 0);
  for (int i = 0; i < 50; ++i) WriteFile(m_ + "/xl/f" + std::to_string(i), "x");
  ASSERT_EQ(setxattr((m_ + "/xl/f7").c_str(), "user.tag", "v", 1, 0), 0);
  TestMount other(*cluster_, cluster_->dir() + "/mnt2", {"--log-level", "debug"});
  ASSERT_TRUE(other.Mount().ok());
  const std::string d = other.path() + "/xl";
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(d)) {
    names.push_back(e.path().filename());
  }
  ASSERT_EQ(names.size(), 50u);
  char buf[64];
  for (const auto& n : names) {
    const std::string path = d + "/" + n;
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    EXPECT_EQ(lgetxattr(path.c_str(), "security.selinux", buf, sizeof(buf)), -1);
    EXPECT_EQ(errno, ENODATA);
    EXPECT_EQ(lgetxattr(path.c_str(), "system.posix_acl_access", buf, sizeof(buf)), -1);
  }
  ASSERT_EQ(lgetxattr((d + "/f7").c_str(), "user.tag", buf, sizeof(buf)), 1);
  EXPECT_EQ(buf[0], 'v');
  // Only f7's questions go to the registry; 100 without the listing's flag.
  EXPECT_LE(Count(other.Log(), "asking the registry"), 6u) << other.Log();
  EXPECT_GE(Count(other.Log(), "getxattr user.tag of inode"), 1u) << other.Log();
}

// With long timeouts a listing answers for long, so anything this mount
// changes must show in it at once.
class MountLongTimeoutTest : public MountDebugLogTest {
 protected:
  std::vector<std::string> MountArgs() override {
    return {"--log-level", "debug", "-o", "entry_timeout=60,attr_timeout=60"};
  }
};

TEST_F(MountLongTimeoutTest, ThisMountsChangesShowThroughTheListingAtOnce) {
  const std::string d = m_ + "/walk";
  ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  // 200 names: the listing is asked for again only after 2 + 200/64 names
  // it cannot answer, so each check below is answered by it while it can.
  for (int i = 0; i < 200; ++i) WriteFile(d + "/f" + std::to_string(i), "x");
  ForgetDentries();
  struct stat st;
  for (int i = 0; i < 200; ++i) ASSERT_EQ(lstat((d + "/f" + std::to_string(i)).c_str(), &st), 0);
  ASSERT_LE(RegistryLookupsIn(mount_->Log(), "f"), 6u) << mount_->Log();  // the listing is in use

  WriteFile(d + "/f0", "longer now");                              // size
  ASSERT_EQ(unlink((d + "/f1").c_str()), 0);                       // removed
  ASSERT_EQ(rename((d + "/f2").c_str(), (d + "/g2").c_str()), 0);  // renamed
  ASSERT_EQ(chmod((d + "/f3").c_str(), 0600), 0);                  // mode
  ASSERT_EQ(link((d + "/f4").c_str(), (d + "/h4").c_str()), 0);    // nlink
  WriteFile(d + "/f200", "new");                                   // created
  ASSERT_EQ(truncate((d + "/f5").c_str(), 1000), 0);               // size again
  ForgetDentries();

  ASSERT_EQ(lstat((d + "/f3").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(lstat((d + "/f4").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(lstat((d + "/f5").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1000);
  ASSERT_EQ(lstat((d + "/f0").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 10);
  ASSERT_EQ(lstat((d + "/f200").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 3);
  EXPECT_NE(lstat((d + "/f1").c_str(), &st), 0);
  EXPECT_NE(lstat((d + "/f2").c_str(), &st), 0);
  ASSERT_EQ(lstat((d + "/g2").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1);
  ASSERT_EQ(lstat((d + "/f6").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1);
  EXPECT_EQ(ReadFile(d + "/f0"), "longer now");
}

// Another mount's changes show once the entry timeout has passed, even in
// a directory this mount keeps walking.
TEST_F(MountDebugLogTest, OtherMountsChangesShowThroughTheListingWithinTheTimeout) {
  const std::string d = m_ + "/walk";
  ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  for (int i = 0; i < 10; ++i) WriteFile(d + "/f" + std::to_string(i), "x");
  TestMount other(*cluster_, cluster_->dir() + "/mnt2");
  ASSERT_TRUE(other.Mount().ok());
  const std::string od = other.path() + "/walk";
  struct stat st;
  auto walk = [&] {
    for (int i = 0; i < 10; ++i) (void)lstat((d + "/f" + std::to_string(i)).c_str(), &st);
  };
  ForgetDentries();
  walk();
  WriteFile(od + "/new", "made there");
  WriteFile(od + "/f0", "grown there");
  ASSERT_EQ(unlink((od + "/f1").c_str()), 0);
  EXPECT_TRUE(WaitUntil(
      [&] {
        walk();
        return lstat((d + "/new").c_str(), &st) == 0;
      },
      std::chrono::seconds(4)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        walk();
        return lstat((d + "/f0").c_str(), &st) == 0 && st.st_size == 11;
      },
      std::chrono::seconds(4)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        walk();
        return lstat((d + "/f1").c_str(), &st) != 0;
      },
      std::chrono::seconds(4)));
  EXPECT_EQ(ReadFile(d + "/new"), "made there");
}

}  // namespace
}  // namespace shardfs
