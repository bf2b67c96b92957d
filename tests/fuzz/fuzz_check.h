// FUZZ_CHECK: how a fuzz target states what a decoder promises.
//
// A broken promise aborts, so libFuzzer (clang builds) and the corpus replay
// test of the ordinary build (tests/fuzz/fuzz_replay_test.cc) both report it
// with the file and line of the check.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
