// Small helpers for tests that move bytes: seeded random data, its hash,
// whole-file reads and loopback endpoints. Header-only, free of gtest.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>

#include "src/block_checksum.h"

namespace shardfs {

inline std::string Endpoint(uint16_t port) {
  return "tcp://127.0.0.1:" + std::to_string(port);
}

inline std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, n - i);
  }
  return s;
}

inline uint64_t Hash(std::string_view s) {
  return ShardChecksum({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace shardfs
