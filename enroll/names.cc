// Name normalisation and similarity: the rules are listed in docs/NAMES.md;
// the comments here say why each step is where it is.
//
// Pipeline: UTF-8 is decoded by hand (invalid bytes are skipped, never an
// error: a name that got here passed validation, and matching must not fail
// on a stray byte). Arabic text is normalised letter by letter, split into
// tokens and its compounds joined; Latin text is folded to lower-case ASCII,
// split, its articles and compounds joined, then spelling-folded and mapped
// through a small variant table. Arabic is compared with Latin through
// TransliterateArabic, whose output goes through the same Latin folding, so
// both sides meet on one canonical Latin form.
#include "enroll/names.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace hawiya::enroll::names {
namespace {

// ---------------------------------------------------------------- UTF-8 --

// Decodes UTF-8; malformed or overlong sequences and surrogates are dropped.
std::vector<char32_t> DecodeUtf8(absl::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      ++i;
      continue;
    }
    if (i + len > s.size()) break;
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      ++i;
      continue;
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                          (len == 4 && cp < 0x10000);
    if (!overlong && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(cp);
    }
    i += len;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ToUtf8(const std::u32string& s) {
  std::string out;
  for (char32_t cp : s) AppendUtf8(cp, &out);
  return out;
}

bool IsArabicCodePoint(char32_t cp) {
  return (cp >= 0x0600 && cp <= 0x06FF) || (cp >= 0x0750 && cp <= 0x077F) ||
         (cp >= 0x08A0 && cp <= 0x08FF) || (cp >= 0xFB50 && cp <= 0xFDFF) ||
         (cp >= 0xFE70 && cp <= 0xFEFE);
}

// Invisible format characters (joiners, direction marks, BOM): removed
// without splitting a token.
bool IsInvisible(char32_t cp) {
  return cp == 0x00AD || cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2069) ||
         cp == 0xFEFF;
}

// --------------------------------------------------------------- Arabic --

constexpr char32_t kAlef = 0x0627, kYeh = 0x064A, kHeh = 0x0647, kWaw = 0x0648,
                   kKaf = 0x0643, kLam = 0x0644;
constexpr char32_t kSeparator = U' ';
constexpr char32_t kDrop = 0;

// Presentation Forms-B U+FE80..FEF4: each base letter followed by how many
// contextual forms it has there, in code-point order.
constexpr std::pair<char32_t, int> kFormsB[] = {
    {0x0621, 1}, {0x0622, 2}, {0x0623, 2}, {0x0624, 2}, {0x0625, 2},
    {0x0626, 4}, {0x0627, 2}, {0x0628, 4}, {0x0629, 2}, {0x062A, 4},
    {0x062B, 4}, {0x062C, 4}, {0x062D, 4}, {0x062E, 4}, {0x062F, 2},
    {0x0630, 2}, {0x0631, 2}, {0x0632, 2}, {0x0633, 4}, {0x0634, 4},
    {0x0635, 4}, {0x0636, 4}, {0x0637, 4}, {0x0638, 4}, {0x0639, 4},
    {0x063A, 4}, {0x0641, 4}, {0x0642, 4}, {0x0643, 4}, {0x0644, 4},
    {0x0645, 4}, {0x0646, 4}, {0x0647, 4}, {0x0648, 2}, {0x0649, 2},
    {0x064A, 4}};

// Unifies one Arabic-script code point (after presentation forms are
// expanded): returns the base letter, an ASCII digit, kDrop or kSeparator.
char32_t FoldArabicLetter(char32_t cp) {
  // Tashkeel, Quranic marks, superscript (dagger) alef, hamza above/below.
  if ((cp >= 0x064B && cp <= 0x065F) || cp == 0x0670 ||
      (cp >= 0x0610 && cp <= 0x061A) || (cp >= 0x06D6 && cp <= 0x06ED) ||
      (cp >= 0x08D3 && cp <= 0x08FF)) {
    return kDrop;
  }
  if (cp == 0x0640) return kDrop;  // tatweel
  // Standalone hamza: often left out in writing (أسماء / اسما).
  if (cp == 0x0621) return kDrop;
  if (cp >= 0x0660 && cp <= 0x0669) return U'0' + (cp - 0x0660);
  if (cp >= 0x06F0 && cp <= 0x06F9) return U'0' + (cp - 0x06F0);
  switch (cp) {
    case 0x0622:  // آ
    case 0x0623:  // أ
    case 0x0625:  // إ
    case 0x0671:  // ٱ wasla
    case 0x0672:
    case 0x0673:
    case 0x0675:
      return kAlef;
    case 0x0649:  // ى alef maksura
    case 0x0626:  // ئ
    case 0x06CC:  // ی Farsi yeh
    case 0x06D0:
    case 0x06D2:  // ے
    case 0x0678:
      return kYeh;
    case 0x0629:  // ة ta marbuta
    case 0x06C0:  // ۀ
    case 0x06C1:  // ہ
    case 0x06BE:  // ھ
    case 0x06D5:  // ە
      return kHeh;
    case 0x0624:  // ؤ
    case 0x0676:
      return kWaw;
    case 0x06A9:  // ک keheh
    case 0x06AA:
    case 0x06AF:  // گ gaf
      return kKaf;
    case 0x067E:  // پ
      return 0x0628;
    case 0x0686:  // چ
      return 0x062C;
    case 0x0698:  // ژ
      return 0x0632;
    case 0x06A4:  // ڤ
      return 0x0641;
    case 0x060C:  // ، ؛ ؟ and the Arabic number punctuation
    case 0x061B:
    case 0x061F:
    case 0x066A:
    case 0x066B:
    case 0x066C:
    case 0x066D:
    case 0x06D4:
      return kSeparator;
    default:
      break;
  }
  if (cp >= 0x0621 && cp <= 0x064A) return cp;
  if (IsArabicCodePoint(cp)) return cp;  // other letters kept as they are
  if (IsInvisible(cp)) return kDrop;
  if (cp >= U'0' && cp <= U'9') return cp;
  return kSeparator;  // spaces, hyphens, Latin letters, punctuation
}

