#include "enroll/validation.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/timestamp.pb.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/gallery.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {
namespace {

constexpr size_t kMaxTextBytes = 128;
constexpr size_t kMaxNationalIdLength = 32;
constexpr int kMinYear = 1900;
// Dates that may lie in the future (document expiry) still need a ceiling so
// the calendar arithmetic stays meaningful.
constexpr int kMaxYear = 9999;

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

std::string Sub(absl::string_view field, absl::string_view name) {
  if (field.empty()) return std::string(name);
  return absl::StrCat(field, ".", name);
}

std::string Indexed(absl::string_view field, size_t i) {
  return absl::StrCat(field, "[", i, "]");
}

// Decodes the code point at s[i] as strict UTF-8 (RFC 3629): rejects
// overlong forms, surrogates and code points above U+10FFFF, all of which a
// lenient decoder would let through and which can make two byte strings
// that look alike compare unequal. Returns its length in bytes, 0 if the
// bytes there are not valid UTF-8.
size_t DecodeOne(absl::string_view s, size_t i, char32_t* out) {
  const unsigned char lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) {
    *out = lead;
    return 1;
  }
  size_t length;
  char32_t cp;
  char32_t min;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    cp = lead & 0x1F;
    min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    cp = lead & 0x0F;
    min = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    cp = lead & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    const unsigned char c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *out = cp;
  return length;
}

bool DecodeUtf8(absl::string_view s, std::vector<char32_t>* out) {
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    const size_t length = DecodeOne(s, i, &cp);
    if (length == 0) return false;
    out->push_back(cp);
    i += length;
  }
  return true;
}

// Checks size and encoding; on success `code_points` holds the decoded text.
absl::Status ValidateText(absl::string_view field, absl::string_view text,
                          std::vector<char32_t>* code_points) {
  if (text.size() > kMaxTextBytes) {
    return Invalid(field, absl::StrCat("is ", text.size(), " bytes, at most ",
                                       kMaxTextBytes, " allowed"));
  }
  if (!DecodeUtf8(text, code_points)) {
    return Invalid(field, "is not valid UTF-8");
  }
  return absl::OkStatus();
}

bool InRange(char32_t c, char32_t lo, char32_t hi) {
  return c >= lo && c <= hi;
}

// Unicode general category Cc.
bool IsControl(char32_t c) { return c < 0x20 || InRange(c, 0x7F, 0x9F); }

// What may not appear in free text: controls, and the separators that end a
// line as surely as LF does.
bool IsLineBreaking(char32_t c) {
  return IsControl(c) || c == 0x2028 || c == 0x2029;
}

// Appends `value` with controls, line separators and invalid bytes escaped
// (and backslashes and single quotes if `quoting`), cut on a UTF-8 boundary
// so that at most `max_bytes` are appended. Returns whether it was cut.
bool AppendEscaped(absl::string_view value, size_t max_bytes, bool quoting,
                   std::string* out) {
  size_t written = 0;
  size_t i = 0;
  std::string piece;
  while (i < value.size()) {
    char32_t cp = 0;
    size_t length = DecodeOne(value, i, &cp);
    piece.clear();
    if (length == 0) {
      piece = absl::StrFormat("\\x%02x", static_cast<unsigned char>(value[i]));
      length = 1;
    } else if (cp == '\n') {
      piece = "\\n";
    } else if (cp == '\r') {
      piece = "\\r";
    } else if (cp == '\t') {
      piece = "\\t";
    } else if (cp < 0x80 && IsControl(cp)) {
      piece = absl::StrFormat("\\x%02x", static_cast<uint32_t>(cp));
    } else if (IsLineBreaking(cp)) {
      piece = absl::StrFormat("\\u%04x", static_cast<uint32_t>(cp));
    } else if (quoting && (cp == '\\' || cp == '\'')) {
      piece = {'\\', static_cast<char>(cp)};
    } else {
      piece = std::string(value.substr(i, length));
    }
    if (written + piece.size() > max_bytes) break;
    out->append(piece);
    written += piece.size();
    i += length;
  }
  return i < value.size();
}

bool IsArabicBlock(char32_t c) {
  return InRange(c, 0x0600, 0x06FF) || InRange(c, 0x0750, 0x077F) ||
         InRange(c, 0x08A0, 0x08FF) || InRange(c, 0xFB50, 0xFDFF) ||
         InRange(c, 0xFE70, 0xFEFF);
}

