// ShardScrubber: a node's background check of every shard it holds.
//
// Reads each shard back from disk and verifies it (ShardStore::Verify: every
// block checksum, the whole-shard checksum, the file size), so a replica
// that rotted on disk is found and repaired before a reader needs it
// (DESIGN.md: "Nodes scrub their shards in the background at a bounded
// rate"). One pass walks the store in key order at most
// Options::bytes_per_second; the next pass begins `period` after the last
// one began (or at once, if the pass took longer). A shard that fails is
// handed to the `on_bad` callback, which reports it to the registry.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "src/shard_key.h"
#include "src/shard_store.h"
#include "src/status.h"

namespace shardfs {

// Start() and Stop() belong to one thread (the node's main thread). The walk
// runs on the scrubber's own thread, which is also where `on_bad` is called.
// The counters may be read from any thread.
class ShardScrubber {
 public:
  struct Options {
    // Read rate limit; 0 disables scrubbing (Start() starts nothing).
    uint64_t bytes_per_second = 8ull << 20;
    // From the start of one pass to the start of the next.
    std::chrono::seconds period{7 * 24 * 3600};
  };
  // Called on the scrubber's thread for each shard that fails verification
  // (kCorrupt), with the status that says what is wrong.
  using BadShardFn = std::function<void(const ShardKey& key, const Status& status)>;

  // `store` must outlive the scrubber.
  ShardScrubber(ShardStore* store, Options options, BadShardFn on_bad);
  ~ShardScrubber();
  ShardScrubber(const ShardScrubber&) = delete;
  ShardScrubber& operator=(const ShardScrubber&) = delete;

  // Starts the thread and returns at once; the first pass begins now.
  void Start();
  // Stops the thread, waiting at most for the shard being verified.
  void Stop();

  uint64_t shards_checked() const { return shards_checked_.load(); }
  uint64_t bytes_checked() const { return bytes_checked_.load(); }
  uint64_t bad_found() const { return bad_found_.load(); }
  uint64_t passes() const { return passes_.load(); }  // complete passes

 private:
  void Loop();
  // One walk over the store; false when stopped in the middle.
  bool Pass();
  // Waits until `until` or Stop(); false when stopping.
  bool WaitUntil(std::chrono::steady_clock::time_point until);

  ShardStore* const store_;
  const Options options_;
  const BadShardFn on_bad_;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_

  std::atomic<uint64_t> shards_checked_{0};
  std::atomic<uint64_t> bytes_checked_{0};
  std::atomic<uint64_t> bad_found_{0};
  std::atomic<uint64_t> passes_{0};
};

}  // namespace shardfs
