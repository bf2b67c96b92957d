#include "nodeserver/shard_scrubber.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace shardfs {
namespace {

using Clock = std::chrono::steady_clock;

// Keys listed from the store at a time: the walk holds no lock between
// pages, so shards written meanwhile are simply met (or not) in key order.
constexpr size_t kListPage = 256;

// How long `bytes` take at `rate` bytes per second; capped at a year, so a
// tiny rate cannot overflow the clock (Stop() ends such a wait anyway).
Clock::duration TimeToRead(uint64_t bytes, uint64_t rate) {
  constexpr double kYear = 365.0 * 24 * 3600;
  const double seconds = std::min(kYear, static_cast<double>(bytes) / static_cast<double>(rate));
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

ShardScrubber::ShardScrubber(ShardStore* store, Options options, BadShardFn on_bad)
    : store_(store), options_(options), on_bad_(std::move(on_bad)) {}

ShardScrubber::~ShardScrubber() {
  Stop();
}

void ShardScrubber::Start() {
  if (thread_.joinable() || options_.bytes_per_second == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void ShardScrubber::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ShardScrubber::WaitUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, until, [this] { return stopping_; });
  return !stopping_;
}

void ShardScrubber::Loop() {
  while (true) {
    const auto pass_start = Clock::now();
    const uint64_t shards_before = shards_checked_.load();
    const uint64_t bytes_before = bytes_checked_.load();
    const uint64_t bad_before = bad_found_.load();
    if (!Pass()) return;
    passes_.fetch_add(1);
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - pass_start).count();
    spdlog::info("scrub pass {} done in {} s: {} shards, {} bytes, {} bad", passes_.load(), seconds,
                 shards_checked_.load() - shards_before, bytes_checked_.load() - bytes_before,
                 bad_found_.load() - bad_before);
    if (!WaitUntil(pass_start + options_.period)) return;
  }
}

bool ShardScrubber::Pass() {
  const auto pass_start = Clock::now();
  uint64_t pass_bytes = 0;
  std::optional<ShardKey> after;
  while (true) {
    auto page = store_->List(after, kListPage);
    if (!page.ok()) {
      // The index is in memory, so this does not happen in practice; the
      // next pass tries again.
      spdlog::warn("scrub: cannot list shards: {}", page.status().ToString());
      return true;
    }
    if (page->empty()) return true;
    for (const ShardInfo& info : *page) {
      after = info.key;
      Status st = store_->Verify(info.key);
      if (st.code() == ErrorCode::kNotFound) continue;  // deleted since it was listed
      shards_checked_.fetch_add(1);
      bytes_checked_.fetch_add(info.length);
      if (st.code() == ErrorCode::kCorrupt) {
        bad_found_.fetch_add(1);
        on_bad_(info.key, st);
      } else if (!st.ok()) {
        // Not proof that the replica is bad (say, out of file descriptors):
        // logged, and checked again next pass.
        spdlog::warn("scrub: cannot check shard {}: {}", info.key.ToString(), st.ToString());
      }
      // Pace: the pass may not have read more than the rate allows since it
      // began. Headers are not counted; they are small next to the data.
      pass_bytes += info.length;
      if (!WaitUntil(pass_start + TimeToRead(pass_bytes, options_.bytes_per_second))) {
        return false;
      }
    }
  }
}

}  // namespace shardfs
