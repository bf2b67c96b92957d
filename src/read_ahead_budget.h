// ReadAheadBudget: how many bytes of read-ahead all open files of one client
// may hold at once, so many sequential readers cannot use unbounded memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <utility>

namespace shardfs {

// Thread-safe. Owned by the client's main object; must outlive every Grant.
class ReadAheadBudget {
 public:
  explicit ReadAheadBudget(uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // Bytes taken from the budget, given back when destroyed.
  class Grant {
   public:
    Grant() = default;
    Grant(Grant&& other) noexcept { *this = std::move(other); }
    Grant& operator=(Grant&& other) noexcept {
      if (this != &other) {
        Release();
        budget_ = std::exchange(other.budget_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
      }
      return *this;
    }
    Grant(const Grant&) = delete;
    Grant& operator=(const Grant&) = delete;
    ~Grant() { Release(); }

   private:
    friend class ReadAheadBudget;
    Grant(ReadAheadBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
    void Release() {
      if (budget_ != nullptr) budget_->used_.fetch_sub(bytes_);
      budget_ = nullptr;
      bytes_ = 0;
    }
    ReadAheadBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  // Nothing when the budget cannot spare `bytes`: then no read-ahead.
  std::optional<Grant> TryReserve(uint64_t bytes) {
    uint64_t used = used_.load();
    do {
      if (used + bytes > max_bytes_) return std::nullopt;
    } while (!used_.compare_exchange_weak(used, used + bytes));
    return Grant(this, bytes);
  }

  uint64_t used() const { return used_.load(); }

 private:
  const uint64_t max_bytes_;
  std::atomic<uint64_t> used_{0};
};

}  // namespace shardfs