// Code points of the Arabic blocks that cannot be part of a name: digits,
// punctuation and symbols, invisible format characters (U+FEFF is the byte
// order mark) and noncharacters.
bool IsArabicNonLetter(char32_t c) {
  return InRange(c, 0x0600, 0x060F) || InRange(c, 0x061B, 0x061F) ||
         InRange(c, 0x0660, 0x066D) || c == 0x06D4 || c == 0x06DD ||
         c == 0x06DE || c == 0x06E9 || InRange(c, 0x06F0, 0x06F9) ||
         c == 0x06FD || c == 0x06FE || c == 0x08E2 || c == 0xFD3E ||
         c == 0xFD3F || InRange(c, 0xFDD0, 0xFDEF) || c == 0xFDFC ||
         c == 0xFDFD || c == 0xFEFF;
}

// Harakat and other combining marks: allowed in a name but not enough on
// their own to make one.
bool IsArabicMark(char32_t c) {
  return InRange(c, 0x0610, 0x061A) || InRange(c, 0x064B, 0x065F) ||
         c == 0x0670 || InRange(c, 0x06D6, 0x06DC) ||
         InRange(c, 0x06DF, 0x06E4) || c == 0x06E7 || c == 0x06E8 ||
         InRange(c, 0x06EA, 0x06ED) || InRange(c, 0x08D3, 0x08E1) ||
         InRange(c, 0x08E3, 0x08FF);
}

bool IsArabicLetter(char32_t c) {
  return IsArabicBlock(c) && !IsArabicNonLetter(c) && !IsArabicMark(c) &&
         c != 0x0640 /* tatweel */;
}

// Separators shared by both scripts.
bool IsNameSeparator(char32_t c) { return c == ' ' || c == '-' || c == '\''; }

bool IsLatinLetter(char32_t c) {
  return InRange(c, 'A', 'Z') || InRange(c, 'a', 'z') ||
         (InRange(c, 0x00C0, 0x024F) && c != 0x00D7 && c != 0x00F7) ||
         InRange(c, 0x1E00, 0x1EFF);
}

absl::Status ValidateArabicPart(absl::string_view field,
                                absl::Span<const char32_t> text) {
  bool has_letter = false;
  for (char32_t c : text) {
    const bool arabic = IsArabicBlock(c) && !IsArabicNonLetter(c);
    if (!arabic && !IsNameSeparator(c) && c != 0x200C /* ZWNJ */) {
      return Invalid(field, "must be in Arabic script");
    }
    has_letter = has_letter || IsArabicLetter(c);
  }
  if (!has_letter) return Invalid(field, "must contain an Arabic letter");
  return absl::OkStatus();
}

absl::Status ValidateLatinPart(absl::string_view field,
                               absl::Span<const char32_t> text) {
  bool has_letter = false;
  for (char32_t c : text) {
    if (IsArabicBlock(c)) {
      return Invalid(field, "must not contain Arabic letters");
    }
    if (IsControl(c)) {
      return Invalid(field, "must not contain control characters");
    }
    const bool letter = IsLatinLetter(c);
    // Decomposed accents (NFD) and the typographic apostrophe that phones
    // substitute for U+0027 are part of ordinary Latin names.
    if (!letter && !IsNameSeparator(c) && c != '.' && c != 0x2019 &&
        !InRange(c, 0x0300, 0x036F)) {
      return Invalid(field, absl::StrFormat(
                                "contains U+%04X, which is not a Latin letter, "
                                "space, hyphen, apostrophe or period",
                                static_cast<uint32_t>(c)));
    }
    has_letter = has_letter || letter;
  }
  if (!has_letter) return Invalid(field, "must contain a Latin letter");
  return absl::OkStatus();
}

enum class Script { kArabic, kLatin };

