#include "services/enroll_json.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/base/config.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/util/json_util.h"

namespace hawiya::services {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Protobuf refuses nesting deeper than 100; declining well before keeps our
// recursion shallow and leaves any error to protobuf.
constexpr int kMaxDepth = 32;

// The fields each key names, for every message type under the root: the
// proto name and the JSON name, as protobuf's JSON parser accepts both.
// Types the fast path does not take map to nullptr.
class KeyIndex {
 public:
  explicit KeyIndex(const Descriptor* root) { Add(root); }

  // Null when the type is declined as a whole.
  const absl::flat_hash_map<std::string, const FieldDescriptor*>* Fields(
      const Descriptor* type) const {
    const auto it = types_.find(type);
    return it == types_.end() ? nullptr : it->second.get();
  }

 private:
  void Add(const Descriptor* type) {
    if (types_.contains(type)) return;
    // Well-known types have JSON forms of their own (Timestamp is a
    // string); the per-object duplicate check uses a 64-bit mask.
    if (absl::StartsWith(type->file()->name(), "google/protobuf/") ||
        type->field_count() > 64) {
      types_[type] = nullptr;
      return;
    }
    auto fields = std::make_unique<
        absl::flat_hash_map<std::string, const FieldDescriptor*>>();
    auto* raw = fields.get();
    types_[type] = std::move(fields);
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      (*raw)[field->name()] = field;
      (*raw)[field->json_name()] = field;
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        Add(field->message_type());
      }
    }
  }

  absl::flat_hash_map<
      const Descriptor*,
      std::unique_ptr<absl::flat_hash_map<std::string, const FieldDescriptor*>>>
      types_;
};

