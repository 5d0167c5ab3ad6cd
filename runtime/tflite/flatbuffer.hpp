// Bounds-checked reading of a FlatBuffer (a .tflite file), the one copy for `bundle create`'s
// TFLite reader (runtime/tflite_model.cpp) and the tflite plugin's float16 fold
// (runtime/tflite/fp16_fold.cpp). Standard library only and header-only, like
// runtime/plugin_kit.hpp, because the plugin links nothing of edgefleet.
//
// Nothing is trusted: every offset, table, vtable, field, vector and string is checked against
// the file before it is read. An accessor that finds a problem returns false and keeps the text
// of the problem, "<path>: <what>", naming the schema path the caller gave and the byte offset
// (e.g. "operator_codes[5].custom_code: offset at byte 208 points to byte 1048784, past the end
// of the file (size 1000)"). Absent fields read as absent (std::nullopt) or the caller's default,
// as the schema says.
//
// Thread safety: const accessors only write the problem text, so one reader per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace edgefleet::runtime::tflite {

// A table the reader has checked: its first byte (the offset to its vtable), the vtable, and the
// sizes the vtable declares.
struct FlatTable {
  std::uint64_t pos = 0;
  std::uint64_t vtable = 0;
  std::uint16_t vtable_size = 0;
  std::uint16_t size = 0;  // the table's inline bytes, from pos
};

// A vector whose `count` elements of the size it was read with lie inside the file.
struct FlatVector {
  std::uint64_t data = 0;  // the first element
  std::uint32_t count = 0;
};

class FlatBytes {
 public:
  // FlatBuffers offsets are unsigned 32-bit but must stay below 2 GiB (the verifier's rule).
  static constexpr std::uint64_t kMaxOffset = 0x7fffffff;

  explicit FlatBytes(std::string_view bytes) : bytes_(bytes) {}

  std::uint64_t size() const { return bytes_.size(); }
  std::string_view bytes() const { return bytes_; }
  // The last problem an accessor found, "<path>: <what>".
  const std::string& problem() const { return problem_; }

  // True when `length` bytes from `pos` lie inside the file.
  bool Fits(std::uint64_t pos, std::uint64_t length) const {
    return pos <= size() && length <= size() - pos;
  }