absl::Status ValidateName(absl::string_view field,
                          const hawiya::v1::PersonName& name, Script script) {
  const std::pair<absl::string_view, const std::string*> parts[] = {
      {"given", &name.given()},
      {"father", &name.father()},
      {"grandfather", &name.grandfather()},
      {"family", &name.family()},
  };
  for (const auto& [part_name, value] : parts) {
    if (value->empty()) continue;
    const std::string part_field = Sub(field, part_name);
    std::vector<char32_t> text;
    if (absl::Status s = ValidateText(part_field, *value, &text); !s.ok()) {
      return s;
    }
    absl::Status s = script == Script::kArabic
                         ? ValidateArabicPart(part_field, text)
                         : ValidateLatinPart(part_field, text);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

bool HasGivenAndFamily(const hawiya::v1::PersonName& name) {
  return !name.given().empty() && !name.family().empty();
}

bool IsLeapYear(int year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  if (month == 2 && IsLeapYear(year)) return 29;
  return kDays[month - 1];
}

std::string FormatDate(const hawiya::v1::Date& date) {
  return absl::StrFormat("%04d-%02d-%02d", date.year(), date.month(),
                         date.day());
}

// A real date from 1900-01-01 on, with no upper bound tied to today.
absl::Status ValidateCalendarDate(absl::string_view field,
                                  const hawiya::v1::Date& date) {
  if (date.year() < kMinYear) {
    return Invalid(field,
                   absl::StrCat("year ", date.year(), " is before ", kMinYear));
  }
  if (date.year() > kMaxYear) {
    return Invalid(field, absl::StrCat("year ", date.year(), " out of range"));
  }
  if (date.month() < 1 || date.month() > 12) {
    return Invalid(field,
                   absl::StrCat("month ", date.month(), " out of range"));
  }
  if (date.day() < 1 || date.day() > DaysInMonth(date.year(), date.month())) {
    return Invalid(
        field, absl::StrFormat("day %d out of range for %04d-%02d", date.day(),
                               date.year(), date.month()));
  }
  return absl::OkStatus();
}

// proto3 cannot tell an absent Date from one sent as {} by a client or a
// translation layer; both mean "not given".
bool IsUnsetDate(bool present, const hawiya::v1::Date& date) {
  return !present || (date.year() == 0 && date.month() == 0 && date.day() == 0);
}

absl::Status ValidateOptionalCountryCode(absl::string_view field,
                                         absl::string_view code) {
  if (code.empty()) return absl::OkStatus();
  return ValidateCountryCode(field, code);
}

absl::Status ValidateDocument(absl::string_view field,
                              const hawiya::v1::Document& document) {
  if (document.type() == hawiya::v1::DOCUMENT_TYPE_UNSPECIFIED) {
    return Invalid(Sub(field, "type"), "must be set");
  }
  if (!hawiya::v1::DocumentType_IsValid(document.type())) {
    return Invalid(Sub(field, "type"),
                   absl::StrCat("unknown value ", document.type()));
  }
  // Document numbers follow the national id alphabet (types.proto).
  if (absl::Status s =
          ValidateNationalId(Sub(field, "number"), document.number());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateCountryCode(Sub(field, "issuing_country"),
                                           document.issuing_country());
      !s.ok()) {
    return s;
  }
  if (!IsUnsetDate(document.has_expiry_date(), document.expiry_date())) {
    return ValidateCalendarDate(Sub(field, "expiry_date"),
                                document.expiry_date());
  }
  return absl::OkStatus();
}

}  // namespace

std::string Quote(absl::string_view value) {
  std::string out = "'";
  const bool cut = AppendEscaped(value, kMaxQuotedBytes, true, &out);
  out.push_back('\'');
  if (cut) absl::StrAppend(&out, "... (", value.size(), " bytes)");
  return out;
}

std::string AuditText(absl::string_view value, size_t max_bytes) {
  std::string out;
  AppendEscaped(value, max_bytes, false, &out);
  return out;
}

absl::Status ValidateFreeText(absl::string_view field, absl::string_view text,
                              size_t max_bytes) {
  if (text.size() > max_bytes) {
    return Invalid(field, absl::StrCat("is ", text.size(), " bytes, at most ",
                                       max_bytes, " allowed"));
  }
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    const size_t length = DecodeOne(text, i, &cp);
    if (length == 0) return Invalid(field, "is not valid UTF-8");
    if (IsLineBreaking(cp)) {
      return Invalid(field, absl::StrFormat("contains U+%04X at byte %d; "
                                            "control characters and line "
                                            "breaks are not allowed",
                                            static_cast<uint32_t>(cp), i));
    }
    i += length;
  }
  return absl::OkStatus();
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  bool ok = id.size() <= kMaxIdBytes;
  for (char c : id) ok = ok && c > 0x20 && c < 0x7F;
  if (!ok) {
    return Invalid(field,
                   absl::StrCat("must be at most ", kMaxIdBytes,
                                " printable ASCII characters, is ", Quote(id)));
  }
  return absl::OkStatus();
}

