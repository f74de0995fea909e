// Name matching for civil-status verification: how people actually write
// Arabic and Latin names. Normalisation folds the spellings that mean the
// same name (Arabic: tashkeel, tatweel, alef and hamza forms, ta marbuta,
// Arabic-Indic digits, "عبد ال..." compounds; Latin: case, diacritics,
// Al-/El- prefixes, hyphens and apostrophes, common transliteration
// variants), and similarity compares names token by token (best assignment
// of tokens), across scripts through a documented Arabic→Latin
// transliteration.
//
// Plain functions on UTF-8 strings; no state, thread-safe.
#ifndef HAWIYA_ENROLL_NAMES_H_
#define HAWIYA_ENROLL_NAMES_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "hawiya/v1/types.pb.h"

namespace hawiya::enroll::names {

enum class Script { kEmpty, kArabic, kLatin, kMixed };

// The script of a name's letters (digits, spaces and punctuation ignored).
Script ScriptOf(absl::string_view name);

// Normalised tokens of a name in Arabic script (see the file comment):
// "عبد X", "ابو X" and a detached "ال X" are joined into one token, and the
// connectors بن / ابن / بنت are dropped unless they come first. Non-Arabic
// letters separate tokens. Invalid UTF-8 bytes are skipped.
std::vector<std::string> NormalizeArabic(absl::string_view name);
// Normalised tokens of a name in Latin script: lower-case ASCII, in the
// canonical spelling of docs/NAMES.md (articles, "Abd al-" compounds,
// connectors, spelling folding, variant table), so that NormalizeLatin of
// its own output joined by spaces gives it back.
std::vector<std::string> NormalizeLatin(absl::string_view name);
// Latin tokens (as NormalizeLatin makes them) for a name in Arabic script.
std::vector<std::string> TransliterateArabic(absl::string_view name);

struct NameComparison {
  // In [0, 1]; 1 for names equal after normalisation.
  double similarity = 0;
  // similarity >= kNameMatchThreshold.
  bool match = false;
};

// The threshold CompareNames uses, calibrated on the name-pair table of
// tests/names_test.cc.
extern const double kNameMatchThreshold;

// Compares two full names written in any script (one string each: given
// name first, as a person writes it). Given name is compared with given
// name, family (last token) with family, and the middle names of the shorter
// name are assigned one-to-one to those of the longer; the longer name's
// unpaired middle names count as missing (0.02 each off the mean). The
// similarity is the smaller of that penalised mean and the least similar
// compared pair, so one differing name (a sibling's given name, a cousin's
// father's name) prevents a match. An empty name never matches.
// docs/NAMES.md has the rules and the calibration.
NameComparison CompareNames(absl::string_view a, absl::string_view b);

// Compares a claimed name with a recorded one: every non-empty part of
// `claimed` (given, father, grandfather, family) joined in that order
// against the same parts of `recorded`. Either may be Arabic or Latin.
NameComparison CompareNames(const v1::PersonName& claimed,
                            const v1::PersonName& recorded);

// Additions (not used by the interim interface; rules in docs/NAMES.md).

// The canonical Latin tokens CompareNames compares for a name in any script:
// NormalizeLatin for Latin letters, TransliterateArabic for Arabic ones (a
// mixed name is split at whitespace and each chunk takes its own script).
std::vector<std::string> CanonicalTokens(absl::string_view name);

// Jaro-Winkler similarity of two byte strings (prefix scale 0.1, prefix of
// at most 4), in [0, 1]; 1 for equal strings, 0 if either is empty.
double JaroWinkler(absl::string_view a, absl::string_view b);

// Similarity in [0, 1] of two canonical tokens (as CanonicalTokens makes
// them): Jaro-Winkler after setting aside an "al" article and the "abdal" /
// "abu" compound heads. `approximate` says that either token came from the
// letter-by-letter Arabic transliteration (no short vowels), in which case
// their consonant skeletons are compared as well, at a small discount.
double TokenSimilarity(absl::string_view a, absl::string_view b,
                       bool approximate = false);

// Blocking keys of a name, for finding the recorded names CompareNames
// might match without comparing every one: if CompareNames(a, b).match
// then NameBlockingKeys(a) and NameBlockingKeys(b) share a key (the
// converse does not hold; the keys only narrow the search). A match needs
// the given names (first tokens) at TokenSimilarity >= 0.93, so above
// Jaro-Winkler 0.9789 (or equal): unless both are 12 letters or longer that
// forces equal first three letters of the compared forms (canonical Latin,
// its consonant skeleton, or the Arabic letters), whichever article or
// compound head TokenSimilarity sets aside; forms over 11 letters also
// share the key "~".
// docs/NAMES.md has the argument. Empty for a name without letters.
std::vector<std::string> NameBlockingKeys(absl::string_view name);
std::vector<std::string> NameBlockingKeys(const v1::PersonName& name);

}  // namespace hawiya::enroll::names

#endif  // HAWIYA_ENROLL_NAMES_H_