// Expands presentation forms (FB50..FDFF as far as names need them,
// FE70..FEFC entirely) into base code points appended to `out`.
void ExpandPresentationForm(char32_t cp, std::u32string* out) {
  if (cp >= 0xFE70 && cp <= 0xFE7F) return;  // isolated / medial tashkeel
  if (cp >= 0xFE80 && cp <= 0xFEF4) {
    int offset = static_cast<int>(cp - 0xFE80);
    for (const auto& [base, forms] : kFormsB) {
      if (offset < forms) {
        out->push_back(base);
        return;
      }
      offset -= forms;
    }
    return;
  }
  if (cp >= 0xFEF5 && cp <= 0xFEFC) {  // lam-alef ligatures
    static constexpr char32_t kAlefs[] = {0x0622, 0x0623, 0x0625, 0x0627};
    out->push_back(kLam);
    out->push_back(kAlefs[(cp - 0xFEF5) / 2]);
    return;
  }
  if (cp == 0xFDF2) {  // ﷲ: the word Allah as one ligature
    out->append(U"\u0627\u0644\u0644\u0647");
    return;
  }
  if (cp >= 0xFB50 && cp <= 0xFB51) return out->push_back(0x0671);
  if (cp >= 0xFB56 && cp <= 0xFB59) return out->push_back(0x067E);
  if (cp >= 0xFB7A && cp <= 0xFB7D) return out->push_back(0x0686);
  if (cp >= 0xFB8A && cp <= 0xFB8B) return out->push_back(0x0698);
  if (cp >= 0xFB8E && cp <= 0xFB91) return out->push_back(0x06A9);
  if (cp >= 0xFB92 && cp <= 0xFB95) return out->push_back(0x06AF);
  if (cp >= 0xFBA4 && cp <= 0xFBA5) return out->push_back(0x06C0);
  if (cp >= 0xFBA6 && cp <= 0xFBA9) return out->push_back(0x06C1);
  if (cp >= 0xFBAA && cp <= 0xFBAD) return out->push_back(0x06BE);
  if (cp >= 0xFBFC && cp <= 0xFBFF) return out->push_back(0x06CC);
  if (cp >= 0xFC5E && cp <= 0xFC63) return;  // shadda + vowel ligatures
  out->push_back(cp);
}

const std::u32string kAbd = U"\u0639\u0628\u062F";   // عبد
const std::u32string kAbu = U"\u0627\u0628\u0648";   // ابو
const std::u32string kAbi = U"\u0627\u0628\u064A";   // ابي
const std::u32string kArticle = U"\u0627\u0644";     // ال
const std::u32string kBin = U"\u0628\u0646";         // بن
const std::u32string kIbn = U"\u0627\u0628\u0646";   // ابن
const std::u32string kBint = U"\u0628\u0646\u062A";  // بنت

bool StartsWith(const std::u32string& s, const std::u32string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// Joins compounds and drops connectors, the same way for both scripts:
// a detached article (ال, آل) or a compound head (عبد, ابو/ابي) is joined to
// the token after it; "son/daughter of" (بن, ابن, بنت) is dropped unless it
// is the first token.
template <typename Str, typename IsJoiner, typename IsConnector>
std::vector<Str> JoinCompounds(std::vector<Str> tokens, IsJoiner is_joiner,
                               IsConnector is_connector) {
  std::vector<Str> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0 && i + 1 < tokens.size() && is_connector(tokens[i])) continue;
    if (i > 0 && i + 1 == tokens.size() && is_connector(tokens[i])) continue;
    out.push_back(tokens[i]);
  }
  // Right to left so that "عبد ال رحمن" joins to one token.
  std::vector<Str> joined;
  for (size_t i = out.size(); i-- > 0;) {
    if (!joined.empty() && is_joiner(out[i], joined.back())) {
      joined.back() = out[i] + joined.back();
    } else {
      joined.push_back(out[i]);
    }
  }
  std::reverse(joined.begin(), joined.end());
  return joined;
}

std::vector<std::u32string> NormalizeArabic32(absl::string_view name) {
  std::u32string expanded;
  for (char32_t cp : DecodeUtf8(name)) ExpandPresentationForm(cp, &expanded);
  std::vector<std::u32string> tokens(1);
  for (char32_t cp : expanded) {
    const char32_t folded = FoldArabicLetter(cp);
    if (folded == kDrop) continue;
    if (folded == kSeparator) {
      if (!tokens.back().empty()) tokens.emplace_back();
      continue;
    }
    tokens.back().push_back(folded);
  }
  if (tokens.back().empty()) tokens.pop_back();
  return JoinCompounds(
      std::move(tokens),
      [](const std::u32string& head, const std::u32string&) {
        return head == kAbd || head == kAbu || head == kAbi || head == kArticle;
      },
      [](const std::u32string& t) {
        return t == kBin || t == kIbn || t == kBint;
      });
}

// ---------------------------------------------------------------- Latin --

// Latin Extended-A U+0100..017F folded to ASCII; '1' is "ij", '2' is "oe".
constexpr absl::string_view kExtendedA =
    "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii11jjkkkllllllllllnnnnnnn"
    "nnoooooo22rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";
static_assert(kExtendedA.size() == 0x80);
// Latin-1 U+00C0..00FF folded ('3' is "ae", '4' "th", '5' "ss", ' ' a
// separator for × and ÷).
constexpr absl::string_view kLatin1 =
    "aaaaaa3ceeeeiiiidnooooo ouuuuy45aaaaaa3ceeeeiiiidnooooo ouuuuy4y";
