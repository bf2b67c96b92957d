// LatencyTracker: how long a hedged read waits before asking another replica.
//
// Keeps the last few hundred read latencies and answers "about the 99th
// percentile" (clamped), so a hung replica costs a reader little more than a
// usual slow read, while a healthy cluster sends almost no duplicate reads.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <mutex>

namespace shardfs {

// Thread-safe.
class LatencyTracker {
 public:
  LatencyTracker(std::chrono::milliseconds floor, std::chrono::milliseconds ceiling)
      : floor_(floor), ceiling_(ceiling) {}

  void Record(std::chrono::microseconds latency) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_[next_ % samples_.size()] = latency.count();
    ++next_;
  }

  std::chrono::milliseconds HedgeDelay() const {
    std::array<int64_t, kSamples> copy;
    size_t n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = std::min<size_t>(next_, kSamples);
      std::copy(samples_.begin(), samples_.begin() + n, copy.begin());
    }
    if (n < 16) return ceiling_ / 4;  // too little history: be patient, not hasty
    size_t k = (n * 99) / 100;
    std::nth_element(copy.begin(), copy.begin() + k, copy.begin() + n);
    auto p99 = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::microseconds(copy[k] * 2));
    return std::clamp(p99, floor_, ceiling_);
  }

 private:
  static constexpr size_t kSamples = 256;
  const std::chrono::milliseconds floor_;
  const std::chrono::milliseconds ceiling_;
  mutable std::mutex mu_;
  std::array<int64_t, kSamples> samples_{};  // guarded by mu_
  size_t next_ = 0;                          // guarded by mu_
};

}  // namespace shardfs
