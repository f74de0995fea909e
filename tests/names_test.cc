// Name normalisation and matching (enroll/names.h): one test per rule, and
// a table of real-world-style name pairs (synthetic combinations of common
// names, no real person's identity) on which the threshold is calibrated and
// precision and recall are asserted.
#include "enroll/names.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/types.pb.h"

namespace hawiya::enroll::names {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ------------------------------------------------------------- ScriptOf --

TEST(NamesScriptTest, ClassifiesLettersIgnoringDigitsAndPunctuation) {
  EXPECT_EQ(ScriptOf(""), Script::kEmpty);
  EXPECT_EQ(ScriptOf(" - 123 ٣"), Script::kEmpty);
  EXPECT_EQ(ScriptOf("\u064E\u0651"), Script::kEmpty);  // tashkeel only
  EXPECT_EQ(ScriptOf("محمد"), Script::kArabic);
  EXPECT_EQ(ScriptOf("ﻣﺤﻤﺪ"), Script::kArabic);  // presentation forms
  EXPECT_EQ(ScriptOf("Mohammed 2"), Script::kLatin);
  EXPECT_EQ(ScriptOf("Élodie"), Script::kLatin);
  EXPECT_EQ(ScriptOf("محمد Ali"), Script::kMixed);
}

// --------------------------------------------------------------- Arabic --

TEST(NamesArabicTest, StripsTashkeelAndTatweel) {
  EXPECT_THAT(NormalizeArabic("مُحَمَّد عَلِيّ"), ElementsAre("محمد", "علي"));
  EXPECT_THAT(NormalizeArabic("محمـــد"), ElementsAre("محمد"));
  EXPECT_THAT(NormalizeArabic("هٰذا"), ElementsAre("هذا"));  // dagger alef
}

TEST(NamesArabicTest, UnifiesAlefForms) {
  EXPECT_THAT(NormalizeArabic("أحمد إبراهيم آمنة ٱلحسن"),
              ElementsAre("احمد", "ابراهيم", "امنه", "الحسن"));
}

TEST(NamesArabicTest, AlefMaksuraTaMarbutaAndHamzaCarriers) {
  EXPECT_THAT(NormalizeArabic("مصطفى"), ElementsAre("مصطفي"));
  EXPECT_THAT(NormalizeArabic("فاطمة"), ElementsAre("فاطمه"));
  EXPECT_THAT(NormalizeArabic("مؤمن"), ElementsAre("مومن"));
  EXPECT_THAT(NormalizeArabic("عائشة"), ElementsAre("عايشه"));
}

TEST(NamesArabicTest, DropsStandaloneHamza) {
  // أسماء and اسما are the same name written with and without the hamza.
  EXPECT_EQ(NormalizeArabic("أسماء"), NormalizeArabic("اسما"));
  EXPECT_THAT(NormalizeArabic("علاء"), ElementsAre("علا"));
}

TEST(NamesArabicTest, ArabicIndicAndEasternDigitsBecomeAscii) {
  EXPECT_THAT(NormalizeArabic("٠١٢٣٤٥٦٧٨٩"), ElementsAre("0123456789"));
  EXPECT_THAT(NormalizeArabic("۰۱۲۳۴۵۶۷۸۹"), ElementsAre("0123456789"));
}

TEST(NamesArabicTest, PersianAndUrduLetterVariants) {
  EXPECT_EQ(NormalizeArabic("کریم"), NormalizeArabic("كريم"));
  EXPECT_EQ(NormalizeArabic("علی"), NormalizeArabic("علي"));
  EXPECT_EQ(NormalizeArabic("ھند"), NormalizeArabic("هند"));
}

TEST(NamesArabicTest, PresentationFormsAndLigatures) {
  EXPECT_THAT(NormalizeArabic("ﻣﺤﻤﺪ ﺍﻟﺤﺮﺑﻲ"), ElementsAre("محمد", "الحربي"));
  // Seen initial, lam-alef final ligature, meem isolated: سلام.
  EXPECT_THAT(NormalizeArabic("\uFEB3\uFEFC\uFEE1"), ElementsAre("سلام"));
  EXPECT_THAT(NormalizeArabic("عبد \uFDF2"), ElementsAre("عبدالله"));
  EXPECT_THAT(NormalizeArabic("\uFB8F\uFBFE"), ElementsAre("كي"));
}

TEST(NamesArabicTest, AbdCompoundsAreOneToken) {
  const std::vector<std::string> expected = {"عبدالله"};
  EXPECT_EQ(NormalizeArabic("عبد الله"), expected);
  EXPECT_EQ(NormalizeArabic("عبدالله"), expected);
  EXPECT_EQ(NormalizeArabic("عبد اللّه"), expected);
  EXPECT_EQ(NormalizeArabic("عبدُ اللهِ"), expected);
  EXPECT_THAT(NormalizeArabic("عبد الرحمن سعد"),
              ElementsAre("عبدالرحمن", "سعد"));
}

TEST(NamesArabicTest, AbuJoinsAndConnectorsAreDropped) {
  EXPECT_THAT(NormalizeArabic("أبو بكر"), ElementsAre("ابوبكر"));
  EXPECT_THAT(NormalizeArabic("محمد بن سلمان"), ElementsAre("محمد", "سلمان"));
  EXPECT_THAT(NormalizeArabic("محمد ابن سلمان"), ElementsAre("محمد", "سلمان"));
  EXPECT_THAT(NormalizeArabic("نورة بنت سعد"), ElementsAre("نوره", "سعد"));
  // A leading connector is part of the name (ابن خلدون) and kept.
  EXPECT_THAT(NormalizeArabic("ابن خلدون"), ElementsAre("ابن", "خلدون"));
  // A detached article or آل joins its noun.
  EXPECT_THAT(NormalizeArabic("آل سعود"), ElementsAre("السعود"));
}

TEST(NamesArabicTest, SeparatorsAndInvisibleCharacters) {
  EXPECT_THAT(NormalizeArabic("محمد،علي-حسن"),
              ElementsAre("محمد", "علي", "حسن"));
  EXPECT_THAT(NormalizeArabic("\u200Fمحم\u200Cد\u200E"), ElementsAre("محمد"));
  EXPECT_THAT(NormalizeArabic("  "), IsEmpty());
}

TEST(NamesArabicTest, InvalidUtf8IsSkippedNotFatal) {
  EXPECT_THAT(NormalizeArabic("مح\xFF\xC3مد"), ElementsAre("محمد"));
  EXPECT_THAT(NormalizeLatin("Ali\xE2\x82"), ElementsAre("ali"));
}

// ---------------------------------------------------------------- Latin --

TEST(NamesLatinTest, CaseAndDiacriticsFolding) {
  EXPECT_THAT(NormalizeLatin("FÁTIMA Zahrá"), ElementsAre("fatima", "zahra"));
  EXPECT_EQ(NormalizeLatin("Aïcha"), NormalizeLatin("aicha"));
  EXPECT_EQ(NormalizeLatin("Hélène"), NormalizeLatin("Helene"));
  EXPECT_EQ(NormalizeLatin("Şükrü Çelik"), NormalizeLatin("Sukru Celik"));
  // Decomposed input (combining acute) and scholarly dots below.
  EXPECT_EQ(NormalizeLatin("Fa\u0301tima"), NormalizeLatin("Fatima"));
  EXPECT_EQ(NormalizeLatin("Ḥasan Ṣāliḥ"), NormalizeLatin("Hasan Salih"));
  EXPECT_THAT(NormalizeLatin("Jørgen"), ElementsAre("jurgin"));
}

TEST(NamesLatinTest, ApostrophesAndAynMarksAreRemoved) {
  const std::vector<std::string> expected = NormalizeLatin("Abdallah");
  EXPECT_EQ(NormalizeLatin("Abd'Allah"), expected);
  EXPECT_EQ(NormalizeLatin("Abd\u2019Allah"), expected);
  EXPECT_EQ(NormalizeLatin("\u02BFAbd All\u0101h"), expected);
  EXPECT_EQ(NormalizeLatin("Sa'ad"), NormalizeLatin("Saad"));
}

TEST(NamesLatinTest, ArticleAttachedOrDetached) {
  for (absl::string_view spelling :
       {"Al-Harbi", "Alharbi", "El Harbi", "al harbi", "AL HARBI", "El-Harbi",
        "Elharbi"}) {
    EXPECT_THAT(NormalizeLatin(spelling), ElementsAre("alharbi")) << spelling;
  }
  // Sun-letter assimilation is the same article.
  EXPECT_EQ(NormalizeLatin("ar-Rahman"), NormalizeLatin("al-Rahman"));
  EXPECT_EQ(NormalizeLatin("Nasr ad-Din"), NormalizeLatin("Nasr Eldin"));
  // Short names starting with El/Al are names, not articles.
  EXPECT_THAT(NormalizeLatin("Elias Ali"), ElementsAre("ilias", "ali"));
}

TEST(NamesLatinTest, AbdCompoundsAreOneToken) {
  for (absl::string_view spelling :
       {"Abdul Rahman", "Abdulrahman", "Abd al-Rahman", "Abdel Rahman",
        "Abdel-Rahman", "Abdurrahman", "Abd ar-Rahman", "Abdur Rahman",
        "Abd-ur-Rahman"}) {
    EXPECT_THAT(NormalizeLatin(spelling), ElementsAre("abdalrahman"))
        << spelling;
  }
  EXPECT_EQ(NormalizeLatin("Abdullah"), NormalizeLatin("Abd Allah"));
  EXPECT_EQ(NormalizeLatin("Abdulla"), NormalizeLatin("Abdallah"));
  EXPECT_EQ(NormalizeLatin("Abdelkader"), NormalizeLatin("Abdul Qadir"));
  EXPECT_NE(NormalizeLatin("Abdullah"), NormalizeLatin("Abdulrahman"));
  // A bare head is a name of its own.
  EXPECT_THAT(NormalizeLatin("Abdou"), ElementsAre("abdu"));
}

TEST(NamesLatinTest, AdDinCompoundsSplitLikeTheArabic) {
  const std::vector<std::string> expected = NormalizeLatin("Nasr al-Din");
  EXPECT_EQ(expected.size(), 2u);
  EXPECT_EQ(NormalizeLatin("Nasreddine"), expected);
  EXPECT_EQ(NormalizeLatin("Nasr Eddine"), expected);
  EXPECT_EQ(NormalizeLatin("Nasruddin"), expected);
  // Same token count as the Arabic, so the names pair up token by token.
  EXPECT_THAT(TransliterateArabic("نصر الدين"), ElementsAre("nsr", "aldin"));
  EXPECT_TRUE(CompareNames("نصر الدين خليل", "Nasreddine Khalil").match);
  EXPECT_EQ(NormalizeLatin("Salaheddine"), NormalizeLatin("Salah Eddine"));
}

TEST(NamesLatinTest, ConnectorsAndAbu) {
  const std::vector<std::string> expected = {"umar", "khalid"};
  EXPECT_EQ(NormalizeLatin("Omar bin Khalid"), expected);
  EXPECT_EQ(NormalizeLatin("Omar ibn Khalid"), expected);
  EXPECT_EQ(NormalizeLatin("Omar Ben Khaled"), expected);
  EXPECT_EQ(NormalizeLatin("Omar Khalid"), expected);
  EXPECT_THAT(NormalizeLatin("Ibn Khaldun"), ElementsAre("bin", "khaldun"));
  EXPECT_EQ(NormalizeLatin("Abu Bakr"), NormalizeLatin("Abubakar"));
  EXPECT_EQ(NormalizeLatin("Abou Bakr"), NormalizeLatin("Abubakr"));
}

TEST(NamesLatinTest, VariantTableFamilies) {
  const std::vector<std::vector<absl::string_view>> families = {
      {"Muhammad", "Mohammed", "Mohamed", "Mohammad", "Muhammed", "Mohamad",
       "Mohd"},
      {"Ahmad", "Ahmed"},
      {"Abdullah", "Abdallah", "Abdulla"},
      {"Yusuf", "Yousef", "Youssef", "Yosef", "Yousif", "Yusef"},
      {"Fatima", "Fatma", "Fatimah", "Fatema"},
      {"Hussein", "Husain", "Hussain", "Hossein", "Husayn"},
      {"Khalid", "Khaled"},
      {"Omar", "Umar"},
      {"Osama", "Usama", "Oussama"},
      {"Aisha", "Aysha", "Aicha", "Ayesha", "Aishah"},
      {"Mustafa", "Mostafa", "Moustafa", "Mustapha"},
      {"Ibrahim", "Ebrahim"},
      {"Uthman", "Othman", "Osman", "Usman"},
      {"Zainab", "Zeinab", "Zaynab"},
      {"Laila", "Layla", "Leila", "Leyla"},
      {"Yahya", "Yehia", "Yahia"},
  };
  for (const auto& family : families) {
    for (absl::string_view spelling : family) {
      EXPECT_EQ(NormalizeLatin(spelling), NormalizeLatin(family[0]))
          << spelling << " vs " << family[0];
    }
  }
}

TEST(NamesLatinTest, GenericPhoneticFolding) {
  EXPECT_EQ(NormalizeLatin("Noor"), NormalizeLatin("Nour"));
  EXPECT_EQ(NormalizeLatin("Nur"), NormalizeLatin("Nour"));
  EXPECT_EQ(NormalizeLatin("Waleed"), NormalizeLatin("Walid"));
  EXPECT_EQ(NormalizeLatin("Khadijah"), NormalizeLatin("Khadija"));
  EXPECT_EQ(NormalizeLatin("Tarek"), NormalizeLatin("Tariq"));
  EXPECT_EQ(NormalizeLatin("Djamel"), NormalizeLatin("Jamil"));
  EXPECT_EQ(NormalizeLatin("Dhafer"), NormalizeLatin("Zafir"));
  EXPECT_EQ(NormalizeLatin("Hany"), NormalizeLatin("Hani"));
  EXPECT_EQ(NormalizeLatin("Al-Shammari"), NormalizeLatin("Alshamari"));
  EXPECT_EQ(NormalizeLatin("Al-Oteibi"), NormalizeLatin("Al-Otaibi"));
  // ... and not further: these are other names.
  EXPECT_NE(NormalizeLatin("Ahmed"), NormalizeLatin("Hamed"));
  EXPECT_NE(NormalizeLatin("Hamad"), NormalizeLatin("Hamid"));
  EXPECT_NE(NormalizeLatin("Samir"), NormalizeLatin("Samira"));
  EXPECT_NE(NormalizeLatin("Hassan"), NormalizeLatin("Hussein"));
}

// ------------------------------------------------------ Transliteration --

TEST(NamesTransliterationTest, DictionaryNamesMeetTheirLatinSpellings) {
  const std::vector<std::pair<absl::string_view, absl::string_view>> pairs = {
      {"محمد", "Mohammed"},     {"أحمد", "Ahmad"},
      {"عبد الله", "Abdullah"}, {"عبد الرحمن", "Abdul Rahman"},
      {"يوسف", "Youssef"},      {"فاطمة", "Fatma"},
      {"عائشة", "Aicha"},       {"حسين", "Hussein"},
      {"عمر", "Omar"},          {"أسامة", "Osama"},
      {"مصطفى", "Mostafa"},     {"إبراهيم", "Ebrahim"},
      {"خالد", "Khaled"},       {"أبو بكر", "Abubakar"},
      {"سعيد", "Saeed"},        {"زينب", "Zeinab"},
      {"ليلى", "Leila"},        {"عيسى", "Issa"},
  };
  for (const auto& [arabic, latin] : pairs) {
    EXPECT_EQ(TransliterateArabic(arabic), NormalizeLatin(latin)) << latin;
  }
}

TEST(NamesTransliterationTest, LetterTableForOtherWords) {
  // Consonants and long vowels only: short vowels are not written.
  EXPECT_THAT(TransliterateArabic("بدر"), ElementsAre("bdr"));
  EXPECT_THAT(TransliterateArabic("الحربي"), ElementsAre("alhrbi"));
  // ة at the end reads -a; ع inside a word reads a; ش, خ, ث are digraphs.
  EXPECT_THAT(TransliterateArabic("رشا خلود ثامر"),
              ElementsAre("rsha", "khlud", "thamr"));
  // The article before a dictionary word: al + the word's spelling.
  EXPECT_THAT(TransliterateArabic("الحسن"), ElementsAre("alhasan"));
  // Output is already canonical: NormalizeLatin leaves it unchanged.
  for (absl::string_view name : {"هشام بدر الشمري", "عبدالمجيد القحطاني"}) {
    const std::vector<std::string> latin = TransliterateArabic(name);
    EXPECT_EQ(NormalizeLatin(absl::StrJoin(latin, " ")), latin) << name;
  }
}

TEST(NamesTransliterationTest, CanonicalTokensFollowEachChunksScript) {
  EXPECT_THAT(CanonicalTokens("محمد Al-Harbi"),
              ElementsAre("muhamad", "alharbi"));
  EXPECT_EQ(CanonicalTokens("محمد"), TransliterateArabic("محمد"));
  EXPECT_EQ(CanonicalTokens("Mohamed"), NormalizeLatin("Mohamed"));
  EXPECT_THAT(CanonicalTokens(""), IsEmpty());
}

// ----------------------------------------------------------- Similarity --

TEST(NamesSimilarityTest, JaroWinklerReferenceValues) {
  // Winkler's published examples.
  EXPECT_NEAR(JaroWinkler("martha", "marhta"), 0.961, 0.001);
  EXPECT_NEAR(JaroWinkler("dwayne", "duane"), 0.840, 0.001);
  EXPECT_NEAR(JaroWinkler("dixon", "dicksonx"), 0.813, 0.001);
  EXPECT_DOUBLE_EQ(JaroWinkler("ali", "ali"), 1.0);
  EXPECT_DOUBLE_EQ(JaroWinkler("abc", "xyz"), 0.0);
  EXPECT_DOUBLE_EQ(JaroWinkler("", ""), 0.0);
  EXPECT_DOUBLE_EQ(JaroWinkler("a", ""), 0.0);
}

TEST(NamesSimilarityTest, TokenSimilarityRules) {
  EXPECT_DOUBLE_EQ(TokenSimilarity("alharbi", "harbi"), 1.0);  // article
  // Residual differences are discounted below the threshold.
  EXPECT_LT(TokenSimilarity("khalid", "khalil"), kNameMatchThreshold);
  EXPECT_LT(TokenSimilarity("rania", "rana"), kNameMatchThreshold);
  // The feminine ending.
  EXPECT_LT(TokenSimilarity("samir", "samira"), 0.85);
  // Compound heads do not make Abdullah and Abdulrahman alike.
  EXPECT_LT(TokenSimilarity("abdala", "abdalrahman"), 0.8);
  EXPECT_GT(JaroWinkler("abdala", "abdalrahman"), 0.9);
  // Approximate transliterations are compared on consonant skeletons.
  EXPECT_LT(TokenSimilarity("alhrbi", "alharbi", false),
            TokenSimilarity("alhrbi", "alharbi", true));
  EXPECT_GE(TokenSimilarity("alhrbi", "alharbi", true), kNameMatchThreshold);
}

TEST(NamesSimilarityTest, ArabicAgainstArabicComparesTheWrittenLetters) {
  // Across scripts a missing short vowel is expected (بدر / Bader); between
  // two Arabic spellings a different letter is another name.
  EXPECT_TRUE(CompareNames("بدر", "Bader").match);
  EXPECT_FALSE(CompareNames("بدر", "بادر").match);
  EXPECT_FALSE(CompareNames("حمد الكعبي", "حميد الكعبي").match);
  EXPECT_TRUE(CompareNames("بدر الكعبي", "بدر الكعبى").match);
}

TEST(NamesSimilarityTest, EqualNamesAndEmptyNames) {
  EXPECT_DOUBLE_EQ(CompareNames("Ali Hassan", "ALI HASAN").similarity, 1.0);
  EXPECT_TRUE(CompareNames("Ali Hassan", "ALI HASAN").match);
  EXPECT_DOUBLE_EQ(CompareNames("", "Ali").similarity, 0.0);
  EXPECT_FALSE(CompareNames("", "").match);
  EXPECT_FALSE(CompareNames("--", "Ali").match);
}

TEST(NamesSimilarityTest, IsSymmetric) {
  for (const auto& [a, b] : std::vector<std::pair<const char*, const char*>>{
           {"محمد الحربي", "Mohammed Abdullah Saad Al-Harbi"},
           {"Ahmed Al-Harbi", "Hamed Al-Harbi"},
           {"Mohammed Ali", "Ali Mohammed"}}) {
    EXPECT_DOUBLE_EQ(CompareNames(a, b).similarity,
                     CompareNames(b, a).similarity);
  }
}

TEST(NamesSimilarityTest, OrderMattersGivenNameFirst) {
  EXPECT_FALSE(CompareNames("Mohammed Ali", "Ali Mohammed").match);
  EXPECT_FALSE(CompareNames("محمد علي", "علي محمد").match);
}

TEST(NamesSimilarityTest, MissingMiddleNamesCostAMildPenalty) {
  const NameComparison two_missing =
      CompareNames("Mohammed Al-Harbi", "Mohammed Abdullah Saad Al-Harbi");
  EXPECT_TRUE(two_missing.match);
  EXPECT_NEAR(two_missing.similarity, 0.96, 1e-9);
  const NameComparison one_missing =
      CompareNames("Mohammed Saad Al-Harbi", "Mohammed Abdullah Saad Al-Harbi");
  EXPECT_NEAR(one_missing.similarity, 0.98, 1e-9);
  // A middle name that is there but differs is not "missing".
  EXPECT_FALSE(CompareNames("Mohammed Khalid Al-Harbi",
                            "Mohammed Abdullah Saad Al-Harbi")
                   .match);
  // Given and family must both match.
  EXPECT_FALSE(
      CompareNames("Mohammed Al-Harbi", "Mohammed Abdullah Al-Otaibi").match);
  EXPECT_FALSE(
      CompareNames("Fahad Al-Harbi", "Mohammed Abdullah Al-Harbi").match);
}

TEST(NamesSimilarityTest, PersonNameOverloadJoinsNonEmptyParts) {
  v1::PersonName claimed;
  claimed.set_given("Mohammed");
  claimed.set_family("Al-Harbi");
  v1::PersonName recorded;
  recorded.set_given("محمد");
  recorded.set_father("عبدالله");
  recorded.set_grandfather("");
  recorded.set_family("الحربي");
  const NameComparison by_parts = CompareNames(claimed, recorded);
  const NameComparison joined =
      CompareNames("Mohammed Al-Harbi", "محمد عبدالله الحربي");
  EXPECT_DOUBLE_EQ(by_parts.similarity, joined.similarity);
  EXPECT_TRUE(by_parts.match);
  // Empty parts are skipped, not compared as empty tokens.
  v1::PersonName sparse;
  sparse.set_given("Mohammed");
  sparse.set_grandfather("Saad");
  sparse.set_family("Al-Harbi");
  EXPECT_DOUBLE_EQ(
      CompareNames(sparse, recorded).similarity,
      CompareNames("Mohammed Saad Al-Harbi", "محمد عبدالله الحربي").similarity);
  v1::PersonName other = claimed;
  other.set_given("Hamed");
  EXPECT_FALSE(CompareNames(other, recorded).match);
  EXPECT_FALSE(CompareNames(v1::PersonName(), recorded).match);
}

// Declared with the table below.
struct NamePair;
const std::vector<NamePair>& Table();
const std::vector<NamePair>& HeldOutTable();
std::vector<std::string> AllTableNames();

TEST(NamesLatinTest, CanonicalTokensAreAFixedPoint) {
  // The header's contract: normalising the output again changes nothing,
  // for every name of the tables (Arabic ones through the transliteration).
  for (const std::string& name : AllTableNames()) {
    const std::vector<std::string> tokens = CanonicalTokens(name);
    EXPECT_EQ(NormalizeLatin(absl::StrJoin(tokens, " ")), tokens) << name;
  }
}

// ----------------------------------------------------------- The table --

struct NamePair {
  const char* a;
  const char* b;
  bool same;  // the same person's name
};

// Same-person pairs are spellings one person's name really takes (records,
// passports, partner files); different-person pairs are hard negatives:
// near-homographs, siblings and cousins sharing names, swapped order.
const std::vector<NamePair>& Table() {
  static const auto* table = new std::vector<NamePair>{
      // Same person, Latin / Latin.
      {"Mohammed Al-Harbi", "Muhammad Alharbi", true},
      {"Mohamed Abdullah Al Otaibi", "Mohammad Abdallah Alotaibi", true},
      {"Abdul Rahman Al-Shammari", "Abdulrahman Alshammari", true},
      {"Yousef Khaled Al-Mutairi", "Yusuf Khalid Almutairi", true},
      {"Fatima Hassan", "Fatma Hasan", true},
      {"Aisha Omar Al-Zahrani", "Aicha Umar El Zahrani", true},
      {"Hussein Ali Al-Shammari", "Husain Ali Alshammari", true},
      {"Osama Saleh Al-Dosari", "Usama Salih Aldosari", true},
      {"Mustafa Ibrahim Haddad", "Mostafa Ebrahim Haddad", true},
      {"Abd al-Aziz Nasser Al-Qahtani", "Abdulaziz Nasir Alqahtani", true},
      {"Khadija Ahmed Mansour", "Khadijah Ahmad Mansur", true},
      {"Noor Saeed Al-Ghamdi", "Nour Said Alghamdi", true},
      {"Zeinab Mahmoud", "Zainab Mahmood", true},
      {"Layla Youssef Al-Amin", "Leila Yousef Alamin", true},
      {"Abu Bakr Salem", "Abubakar Salim", true},
      {"Mohammed Abdullah Saad Al-Harbi", "Mohammed Al-Harbi", true},
      {"Ahmed Saleh Al Ghamdi", "Ahmed Saleh Mohammed Al-Ghamdi", true},
      {"Aïcha Ben Saïd", "Aicha Ben Said", true},
      {"Omar bin Khalid Al-Otaibi", "Omar Khaled Alotaibi", true},
      {"Ismail Abd'Allah", "Ismael Abdallah", true},
      {"Ahmed El-Sayed", "Ahmad Elsayed", true},
      {"Rashed Al-Mansoori", "Rashid Almansouri", true},
      {"Waleed Jamal", "Walid Djamal", true},
      {"Abdelkader Ben Youssef", "Abdulqadir Yusuf", true},
      {"Abdurrahman ad-Dosari", "Abd ar-Rahman Al-Dosari", true},
      {"Hany Fahmy", "Hani Fahmi", true},
      {"Ayesha Tariq", "Aisha Tarek", true},
      {"Abdel Karim Al-Khatib", "Abdulkarim Alkhatib", true},
      {"Mohammed Al-Oteibi", "Mohammed Al-Otaibi", true},
      {"Mohd Rashid Ismail", "Mohammed Rashid Ismail", true},
      {"Yahya Zakariya", "Yehia Zakaria", true},
      {"Ghada Al-Sabah", "Ghadah Alsabah", true},
      {"Tamer Hosny", "Tamer Husni", true},
      {"Faisal Turki", "Faysal Turky", true},
      {"Nasreddine Khalil", "Nasr al-Din Khalil", true},
      // Same person, Arabic / Latin.
      {"محمد عبدالله الحربي", "Mohammed Abdullah Al-Harbi", true},
      {"أحمد صالح الغامدي", "Ahmed Saleh Al-Ghamdi", true},
      {"فاطمة حسن", "Fatima Hassan", true},
      {"عائشة عمر الزهراني", "Aisha Omar Al-Zahrani", true},
      {"يوسف خالد المطيري", "Yousef Khaled Al-Mutairi", true},
      {"عبد الرحمن ناصر القحطاني", "Abdulrahman Nasser Al-Qahtani", true},
      {"خديجة أحمد منصور", "Khadija Ahmed Mansour", true},
      {"حسين علي الشمري", "Hussein Ali Al-Shammari", true},
      {"أسامة سعيد الدوسري", "Osama Saeed Al-Dosari", true},
      {"مصطفى إبراهيم حداد", "Mustafa Ibrahim Haddad", true},
      {"نورة سعد العتيبي", "Noura Saad Al-Otaibi", true},
      {"عبدالعزيز فهد السبيعي", "Abdulaziz Fahad Al-Subaie", true},
      {"زينب محمود", "Zainab Mahmoud", true},
      {"عمر بن خالد", "Omar bin Khalid", true},
      {"ليلى يوسف الأمين", "Layla Yousef Al-Amin", true},
      {"طارق حمد الكعبي", "Tariq Hamad Al-Kaabi", true},
      {"مريم سالم النعيمي", "Mariam Salem Al-Nuaimi", true},
      {"إسماعيل عبدالله", "Ismail Abdallah", true},
      {"هند ماجد العنزي", "Hind Majed Al-Anazi", true},
      {"سلمان راشد المنصوري", "Salman Rashid Al-Mansoori", true},
      {"وليد جمال", "Walid Jamal", true},
      {"محمد الحربي", "Mohammed Abdullah Saad Al-Harbi", true},
      {"ﻣﺤﻤﺪ ﺍﻟﺤﺮﺑﻲ", "Muhammad Alharbi", true},
      {"كريم ياسين", "Karim Yassin", true},
      {"سامي الخطيب", "Sami Al-Khatib", true},
      {"منيرة خليل", "Munira Khalil", true},
      {"جعفر العلي", "Jaafar Al-Ali", true},
      {"عبدالمجيد الشهري", "Abdulmajeed Al-Shehri", true},
      {"إيمان خالد", "Eman Khaled", true},
      {"ضياء الدين سالم", "Diaa Eldin Salem", true},
      {"سعاد الكويتي", "Souad Al-Kuwaiti", true},
      {"هشام بدر", "Hisham Badr", true},
      {"هشام بدر", "Hesham Bader", true},
      {"شيماء عادل", "Shaimaa Adel", true},
      {"عبير فؤاد", "Abeer Fouad", true},
      {"ثامر العجمي", "Thamer Al-Ajmi", true},
      {"دعاء", "Doaa", true},
      // Same person, Arabic / Arabic.
      {"عبد الله سعد الحربي", "عبدالله سعد الحربي", true},
      {"أحمد إبراهيم", "احمد ابراهيم", true},
      {"مُحَمَّد عَلِيّ", "محمد علي", true},
      {"عيسى موسى", "عيسي موسي", true},
      {"محمـــد الحربي", "محمد الحربي", true},
      {"عبد اللّه بن سعيد", "عبدالله سعيد", true},
      // Different people, Latin / Latin.
      {"Ahmed Al-Harbi", "Hamed Al-Harbi", false},
      {"Mohammed Ali", "Ali Mohammed", false},
      {"Fatima Ahmed Al-Otaibi", "Aisha Ahmed Al-Otaibi", false},
      {"Noura Saad Al-Ghamdi", "Sara Saad Al-Ghamdi", false},
      {"Abdullah Nasser Al-Qahtani", "Abdulrahman Nasser Al-Qahtani", false},
      {"Abdulaziz Fahad", "Abdulkarim Fahad", false},
      {"Mohammed Al-Harbi", "Mohammed Al-Harthi", false},
      {"Hassan Ali", "Hussein Ali", false},
      {"Khalid Saleh", "Khalil Saleh", false},
      {"Omar Al-Shammari", "Amr Al-Shammari", false},
      {"Saad Al-Dosari", "Saud Al-Dosari", false},
      {"Majed Al-Mutairi", "Maher Al-Mutairi", false},
      {"Mahmoud Abbas Haddad", "Mohammed Abbas Haddad", false},
      {"Yousef Al-Amin", "Younes Al-Amin", false},
      {"Layla Hassan", "Lina Hassan", false},
      {"Karim Mansour", "Kareem Nasser", false},
      {"Salem Al-Kaabi", "Salman Al-Kaabi", false},
      {"Hamad Rashid", "Hamid Rashid", false},
      {"Fatima Al-Zahrani", "Fatima Al-Shahrani", false},
      {"Ali Hassan Al-Harbi", "Ali Hussein Al-Harbi", false},
      {"Mohammed Abdullah Al-Harbi", "Mohammed Abdulrahman Al-Harbi", false},
      {"Yasmin Ali", "Yasser Ali", false},
      {"Sami Mohammed", "Sara Mohammed", false},
      {"Nasser Al-Qahtani", "Nasser Al-Kathiri", false},
      {"Mona Khalil", "Maha Khalil", false},
      {"Rania Ahmed", "Rana Ahmed", false},
      {"Samir Al-Khatib", "Samira Al-Khatib", false},
      {"Amin Saleh", "Amina Saleh", false},
      {"Nasr Hamza", "Nasser Hamza", false},
      {"Samer Al-Ajmi", "Thamer Al-Ajmi", false},
      {"Mohammed Ahmed Al-Ali", "Ahmed Mohammed Al-Ali", false},
      {"Bassam Nader", "Basem Nader", false},
      // Different people, Arabic / Latin and Arabic / Arabic.
      {"محمد علي", "علي محمد", false},
      {"أحمد الحربي", "Hamed Al-Harbi", false},
      {"فاطمة أحمد العتيبي", "Aisha Ahmed Al-Otaibi", false},
      {"عبدالله ناصر", "Abdulrahman Nasser", false},
      {"حامد سالم", "Ahmed Salem", false},
      {"سعد الدوسري", "Saud Al-Dosari", false},
      {"حمد الكعبي", "حامد الكعبي", false},
      {"خالد صالح", "خليل صالح", false},
      {"مريم سالم", "Maryam Salman", false},
      {"علي الحربي", "Ali Al-Harthi", false},
      {"نورة سعد الغامدي", "Sara Saad Al-Ghamdi", false},
      {"أيمن خالد", "Eman Khaled", false},
  };
  return *table;
}

// Written after the rules and the threshold were fixed on Table(), to see
// how they carry over to names they were not tuned on. (It showed one bug,
// fixed since: the article was set aside from Almari but not from the
// letter-table Almri. Nothing else was changed for it.)
const std::vector<NamePair>& HeldOutTable() {
  static const auto* table = new std::vector<NamePair>{
      {"Saleh Abdulaziz Al-Rashid", "Salih Abdel Aziz Alrashid", true},
      {"عبدالرحمن العمري", "Abdulrahman Al-Omari", true},
      {"Mariam Youssef", "Maryam Yusuf", true},
      {"فيصل تركي العتيبي", "Faisal Turki Al-Otaibi", true},
      {"بدر ناصر", "Bader Nasser", true},
      {"Reem Al-Dossary", "Reem Aldosari", true},
      {"ريم الدوسري", "Reem Al-Dossary", true},
      {"Abdulla Hamad Al-Marri", "Abdullah Hamad Almarri", true},
      {"عبدالله حمد المري", "Abdulla Hamad Al-Marri", true},
      {"Ibrahim Moussa", "Ebrahim Mousa", true},
      {"إبراهيم موسى", "Ibrahim Moussa", true},
      {"Nawaf Al-Enezi", "Nawaf Alanazi", true},
      {"نواف العنزي", "Nawaf Al-Enezi", true},
      {"Lulwah Al-Sabah", "Lulwa Alsabah", true},
      {"سلطان الشمري", "Sultan Al-Shammari", true},
      {"Hessa Al-Mansouri", "Hissa Almansoori", true},
      {"Mishal Al-Qahtani", "Meshal Alqahtani", true},
      {"مشعل القحطاني", "Mishal Al-Qahtani", true},
      {"Youssef El Amrani", "Yousef Al-Amrani", true},
      {"يوسف العمراني", "Youssef El Amrani", true},
      {"Sultan Al-Shammari", "Salman Al-Shammari", false},
      {"Nawaf Al-Enezi", "Nayef Al-Enezi", false},
      {"Reem Al-Dossary", "Reema Al-Dossary", false},
      {"Bader Nasser", "Bandar Nasser", false},
      {"Faisal Turki", "Fahad Turki", false},
      {"مشعل القحطاني", "Meshari Al-Qahtani", false},
      {"Hessa Ali", "Hind Ali", false},
      {"Ibrahim Moussa", "Ismail Moussa", false},
      {"Sara Al-Omari", "Sara Al-Ameri", false},
      {"عبدالله المري", "Abdulrahman Al-Marri", false},
      {"Majed Faisal", "Faisal Majed", false},
      {"Talal Al-Harbi", "Tariq Al-Harbi", false},
  };
  return *table;
}

std::vector<std::string> AllTableNames() {
  std::vector<std::string> names;
  for (const auto* table : {&Table(), &HeldOutTable()}) {
    for (const NamePair& p : *table) {
      names.push_back(p.a);
      names.push_back(p.b);
    }
  }
  return names;
}

bool IsCrossScript(const NamePair& p) {
  return (ScriptOf(p.a) == Script::kArabic) !=
         (ScriptOf(p.b) == Script::kArabic);
}

struct Metrics {
  int tp = 0, fp = 0, fn = 0, tn = 0;
  double precision() const { return tp + fp == 0 ? 0 : 1.0 * tp / (tp + fp); }
  double recall() const { return tp + fn == 0 ? 0 : 1.0 * tp / (tp + fn); }
};

template <typename Matcher>
Metrics Measure(const std::vector<NamePair>& table, Matcher matches,
                bool cross_script_only, bool log) {
  Metrics m;
  for (const NamePair& p : table) {
    if (cross_script_only && !IsCrossScript(p)) continue;
    const bool said = matches(p);
    if (said && p.same) ++m.tp;
    if (said && !p.same) ++m.fp;
    if (!said && p.same) ++m.fn;
    if (!said && !p.same) ++m.tn;
    if (log && said != p.same) {
      std::printf("  %s: %s | %s (similarity %.3f)\n",
                  p.same ? "missed" : "false match", p.a, p.b,
                  CompareNames(p.a, p.b).similarity);
    }
  }
  return m;
}

TEST(NamesTableTest, TableHasTheRequiredShape) {
  int cross = 0, different = 0;
  for (const NamePair& p : Table()) {
    cross += IsCrossScript(p);
    different += !p.same;
    ASSERT_NE(ScriptOf(p.a), Script::kEmpty) << p.a;
    ASSERT_NE(ScriptOf(p.b), Script::kEmpty) << p.b;
  }
  EXPECT_GE(Table().size(), 60u);
  EXPECT_GE(cross, 20);
  EXPECT_GE(different, 25);
}

// Precision and recall of CompareNames(...).match on the table. The table is
// where kNameMatchThreshold was calibrated, so these figures describe the
// calibration set, not field performance (docs/NAMES.md).
TEST(NamesTableTest, PrecisionAndRecallAtTheThreshold) {
  std::printf("name table at threshold %.2f:\n", kNameMatchThreshold);
  const Metrics all = Measure(
      Table(), [](const NamePair& p) { return CompareNames(p.a, p.b).match; },
      /*cross_script_only=*/false, /*log=*/true);
  const Metrics cross = Measure(
      Table(), [](const NamePair& p) { return CompareNames(p.a, p.b).match; },
      /*cross_script_only=*/true, /*log=*/false);
  const std::string summary = absl::StrFormat(
      "all %d pairs: precision %.3f recall %.3f (tp %d fp %d fn %d tn %d); "
      "cross-script %d pairs: precision %.3f recall %.3f",
      all.tp + all.fp + all.fn + all.tn, all.precision(), all.recall(), all.tp,
      all.fp, all.fn, all.tn, cross.tp + cross.fp + cross.fn + cross.tn,
      cross.precision(), cross.recall());
  std::printf("%s\n", summary.c_str());
  RecordProperty("precision", absl::StrFormat("%.3f", all.precision()));
  RecordProperty("recall", absl::StrFormat("%.3f", all.recall()));
  RecordProperty("cross_script_precision",
                 absl::StrFormat("%.3f", cross.precision()));
  RecordProperty("cross_script_recall",
                 absl::StrFormat("%.3f", cross.recall()));
  EXPECT_GE(all.precision(), 0.95);
  EXPECT_GE(all.recall(), 0.90);
  EXPECT_GE(cross.precision(), 0.90);
  EXPECT_GE(cross.recall(), 0.90);
}

TEST(NamesTableTest, PrecisionAndRecallOnTheHeldOutTable) {
  std::printf("held-out table at threshold %.2f:\n", kNameMatchThreshold);
  const Metrics m = Measure(
      HeldOutTable(),
      [](const NamePair& p) { return CompareNames(p.a, p.b).match; },
      /*cross_script_only=*/false, /*log=*/true);
  std::printf(
      "held-out %d pairs: precision %.3f recall %.3f (tp %d fp %d "
      "fn %d tn %d)\n",
      m.tp + m.fp + m.fn + m.tn, m.precision(), m.recall(), m.tp, m.fp, m.fn,
      m.tn);
  RecordProperty("held_out_precision", absl::StrFormat("%.3f", m.precision()));
  RecordProperty("held_out_recall", absl::StrFormat("%.3f", m.recall()));
  EXPECT_GE(m.tp + m.fn, 20);
  EXPECT_GE(m.fp + m.tn, 10);
  EXPECT_GE(m.precision(), 0.95);
  EXPECT_GE(m.recall(), 0.90);
}

// The table is worth asserting on only if simple matchers fail it: exact
// equality after case folding (the interim implementation) misses most
// spellings, and plain Jaro-Winkler over the lower-cased strings at any
// threshold cannot both find the spellings and refuse the hard negatives.
TEST(NamesTableTest, NaiveMatchersFailTheTable) {
  auto lower_tokens = [](absl::string_view s) {
    std::string lower(s);
    for (char& c : lower) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    std::vector<std::string> tokens =
        absl::StrSplit(lower, ' ', absl::SkipEmpty());
    return tokens;
  };
  const Metrics exact = Measure(
      Table(),
      [&](const NamePair& p) { return lower_tokens(p.a) == lower_tokens(p.b); },
      false, false);
  EXPECT_LT(exact.recall(), 0.3);
  bool any_threshold_passes = false;
  for (double t = 0.50; t <= 1.0; t += 0.01) {
    const Metrics jw = Measure(
        Table(),
        [&](const NamePair& p) {
          return JaroWinkler(absl::StrJoin(lower_tokens(p.a), " "),
                             absl::StrJoin(lower_tokens(p.b), " ")) >= t;
        },
        false, false);
    if (jw.precision() >= 0.95 && jw.recall() >= 0.90) {
      any_threshold_passes = true;
    }
  }
  EXPECT_FALSE(any_threshold_passes);
}

// The threshold sits in the gap the table leaves: every table pair decided
// at kNameMatchThreshold is decided the same way 0.005 either side of it, so
// the figures above do not hang on the third decimal.
TEST(NamesTableTest, ThresholdIsNotOnAKnifeEdge) {
  for (const NamePair& p : Table()) {
    const double s = CompareNames(p.a, p.b).similarity;
    EXPECT_GT(std::abs(s - kNameMatchThreshold), 0.005)
        << p.a << " | " << p.b << " similarity " << s;
  }
}

// ------------------------------------------------------- Blocking keys --

bool ShareAKey(absl::string_view a, absl::string_view b) {
  const std::vector<std::string> ka = NameBlockingKeys(a);
  const std::vector<std::string> kb = NameBlockingKeys(b);
  for (const std::string& k : ka) {
    if (std::find(kb.begin(), kb.end(), k) != kb.end()) return true;
  }
  return false;
}

// The code points of a UTF-8 string, each as its bytes.
std::vector<std::string> CodePoints(absl::string_view s) {
  std::vector<std::string> out;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) == 0x80 && !out.empty()) {
      out.back().push_back(c);
    } else {
      out.emplace_back(1, c);
    }
  }
  return out;
}