static_assert(kLatin1.size() == 0x40);

// Appends the ASCII folding of one code point: letters lower-cased without
// diacritics, apostrophes and combining marks removed, anything else a space.
void FoldLatinCodePoint(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    const char c = static_cast<char>(cp);
    if (c >= 'A' && c <= 'Z') return out->push_back(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      return out->push_back(c);
    }
    if (c == '\'' || c == '`') return;  // Abd'Allah, Ma`mun
    return out->push_back(' ');
  }
  // ‘ ’ ʼ ʾ ʿ ´ ʻ and combining diacritics (decomposed input).
  if (cp == 0x2018 || cp == 0x2019 || cp == 0x02BC || cp == 0x02BE ||
      cp == 0x02BF || cp == 0x00B4 || cp == 0x02BB ||
      (cp >= 0x0300 && cp <= 0x036F) || IsInvisible(cp)) {
    return;
  }
  auto expand = [out](char c) {
    switch (c) {
      case '1':
        out->append("ij");
        break;
      case '2':
        out->append("oe");
        break;
      case '3':
        out->append("ae");
        break;
      case '4':
        out->append("th");
        break;
      case '5':
        out->append("ss");
        break;
      default:
        out->push_back(c);
        break;
    }
  };
  if (cp >= 0x00C0 && cp <= 0x00FF) return expand(kLatin1[cp - 0x00C0]);
  if (cp >= 0x0100 && cp <= 0x017F) return expand(kExtendedA[cp - 0x0100]);
  // Scholarly transliteration letters with a dot or line below (ḥ ṣ ṭ ḍ ẓ
  // ḏ ṯ ẖ): their base letter.
  switch (cp) {
    case 0x1E0C:
    case 0x1E0D:
    case 0x1E0E:
    case 0x1E0F:
      return out->push_back('d');
    case 0x1E24:
    case 0x1E25:
    case 0x1E96:
      return out->push_back('h');
    case 0x1E62:
    case 0x1E63:
      return out->push_back('s');
    case 0x1E6C:
    case 0x1E6D:
    case 0x1E6E:
    case 0x1E6F:
      return out->push_back('t');
    case 0x1E92:
    case 0x1E93:
      return out->push_back('z');
    case 0x0131:
      return out->push_back('i');
    default:
      return out->push_back(' ');
  }
}

bool IsVowel(char c) {
  return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

bool StartsWith(absl::string_view s, absl::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// A detached article before `next`: al/el/ul/il, or the sun-letter
// assimilated forms (ar-Rahman, as-Salam, ash-Shami, ad-Din, an-Nur...).
bool IsLatinArticle(const std::string& t, const std::string& next) {
  if (t == "al" || t == "el" || t == "ul" || t == "il") return true;
  if (t.size() < 2 || t.size() > 3 ||
      !(t[0] == 'a' || t[0] == 'e' || t[0] == 'u')) {
    return false;
  }
  const absl::string_view consonant = absl::string_view(t).substr(1);
  static constexpr absl::string_view kSun[] = {"t", "th", "d",  "dh", "r",
                                               "z", "s",  "sh", "n"};
  for (absl::string_view sun : kSun) {
    if (consonant == sun && StartsWith(next, sun)) return true;
  }
  return false;
}

bool IsAbdHead(const std::string& t) {
  static constexpr absl::string_view kHeads[] = {
      "abd",   "abdul",  "abdel", "abdal", "abdol", "abdu",
      "abdou", "abdoul", "abdur", "abdus", "abdun"};
  for (absl::string_view h : kHeads) {
    if (t == h) return true;
  }
  return false;
}

bool IsAbuHead(const std::string& t) {
  return t == "abu" || t == "abou" || t == "abo";
}

bool IsLatinConnector(const std::string& t) {
  return t == "bin" || t == "ben" || t == "ibn" || t == "bint" ||
         t == "binti" || t == "bn";
}

// "abd" + article variant + stem → "abdal" + stem: Abdullah, Abdallah,
// Abd Allah, Abdulrahman, Abdurrahman, Abdel Rahman, Abd ar-Rahman all
// become abdallah / abdalrahman.
std::string CanonicalAbd(const std::string& t) {
  if (!StartsWith(t, "abd") || t.size() <= 3) return t;
  std::string rest = t.substr(3);
  bool changed = false;
  for (absl::string_view article : {"oul", "ul", "el", "al", "ol", "il"}) {
    if (StartsWith(rest, article) && rest.size() > article.size() + 1) {
      rest = rest.substr(article.size());
      changed = true;
      break;
    }
  }
  if (!changed && rest.size() >= 3 && IsVowel(rest[0])) {
    // Assimilated article: abdurrahman, abdussalam, abdunnasir; or a
    // linking vowel: abdurahman, abdousalam.
    size_t v = (rest[0] == 'o' && rest[1] == 'u') ? 2 : 1;
    if (rest.size() > v + 1 && !IsVowel(rest[v]) &&
        (rest[0] != 'a' || rest[v] == rest[v + 1])) {
      rest = rest.substr(v);
      if (rest.size() > 1 && rest[0] == rest[1]) rest = rest.substr(1);
      changed = true;
    }
  }
  if (!changed && !IsVowel(rest[0]) && rest.size() >= 3) changed = true;
  return changed ? "abdal" + rest : t;
}

// Generic spelling folding of one lower-case ASCII token, so that common
// transliteration variants meet: ch→sh, dj→j, ph→f, ck/q/c→k, x→ks, dh→z,
// ei/ey→ai, ou/oo→u, ee→i, then o→u and e→i (Arabic has three vowel qualities),
// y before a consonant → i, double letters single, final -ah → -a.
std::string FoldSpelling(absl::string_view in) {
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    const char n = i + 1 < in.size() ? in[i + 1] : '\0';
    if (c == 'c' && n == 'h') {
      s += "sh";
      ++i;
    } else if (c == 'd' && n == 'j') {
      s += 'j';
      ++i;
    } else if (c == 'p' && n == 'h') {
      s += 'f';
      ++i;
    } else if (c == 'c' && n == 'k') {
      s += 'k';
      ++i;
    } else if (c == 'd' && n == 'h') {
      s += 'z';
      ++i;
    } else if (c == 'e' && (n == 'i' || n == 'y')) {
      s += 'a';  // Zeinab, Hussein, Leyla, Oteibi: the diphthong ai
    } else if (c == 'o' && (n == 'u' || n == 'o')) {
      s += 'u';
      ++i;
    } else if (c == 'q' || c == 'c') {
      s += 'k';
    } else if (c == 'x') {
      s += "ks";
    } else if (c == 'o') {
      s += 'u';
    } else if (c == 'e') {
      s += 'i';
    } else {
      s += c;
    }
  }
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!out.empty() && out.back() == c) continue;  // double letters
    const bool next_consonant =
        i + 1 < s.size() && !IsVowel(s[i + 1]) && s[i + 1] != 'y';
    const bool final_after_consonant =
        i + 1 == s.size() && !IsVowel(s[i - (i > 0 ? 1 : 0)]);
    if (c == 'y' && i > 0 && (next_consonant || final_after_consonant)) {
      c = 'i';  // Aysha, Zaynab, Layla, Hany: y as a vowel
      if (!out.empty() && out.back() == 'i') continue;
    }
    out.push_back(c);
  }
  if (out.size() > 3 && out.substr(out.size() - 2) == "ah") out.pop_back();
  return out;
}