  // A little-endian T at `pos`, which the caller has checked with Fits.
  template <typename T>
  T Load(std::uint64_t pos) const {
    using U = std::make_unsigned_t<T>;
    U value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      value |=
          static_cast<U>(static_cast<U>(static_cast<unsigned char>(bytes_[pos + i])) << (8 * i));
    }
    return static_cast<T>(value);
  }

  // The position the uoffset stored at `slot` points to: not zero (pointing at itself), below
  // 2 GiB, and inside the file.
  bool Follow(std::uint64_t slot, std::string_view path, std::uint64_t& out) const {
    if (!Fits(slot, 4)) return Problem(path, "offset at byte " + At(slot) + PastTheEnd());
    const std::uint64_t offset = Load<std::uint32_t>(slot);
    if (offset == 0) return Problem(path, "offset at byte " + At(slot) + " points to itself");
    if (offset > kMaxOffset) {
      return Problem(path, "offset " + At(offset) + " at byte " + At(slot) + " is over 2 GiB");
    }
    if (!Fits(slot + offset, 1)) {
      return Problem(path, "offset at byte " + At(slot) + " points to byte " + At(slot + offset) +
                               ", past the end of the file (size " + At(size()) + ")");
    }
    out = slot + offset;
    return true;
  }

  bool TableAt(std::uint64_t pos, std::string_view path, FlatTable& out) const {
    if (!Fits(pos, 4)) return Problem(path, "table at byte " + At(pos) + PastTheEnd());
    const std::int64_t vtable = static_cast<std::int64_t>(pos) - Load<std::int32_t>(pos);
    if (vtable < 0 || !Fits(static_cast<std::uint64_t>(vtable), 4)) {
      return Problem(path, "vtable at byte " + std::to_string(vtable) + " (of the table at byte " +
                               At(pos) + ") lies outside the file (size " + At(size()) + ")");
    }
    FlatTable table;
    table.pos = pos;
    table.vtable = static_cast<std::uint64_t>(vtable);
    table.vtable_size = Load<std::uint16_t>(table.vtable);
    table.size = Load<std::uint16_t>(table.vtable + 2);
    if (table.vtable_size < 4 || table.vtable_size % 2 != 0) {
      return Problem(path, "vtable at byte " + At(table.vtable) + " declares " +
                               At(table.vtable_size) +
                               " bytes (expected an even size of 4 or more)");
    }
    if (!Fits(table.vtable, table.vtable_size)) {
      return Problem(path, "vtable of " + At(table.vtable_size) + " bytes at byte " +
                               At(table.vtable) + PastTheEnd());
    }
    if (table.size < 4 || !Fits(pos, table.size)) {
      return Problem(path,
                     "table of " + At(table.size) + " bytes at byte " + At(pos) +
                         (table.size < 4 ? " is smaller than its vtable offset" : PastTheEnd()));
    }
    out = table;
    return true;
  }

  // Where field `field` of `width` bytes is; nullopt when the table does not have it (a vtable
  // too short for it, or a zero entry: the schema's default).
  bool FieldPos(const FlatTable& table, int field, std::size_t width, std::string_view path,
                std::optional<std::uint64_t>& out) const {
    out.reset();
    const std::uint64_t entry = 4 + 2 * static_cast<std::uint64_t>(field);
    if (entry + 2 > table.vtable_size) return true;
    const std::uint16_t offset = Load<std::uint16_t>(table.vtable + entry);
    if (offset == 0) return true;
    if (offset < 4 || offset + width > table.size) {
      return Problem(path, "field at offset " + At(offset) + " (" + At(width) +
                               " bytes) lies outside its table of " + At(table.size) +
                               " bytes at byte " + At(table.pos));
    }
    out = table.pos + offset;
    return true;
  }

  // A scalar field, or `fallback` when the table does not have it.
  template <typename T>
  bool Scalar(const FlatTable& table, int field, T fallback, std::string_view path, T& out) const {
    std::optional<std::uint64_t> pos;
    if (!FieldPos(table, field, sizeof(T), path, pos)) return false;
    out = pos ? Load<T>(*pos) : fallback;
    return true;
  }

  // A vector field of `element`-byte elements; nullopt when the table does not have it.
  bool VectorField(const FlatTable& table, int field, std::size_t element, std::string_view path,
                   std::optional<FlatVector>& out) const {
    out.reset();
    std::optional<std::uint64_t> slot;
    if (!FieldPos(table, field, 4, path, slot)) return false;
    if (!slot) return true;
    std::uint64_t pos = 0;
    if (!Follow(*slot, path, pos)) return false;
    if (!Fits(pos, 4)) return Problem(path, "vector at byte " + At(pos) + PastTheEnd());
    FlatVector vector;
    vector.data = pos + 4;
    vector.count = Load<std::uint32_t>(pos);
    if (!Fits(vector.data, std::uint64_t{vector.count} * element)) {
      return Problem(path, "vector of " + At(vector.count) + " elements of " + At(element) +
                               " bytes at byte " + At(pos) + PastTheEnd());
    }
    out = vector;
    return true;
  }

  // A string field as bytes (without its terminating NUL); nullopt when absent.
  bool StringField(const FlatTable& table, int field, std::string_view path,
                   std::optional<std::string_view>& out) const {
    out.reset();
    std::optional<std::uint64_t> slot;
    if (!FieldPos(table, field, 4, path, slot)) return false;
    if (!slot) return true;
    std::uint64_t pos = 0;
    if (!Follow(*slot, path, pos)) return false;
    if (!Fits(pos, 4)) return Problem(path, "string at byte " + At(pos) + PastTheEnd());
    const std::uint32_t length = Load<std::uint32_t>(pos);
    if (!Fits(pos + 4, std::uint64_t{length} + 1)) {
      return Problem(path, "string of " + At(length) + " bytes at byte " + At(pos) + PastTheEnd());
    }
    if (bytes_[pos + 4 + length] != '\0') {
      return Problem(path, "string at byte " + At(pos) + " lacks its terminating NUL");
    }
    out = bytes_.substr(pos + 4, length);
    return true;
  }

  // Element `i` of a vector of tables.
  bool TableElement(const FlatVector& vector, std::uint32_t i, std::string_view path,
                    FlatTable& out) const {
    std::uint64_t pos = 0;
    return Follow(vector.data + 4 * std::uint64_t{i}, path, pos) && TableAt(pos, path, out);
  }

  // Element `i` of a vector of T (read with element size sizeof(T), so it lies inside the file).
  template <typename T>
  T Element(const FlatVector& vector, std::uint32_t i) const {
    return Load<T>(vector.data + sizeof(T) * std::uint64_t{i});
  }

 private:
  bool Problem(std::string_view path, const std::string& what) const {
    problem_ = std::string(path) + ": " + what;
    return false;
  }
  static std::string At(std::uint64_t n) { return std::to_string(n); }
  std::string PastTheEnd() const {
    return " runs past the end of the file (size " + At(size()) + ")";
  }

  std::string_view bytes_;
  mutable std::string problem_;
};

}  // namespace edgefleet::runtime::tflite