absl::Status ValidatePersonRef(absl::string_view subject_id,
                               absl::string_view national_id,
                               absl::string_view issuing_country) {
  if (!subject_id.empty() &&
      (!national_id.empty() || !issuing_country.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "subject_id, ", national_id.empty() ? "issuing_country" : "national_id",
        ": give subject_id, or national_id and issuing_country, "
        "not both"));
  }
  return ValidateId("subject_id", subject_id);
}

absl::Status ValidateTimestamp(absl::string_view field,
                               const google::protobuf::Timestamp& time) {
  // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
  constexpr int64_t kMinSeconds = -62135596800;
  constexpr int64_t kMaxSeconds = 253402300799;
  if (time.seconds() < kMinSeconds || time.seconds() > kMaxSeconds) {
    return Invalid(
        Sub(field, "seconds"),
        absl::StrCat(time.seconds(), " is outside 0001-01-01..9999-12-31"));
  }
  if (time.nanos() < 0 || time.nanos() > 999999999) {
    return Invalid(Sub(field, "nanos"),
                   absl::StrCat(time.nanos(), " out of range 0-999999999"));
  }
  return absl::OkStatus();
}

absl::Status ValidateArabicName(absl::string_view field,
                                const hawiya::v1::PersonName& name) {
  return ValidateName(field, name, Script::kArabic);
}

absl::Status ValidateLatinName(absl::string_view field,
                               const hawiya::v1::PersonName& name) {
  return ValidateName(field, name, Script::kLatin);
}

absl::Status ValidateNationalId(absl::string_view field,
                                absl::string_view national_id) {
  bool ok = !national_id.empty() && national_id.size() <= kMaxNationalIdLength;
  for (char c : national_id) {
    ok = ok && (InRange(c, '0', '9') || InRange(c, 'A', 'Z') ||
                InRange(c, 'a', 'z') || c == '-');
  }
  if (!ok) return Invalid(field, "must be 1-32 characters of [0-9A-Za-z-]");
  return absl::OkStatus();
}

absl::Status ValidateCountryCode(absl::string_view field,
                                 absl::string_view code) {
  bool ok = code.size() == 3;
  for (char c : code) ok = ok && InRange(c, 'A', 'Z');
  if (!ok) {
    return Invalid(field, "must be 3 upper-case letters (ISO 3166-1 alpha-3)");
  }
  return absl::OkStatus();
}