std::string FoldToken(const std::string& token) {
  return FoldSpelling(CanonicalAbd(token));
}

// Name families: the canonical spelling first, then other common spellings
// that the generic folding does not already bring to it. Keys and values
// are folded at start-up, so the table is written in ordinary spellings.
constexpr absl::string_view kVariantFamilies[][9] = {
    {"muhammad", "mohammed", "mohamed", "mohammad", "muhammed", "mohamad",
     "mouhamed", "mohamud", "mohd"},
    {"ahmad", "ahmed", "ahmet"},
    {"abdallah", "abdullah", "abdalla", "abdulla", "abdellah"},
    {"yusuf", "yousef", "youssef", "yosef", "yousif", "yusif", "youssif"},
    {"fatima", "fatma", "fatimah", "fatema", "fatmeh"},
    {"husain", "hussein", "husein", "hussain", "hossein", "husayn", "hussien"},
    {"uthman", "othman", "osman", "usman", "outhman"},
    {"aisha", "aicha", "ayesha", "aisyah"},
    {"mustafa", "mostafa", "moustafa", "mustapha"},
    {"zainab", "zeinab", "zaynab"},
    {"laila", "leila", "leyla"},
    {"maryam", "mariam", "meryem", "miriam"},
    {"abubakr", "abubakar", "abubaker", "aboubakr", "aboubakar"},
    {"ismail", "ismael", "esmail"},
    {"said", "saeed", "saaid"},
    {"yahya", "yehia", "yahia", "yehya"},
    {"zakariya", "zakaria", "zakariyya", "zakariyah"},
    {"aldin", "eldin", "eddin", "eddine", "eldine", "uddin", "addin"},
};

const std::vector<std::pair<std::string, std::string>>& VariantTable() {
  static const auto* table = [] {
    auto* t = new std::vector<std::pair<std::string, std::string>>;
    for (const auto& family : kVariantFamilies) {
      const std::string canonical = FoldToken(std::string(family[0]));
      for (absl::string_view spelling : family) {
        if (spelling.empty()) break;
        const std::string key = FoldToken(std::string(spelling));
        if (key != canonical) t->emplace_back(key, canonical);
      }
    }
    return t;
  }();
  return *table;
}

std::string CanonicalLatinToken(const std::string& token) {
  std::string folded = FoldToken(token);
  for (const auto& [key, canonical] : VariantTable()) {
    if (folded == key) return canonical;
  }
  return folded;
}

