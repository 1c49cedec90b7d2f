#include "npy.hpp"

#include <cstring>

#include "errors.hpp"

namespace sf {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw Error(code::kFormat, "Expected a NumPy .npy file but received " + what);
}

// A cursor over the header dict; never reads outside [p, end).
struct Cursor {
  const char* p;
  const char* end;

  void skip_space() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }
  bool eat(char c) {
    skip_space();
    if (p < end && *p == c) {
      ++p;
      return true;
    }
    return false;
  }
  void expect(char c, const char* where) {
    if (!eat(c)) fail(std::string("a header without '") + c + "' " + where);
  }
  std::string string_literal() {
    skip_space();
    if (p >= end || (*p != '\'' && *p != '"')) fail("a header with a non-string key or descr");
    const char q = *p++;
    std::string out;
    while (p < end && *p != q) {
      if (*p == '\\') fail("a header with an escaped string");
      out.push_back(*p++);
      if (out.size() > 64) fail("a header with an over-long string");
    }
    if (p >= end) fail("a header with an unterminated string");
    ++p;
    return out;
  }
  bool boolean() {
    skip_space();
    if (end - p >= 4 && std::memcmp(p, "True", 4) == 0) {
      p += 4;
      return true;
    }
    if (end - p >= 5 && std::memcmp(p, "False", 5) == 0) {
      p += 5;
      return false;
    }
    fail("a header whose fortran_order is not True or False");
  }
  uint64_t integer() {
    skip_space();
    if (p >= end || *p < '0' || *p > '9') fail("a header whose shape holds a non-integer");
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
      const uint64_t digit = static_cast<uint64_t>(*p - '0');
      if (v > (UINT64_MAX - digit) / 10) throw Error(code::kOverflow, "Expected a .npy shape that fits in 64 bits but received a larger dimension");
      v = v * 10 + digit;
      ++p;
    }
    if (p < end && *p == 'L') ++p;  // Python 2 long literal
    return v;
  }
  std::vector<uint64_t> tuple() {
    expect('(', "before the shape");
    std::vector<uint64_t> out;
    if (eat(')')) return out;
    for (;;) {
      out.push_back(integer());
      if (out.size() > 32) fail("a shape with more than 32 dimensions");
      if (eat(')')) return out;
      expect(',', "between shape dimensions");
      if (eat(')')) return out;  // (3,) and (3, 4,)
    }
  }
};

void parse_descr(const std::string& descr, NpyHeader& h) {
  h.descr = descr;
  if (descr.size() < 3 || (descr[0] != '<' && descr[0] != '>' && descr[0] != '|' && descr[0] != '=')) {
    h.item_size = 0;
    return;
  }
  h.byte_order = descr[0] == '=' ? '<' : descr[0];
  h.kind = descr[1];
  size_t size = 0;
  for (size_t i = 2; i < descr.size(); ++i) {
    if (descr[i] < '0' || descr[i] > '9' || size > 1000000) {
      h.item_size = 0;  // structured or otherwise unusual: left to the caller to reject
      return;
    }
    size = size * 10 + static_cast<size_t>(descr[i] - '0');
  }
  h.item_size = size;
}

}  // namespace

NpyHeader parse_npy_header(const uint8_t* bytes, size_t n) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (n < 10 || std::memcmp(bytes, kMagic, 6) != 0) fail("a file without the \\x93NUMPY magic");
  NpyHeader h;
  h.major = bytes[6];
  h.minor = bytes[7];
  size_t header_len = 0, start = 0;
  if (h.major == 1) {
    header_len = static_cast<size_t>(bytes[8]) | (static_cast<size_t>(bytes[9]) << 8);
    start = 10;
  } else if (h.major == 2 || h.major == 3) {
    if (n < 12) fail("a truncated header");
    header_len = static_cast<size_t>(bytes[8]) | (static_cast<size_t>(bytes[9]) << 8) |
                 (static_cast<size_t>(bytes[10]) << 16) | (static_cast<size_t>(bytes[11]) << 24);
    start = 12;
  } else {
    fail("format version " + std::to_string(h.major) + "." + std::to_string(h.minor) + " (1.0, 2.0 and 3.0 are known)");
  }
  if (header_len > n - start) fail("a header longer than the file");
  h.data_offset = start + header_len;
  Cursor c{reinterpret_cast<const char*>(bytes + start), reinterpret_cast<const char*>(bytes + start + header_len)};
  bool have_descr = false, have_order = false, have_shape = false;
  c.expect('{', "at the start");
  while (!c.eat('}')) {
    const std::string key = c.string_literal();
    c.expect(':', "after a key");
    if (key == "descr") {
      if (have_descr) fail("a header with two descr keys");
      c.skip_space();
      if (c.p < c.end && *c.p == '[') fail("a structured dtype (a list descr)");
      parse_descr(c.string_literal(), h);
      have_descr = true;
    } else if (key == "fortran_order") {
      if (have_order) fail("a header with two fortran_order keys");
      h.fortran_order = c.boolean();
      have_order = true;
    } else if (key == "shape") {
      if (have_shape) fail("a header with two shape keys");
      h.shape = c.tuple();
      have_shape = true;
    } else {
      fail("a header with the unknown key '" + key + "'");
    }
    if (!c.eat(',')) {
      c.expect('}', "at the end");
      break;
    }
  }
  // after the dictionary only the padding: spaces and the final newline
  while (c.p < c.end && (*c.p == ' ' || *c.p == '\n' || *c.p == '\t' || *c.p == '\r')) ++c.p;
  if (c.p != c.end) fail("a header with characters after its closing '}'");
  if (!have_descr || !have_order || !have_shape) fail("a header without descr, fortran_order and shape");
  uint64_t elements = 1;
  for (uint64_t s : h.shape) {
    if (s != 0 && elements > UINT64_MAX / s) {
      throw Error(code::kOverflow, "Expected a .npy shape whose element count fits in 64 bits but received a larger one");
    }
    elements *= s;
  }
  h.elements = elements;
  if (h.item_size != 0 && elements > UINT64_MAX / h.item_size) {
    throw Error(code::kOverflow, "Expected a .npy array whose byte size fits in 64 bits but received a larger one");
  }
  h.data_bytes = elements * h.item_size;
  return h;
}

}  // namespace sf
