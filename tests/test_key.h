// TestKey: a fresh cluster key for one test's cluster.
//
// Written (mode 0600) to a path in the test's own TempDir, so parallel tests
// never share a key, and handed to the daemons the test starts with
// `--key PATH` (Flag()). Unless told otherwise it is also the key of the
// test process itself while it lives (SetProcessClusterKey), so the test's
// own clients, raw sockets (after SecureClientSocket) and in-process
// servers talk to those daemons. Header-only and free of gtest, like
// TempDir, so benchmarks can use it; a key that cannot be made throws, as
// TempDir does, since no test can run without one. Owned by the test's
// thread.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "src/cluster_key.h"
#include "src/socket_security.h"

namespace shardfs {

class TestKey {
 public:
  enum class Scope { kProcess, kFileOnly };

  explicit TestKey(std::string path, Scope scope = Scope::kProcess)
      : path_(std::move(path)), installed_(scope == Scope::kProcess) {
    auto key = ClusterKey::Generate();
    if (!key.ok()) throw std::runtime_error(key.status().ToString());
    key_ = *key;
    Status st = WriteClusterKey(path_, key_);
    if (!st.ok()) throw std::runtime_error(st.ToString());
    if (installed_) SetProcessClusterKey(key_);
  }
  ~TestKey() {
    if (installed_) SetProcessClusterKey(std::nullopt);
  }
  TestKey(const TestKey&) = delete;
  TestKey& operator=(const TestKey&) = delete;

  const std::string& path() const { return path_; }
  const ClusterKey& key() const { return key_; }
  // The flags that give a daemon, a mount or the CLI this key.
  std::vector<std::string> Flag() const { return {"--key", path_}; }

 private:
  std::string path_;
  ClusterKey key_;
  bool installed_;
};

}  // namespace shardfs