// Lower-case ASCII tokens before spelling folding: articles and compound
// heads joined, connectors dropped, an attached el-/il-/ul- article written
// al- (Elharbi = Alharbi).
std::vector<std::string> LatinRawTokens(absl::string_view name) {
  std::string folded;
  for (char32_t cp : DecodeUtf8(name)) {
    if (IsArabicCodePoint(cp)) {
      folded.push_back(' ');
    } else {
      FoldLatinCodePoint(cp, &folded);
    }
  }
  std::vector<std::string> tokens;
  std::string current;
  for (char c : folded) {
    if (c == ' ') {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  // A detached article is written "al" whatever its spelling (El Harbi,
  // ar-Rahman, ad-Din), then joined to the token after it.
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    if (IsLatinArticle(tokens[i], tokens[i + 1])) tokens[i] = "al";
  }
  tokens = JoinCompounds(
      std::move(tokens),
      [](const std::string& head, const std::string&) {
        return head == "al" || IsAbdHead(head) || IsAbuHead(head);
      },
      IsLatinConnector);
  for (std::string& t : tokens) {
    // Attached: Elharbi, Ulrahman. Not below six letters (Elias, Elham).
    if (t.size() >= 6 &&
        (StartsWith(t, "el") || StartsWith(t, "il") || StartsWith(t, "ul"))) {
      t = "al" + t.substr(2);
    }
  }
  // "X ad-Din" written as one word (Nasreddine, Salaheddine, Nizamuddin) is
  // split like the Arabic نصر الدين: x + aldin.
  std::vector<std::string> split;
  for (std::string& t : tokens) {
    bool done = false;
    for (absl::string_view din :
         {"eddine", "eddin", "eldine", "eldin", "uddin", "addin", "aldin"}) {
      if (t.size() >= din.size() + 3 &&
          absl::string_view(t).substr(t.size() - din.size()) == din) {
        split.push_back(t.substr(0, t.size() - din.size()));
        split.push_back("aldin");
        done = true;
        break;
      }
    }
    if (!done) split.push_back(std::move(t));
  }
  tokens = std::move(split);
  // A leading connector is kept (Ibn Khaldun), in one spelling.
  if (!tokens.empty() && IsLatinConnector(tokens[0])) tokens[0] = "bin";
  return tokens;
}

// ------------------------------------------------------ Transliteration --

// Whole-word transliterations of common normalised Arabic names (the
// canonical spelling of the variant table where there is one).
const std::vector<std::pair<std::u32string, std::string>>& ArabicDictionary() {
  static const auto* dict =
      new std::vector<std::pair<std::u32string, std::string>>{
          {U"محمد", "muhammad"},
          {U"احمد", "ahmad"},
          {U"محمود", "mahmud"},
          {U"مصطفي", "mustafa"},
          {U"عبدالله", "abdallah"},
          {U"الله", "allah"},
          {U"علي", "ali"},
          {U"عمر", "umar"},
          {U"عثمان", "uthman"},
          {U"يوسف", "yusuf"},
          {U"ابراهيم", "ibrahim"},
          {U"اسماعيل", "ismail"},
          {U"خالد", "khalid"},
          {U"حسن", "hasan"},
          {U"حسين", "husain"},
          {U"فاطمه", "fatima"},
          {U"عايشه", "aisha"},
          {U"مريم", "maryam"},
          {U"خديجه", "khadija"},
          {U"زينب", "zainab"},
          {U"نور", "nur"},
          {U"ساره", "sara"},
          {U"ليلي", "laila"},
          {U"امنه", "amina"},
          {U"امينه", "amina"},
          {U"اسامه", "usama"},
          {U"طارق", "tariq"},
          {U"سعيد", "said"},
          {U"سعد", "saad"},
          {U"فهد", "fahad"},
          {U"ناصر", "nasir"},
          {U"صالح", "salih"},
          {U"حمد", "hamad"},
          {U"حامد", "hamid"},
          {U"ماجد", "majid"},
          {U"راشد", "rashid"},
          {U"وليد", "walid"},
          {U"جمال", "jamal"},
          {U"كريم", "karim"},
          {U"هاني", "hani"},
          {U"منصور", "mansur"},
          {U"سلمان", "salman"},
          {U"سليمان", "sulaiman"},
          {U"يعقوب", "yaqub"},
          {U"موسي", "musa"},
          {U"عيسي", "isa"},
          {U"ياسين", "yasin"},
          {U"حمزه", "hamza"},
          {U"ابوبكر", "abubakr"},
          {U"عادل", "adil"},
          {U"عبدالرحمن", "abdalrahman"},
          {U"عبدالعزيز", "abdalaziz"},
          {U"عبدالكريم", "abdalkarim"},
          {U"عبدالقادر", "abdalqadir"},
          {U"نوره", "nura"},
          {U"هند", "hind"},
          {U"سلمي", "salma"},
          {U"رانيا", "rania"},
          {U"منيره", "munira"},
          {U"سعود", "saud"},
          {U"الياس", "ilyas"},
          {U"ايمان", "iman"},
          {U"ايمن", "ayman"},
          {U"الهام", "ilham"},
      };
  return *dict;
}

// Letters with one fixed spelling (docs/NAMES.md, "letter table").
constexpr std::pair<char32_t, absl::string_view> kLetters[] = {
    {U'ا', "a"}, {U'ب', "b"},  {U'ت', "t"},  {U'ث', "th"}, {U'ج', "j"},
    {U'ح', "h"}, {U'خ', "kh"}, {U'د', "d"},  {U'ذ', "dh"}, {U'ر', "r"},
    {U'ز', "z"}, {U'س', "s"},  {U'ش', "sh"}, {U'ص', "s"},  {U'ض', "d"},
    {U'ط', "t"}, {U'ظ', "z"},  {U'غ', "gh"}, {U'ف', "f"},  {U'ق', "q"},
    {U'ك', "k"}, {U'ل', "l"},  {U'م', "m"},  {U'ن', "n"}};

// Letter table for words not in the dictionary. Short vowels are not
// written in Arabic, so this gives consonants and long vowels only; the
// result is marked approximate and compared on consonant skeletons too.
std::string LetterTransliteration(const std::u32string& w) {
  std::string out;
  for (size_t i = 0; i < w.size(); ++i) {
    const char32_t c = w[i];
    const bool first = i == 0, last = i + 1 == w.size();
    // و and ي are consonants (w, y) at the start of a word, after ا or
    // before ا, and long vowels (u, i) elsewhere.
    const bool consonantal =
        first || w[i - 1] == kAlef || (!last && w[i + 1] == kAlef);
    if (c == kWaw) {
      out += consonantal ? 'w' : 'u';
    } else if (c == kYeh) {
      out += consonantal ? 'y' : 'i';
    } else if (c == kHeh) {
      out += last && !first ? 'a' : 'h';  // ة was folded to ه: -a
    } else if (c == U'ع') {
      if (!last) out += 'a';  // Abd, Saad, Jaafar; silent at the end
    } else if (c >= U'0' && c <= U'9') {
      out += static_cast<char>(c);
    } else {
      for (const auto& [letter, latin] : kLetters) {
        if (c == letter) {
          out.append(latin.data(), latin.size());
          break;
        }
      }
    }
  }
  return out;
}

struct Transliterated {
  std::string latin;  // before spelling folding
  bool approximate = false;
};

Transliterated TransliterateWord(const std::u32string& w) {
  for (const auto& [arabic, latin] : ArabicDictionary()) {
    if (w == arabic) return {latin, false};
  }
  // Compound heads and the article, then the rest as a word of its own
  // (which may be in the dictionary: الحسن → al + hasan).
  for (const auto& [head, latin] :
       {std::pair<const std::u32string&, const char*>{kAbd, "abd"},
        {kAbu, "abu"},
        {kArticle, "al"}}) {
    if (StartsWith(w, head) && w.size() > head.size() + 1) {
      std::u32string rest = w.substr(head.size());
      std::string prefix = latin;
      if (head == kAbd && !StartsWith(rest, kArticle)) prefix += "al";
      Transliterated t = TransliterateWord(rest);
      return {prefix + t.latin, t.approximate};
    }
  }
  return {LetterTransliteration(w), true};
}

struct Token {
  std::string form;  // canonical Latin
  // Whether `form` came from the letter table (no short vowels).
  bool approximate = false;
  // For a token written in Arabic: the letter table's rendering of its
  // normalised letters, dictionary or not. Two Arabic tokens are compared
  // on these: they say exactly which letters were written.
  std::string letters;
};

std::vector<Token> ArabicTokens(absl::string_view name) {
  std::vector<Token> out;
  const std::vector<std::u32string> words = NormalizeArabic32(name);
  for (size_t i = 0; i < words.size(); ++i) {
    if (i == 0 && (words[i] == kBin || words[i] == kIbn)) {
      out.push_back({"bin", false, "bin"});
      continue;
    }
    Transliterated t = TransliterateWord(words[i]);
    out.push_back({CanonicalLatinToken(t.latin), t.approximate,
                   LetterTransliteration(words[i])});
  }
  return out;
}

std::vector<Token> LatinTokens(absl::string_view name) {
  std::vector<Token> out;
  for (const std::string& t : LatinRawTokens(name)) {
    out.push_back({CanonicalLatinToken(t), false});
  }
  return out;
}

std::vector<Token> AnyTokens(absl::string_view name) {
  switch (ScriptOf(name)) {
    case Script::kEmpty:
      return {};
    case Script::kArabic:
      return ArabicTokens(name);
    case Script::kLatin:
      return LatinTokens(name);
    case Script::kMixed:
      break;
  }
  std::vector<Token> out;
  std::string chunk;
  auto flush = [&] {
    std::vector<Token> part = ScriptOf(chunk) == Script::kArabic
                                  ? ArabicTokens(chunk)
                                  : LatinTokens(chunk);
    out.insert(out.end(), part.begin(), part.end());
    chunk.clear();
  };
  for (char c : name) {
    if (c == ' ' || c == '\t') {
      flush();
    } else {
      chunk.push_back(c);
    }
  }
  flush();
  return out;
}

// ----------------------------------------------------------- Similarity --

// An "al" article set aside before comparing: Harbi = Alharbi, and
// Alharbi vs Alharthi is decided on harbi vs harthi (the shared article
// would otherwise earn a prefix bonus). Set aside from both tokens when both
// have it (Almri / Almari: short ones too), else from a token of 6+ letters
// only (Ali, Alia, Elias are names, not articles).
void StripArticles(absl::string_view* a, absl::string_view* b) {
  if (StartsWith(*a, "al") && StartsWith(*b, "al") && a->size() >= 5 &&
      b->size() >= 5) {
    a->remove_prefix(2);
    b->remove_prefix(2);
    return;
  }
  for (absl::string_view* t : {a, b}) {
    if (t->size() >= 6 && StartsWith(*t, "al")) t->remove_prefix(2);
  }
}

// Consonant skeleton: vowels and the half-vowels w and y dropped (the letter
// table cannot tell و and ي as long vowels from consonants), except a
// leading vowel (written 'a') and a final 'a' (the feminine ending: Samir /
// سميرة); repeated letters once.
std::string Skeleton(absl::string_view t) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (IsVowel(c) || c == 'w' || c == 'y') {
      if (i != 0 && !(i + 1 == t.size() && c == 'a')) continue;
      if (i == 0 && IsVowel(c)) c = 'a';
    }
    if (!out.empty() && out.back() == c) continue;
    out.push_back(c);
  }
  return out;
}