// A random misspelling of `name`: one or two edits (a letter replaced by
// another of the name, dropped, doubled, swapped with its neighbour; an
// article added or dropped; a letter's case), mostly in the given name,
// whose similarity decides a match.
std::string Perturb(const std::string& name, std::mt19937& rng) {
  std::vector<std::string> words = absl::StrSplit(name, ' ', absl::SkipEmpty());
  auto pick = [&rng](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  const int edits = 1 + static_cast<int>(pick(2));
  for (int e = 0; e < edits; ++e) {
    std::string& word = words[pick(3) == 0 ? pick(words.size()) : 0];
    std::vector<std::string> cps = CodePoints(word);
    if (cps.empty()) continue;
    const size_t i = pick(cps.size());
    switch (pick(7)) {
      case 0:
        cps[i] = cps[pick(cps.size())];
        break;
      case 1:
        if (cps.size() > 1) cps.erase(cps.begin() + i);
        break;
      case 2:
        cps.insert(cps.begin() + i, cps[i]);
        break;
      case 3:
        if (i + 1 < cps.size()) std::swap(cps[i], cps[i + 1]);
        break;
      case 4: {
        const bool arabic = cps[0].size() > 1;
        const std::string article = arabic ? "\u0627\u0644" : "Al-";
        if (absl::StartsWith(word, article)) {
          cps = CodePoints(word.substr(article.size()));
        } else {
          cps.insert(cps.begin(), article);
        }
        break;
      }
      case 5:
        if (cps[i].size() == 1 && std::isalpha(cps[i][0])) {
          cps[i][0] = static_cast<char>(cps[i][0] ^ 0x20);
        }
        break;
      default:
        // A letter from another name: substitutions the folding cannot undo.
        cps[i] = cps[i].size() > 1 ? "\u0642" : "q";
        break;
    }
    word = absl::StrJoin(cps, "");
    if (word.empty()) word = "x";
  }
  return absl::StrJoin(words, " ");
}

// NameBlockingKeys narrows the demographic pre-check to the recorded names
// sharing a key; it must never separate two names CompareNames matches.
// Checked on every pair of names in both tables, and on random misspellings
// of each (against the original and against each other), long given names
// included (the "~" key).
TEST(NamesBlockingKeysTest, NeverSeparateTwoNamesThatMatch) {
  std::set<std::string> corpus;
  for (const auto* table : {&Table(), &HeldOutTable()}) {
    for (const NamePair& p : *table) {
      corpus.insert(p.a);
      corpus.insert(p.b);
    }
  }
  // Given names over 11 letters, where the first two may differ.
  for (const char* name :
       {"Abdulrahmanovich Al-Harbi", "Konstantinopoulos Haddad",
        "Mohammedabdullah Alotaibi", "Sheikhmohammed Bin Rashid",
        "\u0639\u0628\u062f\u0627\u0644\u0631\u062d\u0645\u0646\u0627\u0644"
        "\u0641\u0627\u0636\u0644 \u0627\u0644\u0639\u0645\u0631\u064a"}) {
    corpus.insert(name);
  }
  const std::vector<std::string> names(corpus.begin(), corpus.end());
  int matches = 0, separated = 0;
  auto check = [&](const std::string& a, const std::string& b) {
    if (!CompareNames(a, b).match) return;
    ++matches;
    if (!ShareAKey(a, b)) {
      ++separated;
      ADD_FAILURE() << "\"" << a << "\" matches \"" << b
                    << "\" but they share no blocking key";
    }
  };
  for (size_t i = 0; i < names.size(); ++i) {
    for (size_t j = i; j < names.size(); ++j) check(names[i], names[j]);
  }
  const int table_matches = matches;
  // Every single edit in the first letters of given names of 10 to 16
  // letters: where the "~" key takes over from the three-letter ones.
  for (const char* word :
       {"Qasimbaderov", "Qasimbaderovi", "Qasimbaderovic", "Nasrallahzade",
        "Kadhimrahmanov", "Konstantinopoulos", "Abdulrahmanovich",
        "Mohammedabdu"}) {
    const std::string given(word);
    for (size_t i = 0; i < 4; ++i) {
      std::vector<std::string> edits;
      std::string swapped = given;
      std::swap(swapped[i], swapped[i + 1]);
      edits.push_back(swapped);
      edits.push_back(given.substr(0, i) + given.substr(i + 1));
      for (char c = 'a'; c <= 'z'; ++c) {
        std::string replaced = given;
        replaced[i] = c;
        edits.push_back(replaced);
        edits.push_back(given.substr(0, i) + c + given.substr(i));
      }
      for (const std::string& edit : edits) {
        for (size_t n = 0; n <= given.size(); ++n) {
          // The edited name against the original cut to every length.
          check(given.substr(0, n) + " Haddad", edit + " Haddad");
        }
      }
    }
  }
  const int long_matches = matches - table_matches;
  std::mt19937 rng(20261130);
  for (const std::string& name : names) {
    std::vector<std::string> variants = {name};
    for (int k = 0; k < 30; ++k) variants.push_back(Perturb(name, rng));
    for (size_t i = 0; i < variants.size(); ++i) {
      for (size_t j = i + 1; j < variants.size(); ++j) {
        check(variants[i], variants[j]);
      }
    }
  }
  // Enough matches, beyond equal strings, for the check to mean something.
  EXPECT_GE(table_matches, static_cast<int>(names.size()) + 100);
  EXPECT_GE(long_matches, 50);
  EXPECT_GE(matches - table_matches - long_matches, 5000);
  EXPECT_EQ(separated, 0);
  // And the keys do narrow: most pairs of table names share none.
  int64_t sharing = 0;
  for (const std::string& a : names) {
    for (const std::string& b : names) sharing += ShareAKey(a, b);
  }
  const double shared = static_cast<double>(sharing) /
                        static_cast<double>(names.size() * names.size());
  std::printf(
      "blocking keys: %d matching pairs (%d beyond the tables), %.3f "
      "of table name pairs share a key\n",
      matches, matches - table_matches, shared);
  EXPECT_LT(shared, 0.25);
}

// A name with no letters has no keys (and matches nothing).
TEST(NamesBlockingKeysTest, EmptyNameHasNoKeys) {
  EXPECT_THAT(NameBlockingKeys(""), IsEmpty());
  EXPECT_THAT(NameBlockingKeys("  - "), IsEmpty());
  v1::PersonName name;
  name.set_given("Khalid");
  EXPECT_THAT(NameBlockingKeys(name), ::testing::Not(IsEmpty()));
}

}  // namespace
}  // namespace hawiya::enroll::names
