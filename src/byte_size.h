// Sizes on command lines: "4M", "512K", "10G", "1T" or plain bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/status.h"

namespace shardfs {

// Binary units (K = 1024). kInvalidArgument for anything else.
Result<uint64_t> ParseByteSize(std::string_view text);
// "4.0 MiB" style, for humans.
std::string FormatByteSize(uint64_t bytes);

}  // namespace shardfs