// Weight of any similarity short of equal canonical forms. The folding and
// the variant table already bring the usual spellings of one name to one
// form, so what differs after them (Khalid / Khalil, Rana / Rania, Samir /
// Samira) is more often another name than another spelling; and equal
// consonant skeletons of an approximate transliteration (حامد / Hamad) are
// likely but not certain to be the same name.
constexpr double kResidualWeight = 0.95;
// Similarity of a name and the same name with a feminine -a.
constexpr double kFeminineEnding = 0.8;
// Per missing token of the longer name (a partner sends given + family, the
// record has four parts): mild, so that a true match survives two missing
// middle names.
constexpr double kMissingTokenPenalty = 0.02;
constexpr size_t kMaxTokens = 10;

double TokenSim(const Token& a, const Token& b) {
  // Arabic against Arabic: the written letters, as they are (بدر / بادر,
  // حمد / حميد are two names each). Otherwise the canonical Latin forms, and
  // their skeletons when a letter-table transliteration is involved.
  if (!a.letters.empty() && !b.letters.empty()) {
    return TokenSimilarity(a.letters, b.letters, false);
  }
  return TokenSimilarity(a.form, b.form, a.approximate || b.approximate);
}

struct Assignment {
  double sum = 0;    // of the assigned pairs' similarities
  double worst = 1;  // the least similar assigned pair
};

