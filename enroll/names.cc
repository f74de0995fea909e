// INTERIM implementation (exact token equality after ASCII case folding) so
// that code using names.h builds; the `names` branch replaces this file with
// the real normalisation and similarity.
#include "enroll/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hawiya::enroll::names {
namespace {

std::vector<std::string> Tokens(absl::string_view name) {
  std::vector<std::string> tokens =
      absl::StrSplit(absl::AsciiStrToLower(name), ' ', absl::SkipEmpty());
  return tokens;
}

std::string Joined(const v1::PersonName& name) {
  std::vector<std::string> parts;
  for (const std::string* part :
       {&name.given(), &name.father(), &name.grandfather(), &name.family()}) {
    if (!part->empty()) parts.push_back(*part);
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace

const double kNameMatchThreshold = 1.0;

Script ScriptOf(absl::string_view name) {
  bool arabic = false, latin = false;
  for (unsigned char c : name) {
    if (c >= 0x80) arabic = true;
    if (absl::ascii_isalpha(c)) latin = true;
  }
  if (arabic && latin) return Script::kMixed;
  if (arabic) return Script::kArabic;
  return latin ? Script::kLatin : Script::kEmpty;
}

std::vector<std::string> NormalizeArabic(absl::string_view name) {
  return Tokens(name);
}
std::vector<std::string> NormalizeLatin(absl::string_view name) {
  return Tokens(name);
}
std::vector<std::string> TransliterateArabic(absl::string_view name) {
  return Tokens(name);
}

NameComparison CompareNames(absl::string_view a, absl::string_view b) {
  NameComparison result;
  result.similarity = Tokens(a) == Tokens(b) ? 1.0 : 0.0;
  result.match = result.similarity >= kNameMatchThreshold;
  return result;
}

NameComparison CompareNames(const v1::PersonName& claimed,
                            const v1::PersonName& recorded) {
  return CompareNames(Joined(claimed), Joined(recorded));
}

}  // namespace hawiya::enroll::names