absl::Status ValidateDate(absl::string_view field, const hawiya::v1::Date& date,
                          absl::Time now) {
  if (absl::Status s = ValidateCalendarDate(field, date); !s.ok()) return s;
  // Dates carry no time zone; the service's civil day is the UTC one.
  const absl::CivilDay today = absl::ToCivilDay(now, absl::UTCTimeZone());
  const absl::CivilDay day(date.year(), date.month(), date.day());
  if (day > today) {
    return Invalid(field, absl::StrCat(FormatDate(date), " is in the future"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePerson(absl::string_view field,
                            const hawiya::v1::Person& person, absl::Time now,
                            const InputLimits& limits) {
  if (absl::Status s =
          ValidateNationalId(Sub(field, "national_id"), person.national_id());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateCountryCode(Sub(field, "issuing_country"),
                                           person.issuing_country());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateName(Sub(field, "name_ar"), person.name_ar(),
                                    Script::kArabic);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateName(Sub(field, "name_latin"),
                                    person.name_latin(), Script::kLatin);
      !s.ok()) {
    return s;
  }
  if (!HasGivenAndFamily(person.name_ar()) &&
      !HasGivenAndFamily(person.name_latin())) {
    return Invalid(Sub(field, "name"),
                   "a given and a family name are required in Arabic or Latin "
                   "script");
  }
  if (IsUnsetDate(person.has_date_of_birth(), person.date_of_birth())) {
    return Invalid(Sub(field, "date_of_birth"), "is required");
  }
  if (absl::Status s = ValidateDate(Sub(field, "date_of_birth"),
                                    person.date_of_birth(), now);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateFreeText(Sub(field, "place_of_birth"),
                                        person.place_of_birth(), kMaxTextBytes);
      !s.ok()) {
    return s;
  }
  if (!hawiya::v1::Sex_IsValid(person.sex())) {
    return Invalid(Sub(field, "sex"),
                   absl::StrCat("unknown value ", person.sex()));
  }
  if (absl::Status s = ValidateOptionalCountryCode(Sub(field, "nationality"),
                                                   person.nationality());
      !s.ok()) {
    return s;
  }
  if (!hawiya::v1::CivilStatus_IsValid(person.civil_status())) {
    return Invalid(Sub(field, "civil_status"),
                   absl::StrCat("unknown value ", person.civil_status()));
  }
  if (static_cast<size_t>(person.documents_size()) > limits.max_documents) {
    return Invalid(Sub(field, "documents"),
                   absl::StrCat("at most ", limits.max_documents, ", not ",
                                person.documents_size()));
  }
  for (int i = 0; i < person.documents_size(); ++i) {
    if (absl::Status s = ValidateDocument(Indexed(Sub(field, "documents"), i),
                                          person.documents(i));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTemplates(absl::string_view field,
                               absl::Span<const hawiya::v1::Template> templates,
                               const matcher::Matcher& matcher) {
  for (size_t i = 0; i < templates.size(); ++i) {
    const hawiya::v1::Template& t = templates[i];
    const std::string item = Indexed(field, i);

    const std::string modality_field = Sub(item, "modality");
    if (t.modality() == hawiya::v1::MODALITY_UNSPECIFIED) {
      return Invalid(modality_field, "must be set");
    }
    if (!hawiya::v1::Modality_IsValid(t.modality())) {
      return Invalid(modality_field,
                     absl::StrCat("unknown value ", t.modality()));
    }
    const std::string& modality_name = hawiya::v1::Modality_Name(t.modality());
    const matcher::ModalitySpec* spec =
        matcher.spec(static_cast<matcher::Modality>(t.modality()));
    if (spec == nullptr) {
      return Invalid(
          modality_field,
          absl::StrCat(modality_name, " is not configured on this server"));
    }

    const std::string position_field = Sub(item, "position");
    switch (t.modality()) {
      case hawiya::v1::FACE:
        if (t.position() != 0) {
          return Invalid(position_field,
                         absl::StrCat("must be 0 for FACE, is ", t.position()));
        }
        break;
      case hawiya::v1::FINGERPRINT:
        if (t.position() < 1 || t.position() > 10) {
          return Invalid(
              position_field,
              absl::StrCat("must be 1-10 for FINGERPRINT, is ", t.position()));
        }
        break;
      case hawiya::v1::IRIS:
        if (t.position() < 1 || t.position() > 2) {
          return Invalid(position_field,
                         absl::StrCat("must be 1 (right) or 2 (left) for "
                                      "IRIS, is ",
                                      t.position()));
        }
        break;
      default:
        // A modality added to the proto before this switch learns its
        // positions; the matcher has vouched for it, so accept any.
        break;
    }

    if (absl::Status s = matcher::CheckVector(
            absl::MakeConstSpan(t.vector().data(), t.vector().size()),
            spec->dimension);
        !s.ok()) {
      // CheckVector words its message as "vector has ..."; the field path
      // already names the vector.
      return Invalid(Sub(item, "vector"),
                     absl::StripPrefix(s.message(), "vector "));
    }

    if (t.quality() > 100) {
      return Invalid(Sub(item, "quality"),
                     absl::StrCat(t.quality(), " out of range 0-100"));
    }

    if (absl::Status s = ValidateFreeText(Sub(item, "algorithm"), t.algorithm(),
                                          kMaxTextBytes);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTemplateSet(
    absl::string_view field, absl::Span<const hawiya::v1::Template> templates,
    const InputLimits& limits) {
  // Where each finger or eye was first given.
  std::map<std::pair<int, uint32_t>, size_t> first_at;
  std::map<int, size_t> count;
  for (size_t i = 0; i < templates.size(); ++i) {
    const hawiya::v1::Template& t = templates[i];
    const std::string& modality_name = hawiya::v1::Modality_Name(t.modality());
    if (t.modality() != hawiya::v1::FACE) {
      const auto [first, inserted] =
          first_at.emplace(std::make_pair(t.modality(), t.position()), i);
      if (!inserted) {
        return Invalid(Indexed(field, i),
                       absl::StrCat("a second ", modality_name, " at position ",
                                    t.position(), ", after ",
                                    Indexed(field, first->second)));
      }
    }
    size_t limit = templates.size();
    switch (t.modality()) {
      case hawiya::v1::FACE:
        limit = limits.max_faces;
        break;
      case hawiya::v1::FINGERPRINT:
        limit = limits.max_fingerprints;
        break;
      case hawiya::v1::IRIS:
        limit = limits.max_irises;
        break;
      default:
        break;
    }
    if (++count[t.modality()] > limit) {
      return Invalid(Indexed(field, i),
                     absl::StrCat("more than ", limit, " ", modality_name,
                                  " templates for one person"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hawiya::enroll