// Best one-to-one assignment (largest sum; among equal sums the largest
// worst pair) of the middle tokens of `shorter` to the middle tokens of
// `longer`: a bit-mask dynamic programme over at most 8 middle tokens each.
Assignment BestMiddleAssignment(const std::vector<Token>& shorter,
                                const std::vector<Token>& longer) {
  const size_t k = shorter.size() - 2, l = longer.size() - 2;
  if (k == 0) return {};
  std::vector<std::vector<double>> sim(k, std::vector<double>(l));
  for (size_t i = 0; i < k; ++i) {
    for (size_t j = 0; j < l; ++j) {
      sim[i][j] = TokenSim(shorter[i + 1], longer[j + 1]);
    }
  }
  // best[mask]: the best assignment of the first popcount(mask) tokens of
  // `shorter` to the tokens of `longer` in mask; sum < 0 if none.
  std::vector<Assignment> best(size_t{1} << l, Assignment{-1, 0});
  best[0] = Assignment{};
  auto better = [](const Assignment& x, const Assignment& y) {
    return x.sum > y.sum || (x.sum == y.sum && x.worst > y.worst);
  };
  Assignment result{-1, 0};
  for (uint32_t mask = 0; mask < best.size(); ++mask) {
    if (best[mask].sum < 0) continue;
    const size_t i = static_cast<size_t>(__builtin_popcount(mask));
    if (i == k) {
      if (better(best[mask], result)) result = best[mask];
      continue;
    }
    for (size_t j = 0; j < l; ++j) {
      if (mask & (1u << j)) continue;
      const Assignment candidate{best[mask].sum + sim[i][j],
                                 std::min(best[mask].worst, sim[i][j])};
      Assignment& next = best[mask | (1u << j)];
      if (better(candidate, next)) next = candidate;
    }
  }
  return result;
}

// Keeps the first and last tokens and the first middle ones.
std::vector<Token> Capped(std::vector<Token> t) {
  if (t.size() <= kMaxTokens) return t;
  Token last = t.back();
  t.resize(kMaxTokens - 1);
  t.push_back(std::move(last));
  return t;
}

double Jaro(absl::string_view a, absl::string_view b) {
  if (a.empty() || b.empty()) return 0;
  const size_t window =
      std::max<size_t>(std::max(a.size(), b.size()) / 2, 1) - 1;
  std::vector<bool> a_match(a.size()), b_match(b.size());
  size_t matches = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const size_t lo = i > window ? i - window : 0;
    const size_t hi = std::min(b.size(), i + window + 1);
    for (size_t j = lo; j < hi; ++j) {
      if (!b_match[j] && a[i] == b[j]) {
        a_match[i] = b_match[j] = true;
        ++matches;
        break;
      }
    }
  }
  if (matches == 0) return 0;
  size_t transpositions = 0;
  for (size_t i = 0, j = 0; i < a.size(); ++i) {
    if (!a_match[i]) continue;
    while (!b_match[j]) ++j;
    if (a[i] != b[j]) ++transpositions;
    ++j;
  }
  const double m = static_cast<double>(matches);
  return (m / a.size() + m / b.size() + (m - transpositions / 2.0) / m) / 3.0;
}

