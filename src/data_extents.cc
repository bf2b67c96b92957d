#include "src/data_extents.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace shardfs {
namespace {

bool IsZero(const uint8_t* bytes, size_t size) {
  static constexpr std::array<uint8_t, kHolePageBytes> kZeros{};
  // memcmp stops at the first difference, so data costs a few bytes a page.
  return std::memcmp(bytes, kZeros.data(), size) == 0;
}

}  // namespace

void AppendExtent(std::vector<Extent>* extents, Extent extent) {
  if (extent.length == 0) return;
  if (!extents->empty() && extents->back().end() == extent.offset) {
    extents->back().length += extent.length;
    return;
  }
  extents->push_back(extent);
}

std::vector<Extent> NonZeroExtents(std::span<const uint8_t> bytes, uint64_t at) {
  std::vector<Extent> extents;
  for (uint64_t page = 0; page < bytes.size(); page += kHolePageBytes) {
    const uint64_t size = std::min<uint64_t>(kHolePageBytes, bytes.size() - page);
    if (!IsZero(bytes.data() + page, size)) AppendExtent(&extents, {at + page, size});
  }
  return extents;
}

uint64_t TotalLength(std::span<const Extent> extents) {
  uint64_t total = 0;
  for (const Extent& extent : extents) total += extent.length;
  return total;
}

}  // namespace shardfs