// Strict UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      length = 2;
      cp = c & 0x1F;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3;
      cp = c & 0x0F;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (n - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

// A JSON number as written.
struct NumberToken {
  const char* begin = nullptr;
  const char* end = nullptr;
  bool negative = false;
  bool floating = false;  // has a fraction or an exponent
  int int_digits = 0;     // digits before the point
  // The value is mantissa * 10^exponent when `exact` (at most 15
  // significant digits, so the mantissa is exact in a double).
  uint64_t mantissa = 0;
  int significant = 0;  // digits in mantissa; 0 iff every digit is 0
  int64_t exponent = 0;
  bool exact = true;
};

// 10^0 .. 10^22, every one exact in a double.
constexpr double kPowersOf10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#ifdef ABSL_IS_LITTLE_ENDIAN
constexpr bool kLittleEndianHost = true;
#else
constexpr bool kLittleEndianHost = false;
#endif

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// JSON whitespace only: protobuf also skips \v and \f, which we decline.
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The value of p[0..8) if all eight are ASCII digits (SWAR, as in
// fast_float and simdjson).
bool EightDigits(const char* p, uint32_t* out) {
  uint64_t chunk;
  std::memcpy(&chunk, p, sizeof(chunk));
  if (!kLittleEndianHost) chunk = __builtin_bswap64(chunk);
  // Every byte is 0x30-0x39: high nibble 3, and adding 6 does not carry it.
  if ((((chunk & 0xF0F0F0F0F0F0F0F0) |
        (((chunk + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)) !=
       0x3333333333333333)) {
    return false;
  }
  chunk -= 0x3030303030303030;
  chunk = (chunk * 10) + (chunk >> 8);  // pairs of digits
  chunk = (((chunk & 0x000000FF000000FF) * (100 + (1000000ULL << 32))) +
           (((chunk >> 16) & 0x000000FF000000FF) * (1 + (10000ULL << 32)))) >>
          32;
  *out = static_cast<uint32_t>(chunk);
  return true;
}

// Reads the JSON number -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at
// p into *token; returns where it ends, or nullptr if there is none. It
// works on locals (the hot loop of a template vector): members written
// through pointers would be reloaded at every character.
const char* ScanNumber(const char* p, const char* const end,
                       NumberToken* token) {
  NumberToken t;
  t.begin = p;
  if (p < end && *p == '-') {
    t.negative = true;
    ++p;
  }
  if (p == end) return nullptr;
  uint64_t mantissa = 0;
  int significant = 0;
  int64_t exponent = 0;
  bool exact = true;
  if (*p == '0') {
    ++p;
    t.int_digits = 1;
  } else if (*p >= '1' && *p <= '9') {
    const char* const start = p;
    for (; p < end && IsDigit(*p); ++p) {
      if (significant < 15) {
        mantissa = mantissa * 10 + static_cast<uint64_t>(*p - '0');
        ++significant;
      } else {
        exact = false;  // the exponent is not read then
      }
    }
    t.int_digits = static_cast<int>(p - start);
  } else {
    return nullptr;
  }
  if (p < end && *p == '.') {
    t.floating = true;
    ++p;
    if (p == end || !IsDigit(*p)) return nullptr;
    if (significant == 0) {
      for (; p < end && *p == '0'; ++p) --exponent;  // leading zeros
    }
    // Eight digits at a time while the mantissa stays exact: a template's
    // numbers are mostly ~9 fraction digits.
    uint32_t eight;
    while (significant <= 7 && end - p >= 8 && EightDigits(p, &eight)) {
      mantissa = mantissa * 100000000 + eight;
      significant += 8;
      exponent -= 8;
      p += 8;
    }
    for (; p < end && IsDigit(*p); ++p) {
      if (significant < 15) {
        mantissa = mantissa * 10 + static_cast<uint64_t>(*p - '0');
        ++significant;
        --exponent;
      } else {
        exact = false;
      }
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    t.floating = true;
    ++p;
    bool negative = false;
    if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
    if (p == end || !IsDigit(*p)) return nullptr;
    int64_t e = 0;
    for (; p < end && IsDigit(*p); ++p) {
      // Far past any double's range either way; such values are then left
      // to from_chars.
      if (e < 100000) e = e * 10 + (*p - '0');
    }
    exponent += negative ? -e : e;
  }
  t.end = p;
  t.mantissa = mantissa;
  t.significant = significant;
  t.exponent = exponent;
  t.exact = exact;
  *token = t;
  return p;
}

// Reads one JSON text into a message. Every method returns false to decline:
// the caller then parses the line with protobuf alone, so declining is always
// safe and never an error of its own.
class Reader {
 public:
  Reader(absl::string_view text, const KeyIndex& index)
      : p_(text.data()), end_(text.data() + text.size()), index_(index) {}

  bool Read(Message* message) {
    SkipSpace();
    if (!At('{') || !Object(message, 1)) return false;
    SkipSpace();
    return p_ == end_;
  }

 private:
  bool At(char c) const { return p_ < end_ && *p_ == c; }

  void SkipSpace() {
    while (p_ < end_ && IsSpace(*p_)) ++p_;
  }

  // After a member or element: true with *more set, or false (declined).
  bool Next(char close, bool* more) {
    SkipSpace();
    if (At(',')) {
      ++p_;
      SkipSpace();
      *more = true;
      return true;
    }
    if (At(close)) {
      ++p_;
      *more = false;
      return true;
    }
    return false;
  }

  // A string without escapes as a view of the text, or decoded into
  // `storage`. Declines \u escapes (surrogate pairs and protobuf's handling
  // of lone ones are not reproduced) and raw control characters.
  bool String(absl::string_view* out, std::string* storage) {
    ++p_;  // the opening quote
    const char* start = p_;
    while (p_ < end_ && *p_ != '"' && *p_ != '\\' &&
           static_cast<unsigned char>(*p_) >= 0x20) {
      ++p_;
    }
    if (At('"')) {
      *out = absl::string_view(start, static_cast<size_t>(p_ - start));
      ++p_;
      return true;
    }
    storage->assign(start, static_cast<size_t>(p_ - start));
    while (p_ < end_) {
      const char c = *p_;
      if (c == '"') {
        ++p_;
        *out = *storage;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        storage->push_back(c);
        ++p_;
        continue;
      }
      if (end_ - p_ < 2) return false;
      switch (p_[1]) {
        case '"':
        case '\\':
        case '/':
          storage->push_back(p_[1]);
          break;
        case 'b':
          storage->push_back('\b');
          break;
        case 'f':
          storage->push_back('\f');
          break;
        case 'n':
          storage->push_back('\n');
          break;
        case 'r':
          storage->push_back('\r');
          break;
        case 't':
          storage->push_back('\t');
          break;
        default:
          return false;
      }
      p_ += 2;
    }
    return false;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool Number(NumberToken* token) {
    const char* const end = ScanNumber(p_, end_, token);
    if (end == nullptr) return false;
    p_ = end;
    return true;
  }

  // An integer in quotes, which protobuf reads with safe_strto64 and kin:
  // for the strict JSON integer form their value is the number's.
  bool QuotedInteger(NumberToken* token) {
    absl::string_view text;
    std::string storage;
    if (!String(&text, &storage) || !storage.empty() || text.empty()) {
      return false;
    }
    const char* const end = text.data() + text.size();
    return ScanNumber(text.data(), end, token) == end && !token->floating;
  }

  // An integer token's magnitude; false past uint64 or for fractions and
  // exponents (protobuf converts those through a double).
  static bool Magnitude(const NumberToken& token, uint64_t* out) {
    if (token.floating) return false;
    const char* const digits = token.begin + (token.negative ? 1 : 0);
    const std::from_chars_result result =
        std::from_chars(digits, token.end, *out);
    return result.ec == std::errc() && result.ptr == token.end;
  }

  // The double protobuf 3.21 reads for a number with '.', 'e' or 'E':
  // strtod, correctly rounded as from_chars is; it refuses infinities.
  // Underflow (to zero or a subnormal) is where the two libraries could
  // part ways, so only true zeros ("0.0", "-0e5") are taken there.
  static bool ToDouble(const NumberToken& token, double* out) {
    // Clinger's fast path: mantissa and power of ten are exact doubles, so
    // one IEEE multiplication or division rounds correctly, as strtod does.
    if (token.exact && token.exponent >= -22 && token.exponent <= 22) {
      const double mantissa = static_cast<double>(token.mantissa);
      const double value = token.exponent < 0
                               ? mantissa / kPowersOf10[-token.exponent]
                               : mantissa * kPowersOf10[token.exponent];
      *out = token.negative ? -value : value;
      return true;
    }
    double value = 0;
    const std::from_chars_result result =
        std::from_chars(token.begin, token.end, value);
    if (result.ec != std::errc() || result.ptr != token.end ||
        !std::isfinite(value)) {
      return false;
    }
    if (std::fabs(value) < DBL_MIN && token.significant > 0) return false;
    *out = value;
    return true;
  }

  // Protobuf narrows the double with static_cast, refusing magnitudes above
  // FLT_MAX. An integer it reads as uint64 (int64 when negative) and casts
  // to float: so "-0" is +0.0f while "-0.0" is -0.0f. Up to 7 digits the
  // cast is exact either way.
  static bool ToFloat(const NumberToken& token, float* out) {
    if (!token.floating) {
      uint64_t magnitude;
      if (token.int_digits > 7 || !Magnitude(token, &magnitude)) return false;
      const int64_t value = static_cast<int64_t>(magnitude);
      *out = static_cast<float>(token.negative ? -value : value);
      return true;
    }
    double value;
    if (!ToDouble(token, &value) || std::fabs(value) > FLT_MAX) return false;
    *out = static_cast<float>(value);
    return true;
  }

  // Doubles: an integer of up to 15 digits is exact through int64 and
  // through double alike.
  static bool ToDoubleField(const NumberToken& token, double* out) {
    if (!token.floating) {
      uint64_t magnitude;
      if (token.int_digits > 15 || !Magnitude(token, &magnitude)) return false;
      const int64_t value = static_cast<int64_t>(magnitude);
      *out = static_cast<double>(token.negative ? -value : value);
      return true;
    }
    return ToDouble(token, out);
  }

  // Integers in range of the field's type; protobuf refuses the others.
  static bool ToInt(const NumberToken& token, int64_t min, uint64_t max,
                    uint64_t* magnitude) {
    if (!Magnitude(token, magnitude)) return false;
    if (token.negative) {
      // Unsigned fields: even "-0" is left to protobuf.
      return min < 0 && *magnitude <= static_cast<uint64_t>(-(min + 1)) + 1;
    }
    return *magnitude <= max;
  }

  bool Object(Message* message, int depth) {
    if (depth > kMaxDepth) return false;
    const Descriptor* type = message->GetDescriptor();
    const auto* fields = index_.Fields(type);
    if (fields == nullptr) return false;
    const Reflection* reflection = message->GetReflection();
    ++p_;  // '{'
    SkipSpace();
    if (At('}')) {
      ++p_;
      return true;
    }
    uint64_t seen = 0;
    bool more = true;
    while (more) {
      if (!At('"')) return false;
      absl::string_view key;
      std::string key_storage;
      // An escaped key is declined: it could spell any field.
      if (!String(&key, &key_storage) || !key_storage.empty()) return false;
      const auto it = fields->find(key);
      if (it == fields->end()) return false;
      const FieldDescriptor* field = it->second;
      // Each field once per object, whichever spelling: protobuf's merging
      // of repeated keys is not reproduced.
      const uint64_t bit = uint64_t{1} << field->index();
      if ((seen & bit) != 0) return false;
      seen |= bit;
      SkipSpace();
      if (!At(':')) return false;
      ++p_;
      SkipSpace();
      if (!Field(message, reflection, field, depth)) return false;
      if (!Next('}', &more)) return false;
    }
    return true;
  }

  bool Field(Message* message, const Reflection* reflection,
             const FieldDescriptor* field, int depth) {
    if (field->is_map() || field->real_containing_oneof() != nullptr) {
      return false;
    }
    if (!field->is_repeated()) {
      return Value(message, reflection, field, depth);
    }
    if (!At('[')) return false;  // null among others
    ++p_;
    SkipSpace();
    if (At(']')) {
      ++p_;
      return true;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
      return Floats(message, reflection, field);
    }
    bool more = true;
    while (more) {
      if (!Value(message, reflection, field, depth)) return false;
      if (!Next(']', &more)) return false;
    }
    return true;
  }

  // The elements of a repeated float (template vectors), after the '['.
  bool Floats(Message* message, const Reflection* reflection,
              const FieldDescriptor* field) {
    floats_.clear();
    floats_.reserve(512);  // a face template
    const char* p = p_;
    while (true) {
      NumberToken token;
      float value;
      p = ScanNumber(p, end_, &token);
      if (p == nullptr || !ToFloat(token, &value)) return false;
      floats_.push_back(value);
      while (p < end_ && IsSpace(*p)) ++p;
      if (p == end_) return false;
      if (*p == ']') break;
      if (*p != ',') return false;
      ++p;
      while (p < end_ && IsSpace(*p)) ++p;
    }
    p_ = p + 1;
    if (field == template_vector_) {
      // The generated class, in one copy rather than a virtual call per
      // element (AddMessage made the element, so it is a v1::Template).
      static_cast<v1::Template*>(message)->mutable_vector()->Add(
          floats_.begin(), floats_.end());
      return true;
    }
    google::protobuf::MutableRepeatedFieldRef<float> out =
        reflection->GetMutableRepeatedFieldRef<float>(message, field);
    for (const float value : floats_) out.Add(value);
    return true;
  }

  // One value of `field` (an element, if repeated).
  bool Value(Message* message, const Reflection* reflection,
             const FieldDescriptor* field, int depth) {
    const bool repeated = field->is_repeated();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        if (!At('{')) return false;
        Message* sub = repeated ? reflection->AddMessage(message, field)
                                : reflection->MutableMessage(message, field);
        return Object(sub, depth + 1);
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        if (field->type() == FieldDescriptor::TYPE_BYTES || !At('"')) {
          return false;
        }
        absl::string_view text;
        std::string storage;
        if (!String(&text, &storage) || !IsValidUtf8(text)) return false;
        if (repeated) {
          reflection->AddString(message, field, std::string(text));
        } else {
          reflection->SetString(message, field, std::string(text));
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        if (!At('"')) return false;
        absl::string_view text;
        std::string storage;
        if (!String(&text, &storage)) return false;
        const google::protobuf::EnumValueDescriptor* value =
            field->enum_type()->FindValueByName(std::string(text));
        if (value == nullptr) return false;
        if (repeated) {
          reflection->AddEnumValue(message, field, value->number());
        } else {
          reflection->SetEnumValue(message, field, value->number());
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        bool value;
        if (p_ + 4 <= end_ && absl::string_view(p_, 4) == "true") {
          value = true;
          p_ += 4;
        } else if (p_ + 5 <= end_ && absl::string_view(p_, 5) == "false") {
          value = false;
          p_ += 5;
        } else {
          return false;
        }
        if (repeated) {
          reflection->AddBool(message, field, value);
        } else {
          reflection->SetBool(message, field, value);
        }
        return true;
      }
      default:
        return NumberValue(message, reflection, field);
    }
  }

  bool NumberValue(Message* message, const Reflection* reflection,
                   const FieldDescriptor* field) {
    NumberToken token;
    const FieldDescriptor::CppType type = field->cpp_type();
    if (At('"') && type != FieldDescriptor::CPPTYPE_FLOAT &&
        type != FieldDescriptor::CPPTYPE_DOUBLE) {
      // Proto3 JSON writes 64-bit integers as strings ("version": "3").
      if (!QuotedInteger(&token)) return false;
    } else if (!Number(&token)) {
      return false;
    }
    const bool repeated = field->is_repeated();
    uint64_t magnitude = 0;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        if (!ToInt(token, std::numeric_limits<int32_t>::min(),
                   std::numeric_limits<int32_t>::max(), &magnitude)) {
          return false;
        }
        const auto value = static_cast<int32_t>(
            token.negative ? -static_cast<int64_t>(magnitude)
                           : static_cast<int64_t>(magnitude));
        repeated ? reflection->AddInt32(message, field, value)
                 : reflection->SetInt32(message, field, value);
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        if (!ToInt(token, std::numeric_limits<int64_t>::min(),
                   std::numeric_limits<int64_t>::max(), &magnitude)) {
          return false;
        }
        // Two's complement: -2^63 included.
        const auto value = static_cast<int64_t>(
            token.negative ? uint64_t{0} - magnitude : magnitude);
        repeated ? reflection->AddInt64(message, field, value)
                 : reflection->SetInt64(message, field, value);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        if (!ToInt(token, 0, std::numeric_limits<uint32_t>::max(),
                   &magnitude)) {
          return false;
        }
        const auto value = static_cast<uint32_t>(magnitude);
        repeated ? reflection->AddUInt32(message, field, value)
                 : reflection->SetUInt32(message, field, value);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        if (!ToInt(token, 0, std::numeric_limits<uint64_t>::max(),
                   &magnitude)) {
          return false;
        }
        repeated ? reflection->AddUInt64(message, field, magnitude)
                 : reflection->SetUInt64(message, field, magnitude);
        return true;
      }
      case FieldDescriptor::CPPTYPE_FLOAT: {
        float value;
        if (!ToFloat(token, &value)) return false;
        repeated ? reflection->AddFloat(message, field, value)
                 : reflection->SetFloat(message, field, value);
        return true;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double value;
        if (!ToDoubleField(token, &value)) return false;
        repeated ? reflection->AddDouble(message, field, value)
                 : reflection->SetDouble(message, field, value);
        return true;
      }
      default:
        return false;
    }
  }

  const char* p_;
  const char* end_;  // moved only by QuotedInteger
  const KeyIndex& index_;
  const FieldDescriptor* const template_vector_ =
      v1::Template::descriptor()->FindFieldByNumber(
          v1::Template::kVectorFieldNumber);
  std::vector<float> floats_;
};

}  // namespace

absl::Status ParseEnrollRequestJsonSlow(absl::string_view json,
                                        v1::EnrollRequest* request) {
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), request);
  if (status.ok()) return absl::OkStatus();
  // protobuf's util::StatusCode numbers the canonical codes as absl does.
  return absl::Status(static_cast<absl::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status ParseEnrollRequestJson(absl::string_view json,
                                    v1::EnrollRequest* request,
                                    bool* fast_path) {
  static const KeyIndex* const index =
      new KeyIndex(v1::EnrollRequest::descriptor());
  request->Clear();
  Reader reader(json, *index);
  const bool fast = reader.Read(request);
  if (fast_path != nullptr) *fast_path = fast;
  if (fast) return absl::OkStatus();
  request->Clear();
  return ParseEnrollRequestJsonSlow(json, request);
}

}  // namespace hawiya::services