std::string JoinedParts(const v1::PersonName& name) {
  std::vector<absl::string_view> parts;
  for (const std::string* part :
       {&name.given(), &name.father(), &name.grandfather(), &name.family()}) {
    if (!part->empty()) parts.push_back(*part);
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace

// Calibrated on the 122-pair table of tests/names_test.cc: true pairs score
// >= 0.936, different people <= 0.906; 0.93 lies in that gap
// (docs/NAMES.md has the figures).
const double kNameMatchThreshold = 0.93;

Script ScriptOf(absl::string_view name) {
  bool arabic = false, latin = false;
  for (char32_t cp : DecodeUtf8(name)) {
    if (IsArabicCodePoint(cp)) {
      const char32_t f = FoldArabicLetter(cp);
      if (f != kDrop && f != kSeparator && !(f >= U'0' && f <= U'9')) {
        arabic = true;
      }
    } else if ((cp >= U'a' && cp <= U'z') || (cp >= U'A' && cp <= U'Z') ||
               (cp >= 0x00C0 && cp <= 0x024F && cp != 0x00D7 && cp != 0x00F7) ||
               (cp >= 0x1E00 && cp <= 0x1EFF)) {
      latin = true;
    }
  }
  if (arabic && latin) return Script::kMixed;
  if (arabic) return Script::kArabic;
  return latin ? Script::kLatin : Script::kEmpty;
}

std::vector<std::string> NormalizeArabic(absl::string_view name) {
  std::vector<std::string> out;
  for (const std::u32string& t : NormalizeArabic32(name)) {
    out.push_back(ToUtf8(t));
  }
  return out;
}

std::vector<std::string> NormalizeLatin(absl::string_view name) {
  std::vector<std::string> out;
  for (Token& t : LatinTokens(name)) out.push_back(std::move(t.form));
  return out;
}

std::vector<std::string> TransliterateArabic(absl::string_view name) {
  std::vector<std::string> out;
  for (Token& t : ArabicTokens(name)) out.push_back(std::move(t.form));
  return out;
}

std::vector<std::string> CanonicalTokens(absl::string_view name) {
  std::vector<std::string> out;
  for (Token& t : AnyTokens(name)) out.push_back(std::move(t.form));
  return out;
}

double JaroWinkler(absl::string_view a, absl::string_view b) {
  if (a == b) return a.empty() ? 0 : 1;
  const double jaro = Jaro(a, b);
  size_t prefix = 0;
  while (prefix < 4 && prefix < a.size() && prefix < b.size() &&
         a[prefix] == b[prefix]) {
    ++prefix;
  }
  return jaro + prefix * 0.1 * (1 - jaro);
}

double TokenSimilarity(absl::string_view a, absl::string_view b,
                       bool approximate) {
  if (a.empty() || b.empty()) return 0;
  if (a == b) return 1;
  StripArticles(&a, &b);
  if (a == b) return 1;
  // Compound heads: Abdullah vs Abdulrahman is decided on the stems.
  for (absl::string_view head : {"abdal", "abu"}) {
    if (a.size() > head.size() && b.size() > head.size() &&
        StartsWith(a, head) && StartsWith(b, head)) {
      a.remove_prefix(head.size());
      b.remove_prefix(head.size());
      break;
    }
  }
  // The feminine ending: Samir / Samira, Amin / Amina are brother and
  // sister, not two spellings.
  if ((a.size() + 1 == b.size() && b.back() == 'a' && StartsWith(b, a)) ||
      (b.size() + 1 == a.size() && a.back() == 'a' && StartsWith(a, b))) {
    return kFeminineEnding;
  }
  double sim = JaroWinkler(a, b);
  if (approximate) sim = std::max(sim, JaroWinkler(Skeleton(a), Skeleton(b)));
  return kResidualWeight * sim;
}

NameComparison CompareNames(absl::string_view a, absl::string_view b) {
  NameComparison result;
  std::vector<Token> ta = Capped(AnyTokens(a)), tb = Capped(AnyTokens(b));
  if (ta.empty() || tb.empty()) return result;
  const std::vector<Token>& shorter = ta.size() <= tb.size() ? ta : tb;
  const std::vector<Token>& longer = ta.size() <= tb.size() ? tb : ta;
  // Given name against given name; with two or more tokens each, family
  // against family, and the middle names of the shorter name assigned to
  // those of the longer one (missing middle names are not compared).
  const double given = TokenSim(shorter.front(), longer.front());
  double sum = given, worst = given;
  if (shorter.size() >= 2) {
    const double family = TokenSim(shorter.back(), longer.back());
    const Assignment middle = BestMiddleAssignment(shorter, longer);
    sum += family + middle.sum;
    worst = std::min({worst, family, middle.worst});
  }
  const double mean = sum / static_cast<double>(shorter.size());
  const double penalty =
      1.0 - kMissingTokenPenalty *
                static_cast<double>(longer.size() - shorter.size());
  // Every compared pair must agree: a shared father and family name
  // (siblings) or a shared given and family name (cousins) never makes up
  // for one name that differs.
  result.similarity = std::clamp(std::min(mean * penalty, worst), 0.0, 1.0);
  result.match = result.similarity >= kNameMatchThreshold;
  return result;
}

namespace {

// A blocking key is the first kKeyLetters letters of a compared form of
// the given name; those longer than kLongStem letters also share the key
// "~" (see AddStemKeys).
constexpr size_t kKeyLetters = 3;
constexpr size_t kLongStem = 11;

// The strings TokenSimilarity may compare for token `t`: itself, without an
// "al" article, and either of those without an "abdal" / "abu" head. Over-
// generous (it ignores the length conditions), which only adds keys.
std::vector<std::string> Stems(const std::string& t) {
  std::vector<std::string> stems = {t};
  if (t.size() > 2 && StartsWith(t, "al")) stems.push_back(t.substr(2));
  for (size_t i = 0, n = stems.size(); i < n; ++i) {
    for (absl::string_view head : {"abdal", "abu"}) {
      if (stems[i].size() > head.size() && StartsWith(stems[i], head)) {
        stems.push_back(stems[i].substr(head.size()));
      }
    }
  }
  return stems;
}

// Why three letters: a match needs the given names' similarity >= 0.93,
// and TokenSimilarity gives unequal stems 0.95 * Jaro-Winkler, so JW >=
// 0.9789. If the stems differ in one of their first three letters, the
// Winkler prefix is at most 2, so Jaro >= 0.9736: the three Jaro terms
// (matches / |a|, matches / |b|, 1 - transpositions / 2 / matches) lose at
// most 0.079 in all. A differing letter there is unmatched (costing 1/|a|
// or 1/|b|) or matched out of order (two transposed positions cost
// 1/matches), so the longer stem has at least 13 letters and the other at
// least 12 (the rest of the loss allows no other difference). Every stem
// over kLongStem letters gets "~" as well.
void AddStemKeys(absl::string_view kind, const std::string& token,
                 std::vector<std::string>* keys) {
  for (const std::string& stem : Stems(token)) {
    keys->push_back(absl::StrCat(kind, stem.substr(0, kKeyLetters)));
    if (kind == "p") {
      // The consonant skeletons of approximate transliterations.
      keys->push_back(absl::StrCat("s", Skeleton(stem).substr(0, kKeyLetters)));
    }
    if (stem.size() > kLongStem) keys->push_back("~");
  }
}

}  // namespace

std::vector<std::string> NameBlockingKeys(absl::string_view name) {
  std::vector<std::string> keys;
  // CompareNames always compares the given names (first tokens); Capped
  // keeps the first token.
  const std::vector<Token> tokens = AnyTokens(name);
  if (tokens.empty()) return keys;
  const Token& given = tokens.front();
  if (given.form.empty() && given.letters.empty()) return keys;
  // TokenSim compares two Arabic tokens on their letters, any other pair on
  // the canonical forms (and skeletons).
  if (!given.form.empty()) AddStemKeys("p", given.form, &keys);
  if (!given.letters.empty()) AddStemKeys("l", given.letters, &keys);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::vector<std::string> NameBlockingKeys(const v1::PersonName& name) {
  return NameBlockingKeys(JoinedParts(name));
}

NameComparison CompareNames(const v1::PersonName& claimed,
                            const v1::PersonName& recorded) {
  return CompareNames(JoinedParts(claimed), JoinedParts(recorded));
}

}  // namespace hawiya::enroll::names
