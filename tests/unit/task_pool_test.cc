#include "src/task_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "src/read_ahead_budget.h"

namespace shardfs {
namespace {

TEST(TaskPoolTest, RunsEveryTaskEvenWhenDestroyedWithAQueue) {
  std::atomic<int> ran{0};
  {
    TaskPool pool(2, "test");
    for (int i = 0; i < 100; ++i) {
      pool.Submit([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        ++ran;
      });
    }
  }
  EXPECT_EQ(ran.load(), 100);
}

TEST(TaskPoolTest, RunsTasksInParallel) {
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  {
    TaskPool pool(4, "test");
    for (int i = 0; i < 8; ++i) {
      pool.Submit([&] {
        int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        --running;
      });
    }
  }
  EXPECT_GT(most.load(), 1);
  EXPECT_LE(most.load(), 4);
}

TEST(ReadAheadBudgetTest, GrantsUpToTheLimitAndTakesBackOnRelease) {
  ReadAheadBudget budget(10);
  auto a = budget.TryReserve(6);
  ASSERT_TRUE(a.has_value());
  EXPECT_FALSE(budget.TryReserve(5).has_value());
  {
    auto b = budget.TryReserve(4);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(budget.used(), 10u);
    ReadAheadBudget::Grant moved = std::move(*b);
    EXPECT_EQ(budget.used(), 10u);
  }
  EXPECT_EQ(budget.used(), 6u);
  a.reset();
  EXPECT_EQ(budget.used(), 0u);
}

}  // namespace
}  // namespace shardfs
