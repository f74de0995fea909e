#include "enroll/validation.h"

#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {
namespace {

using ::hawiya::v1::Date;
using ::hawiya::v1::Person;
using ::hawiya::v1::Template;
using ::testing::StartsWith;

// A fixed clock: 2024-03-15 12:00 UTC.
absl::Time Now() {
  return absl::FromCivil(absl::CivilSecond(2024, 3, 15, 12, 0, 0),
                         absl::UTCTimeZone());
}

Date MakeDate(int year, int month, int day) {
  Date date;
  date.set_year(year);
  date.set_month(month);
  date.set_day(day);
  return date;
}

Person ValidPerson() {
  Person p;
  p.set_national_id("2850714-KW01");
  p.set_issuing_country("KWT");
  p.mutable_name_ar()->set_given("محمد");
  p.mutable_name_ar()->set_father("عبدالله");
  p.mutable_name_ar()->set_grandfather("أحمد");
  p.mutable_name_ar()->set_family("العلي");
  p.mutable_name_latin()->set_given("Mohammed");
  p.mutable_name_latin()->set_family("Al-Ali");
  *p.mutable_date_of_birth() = MakeDate(1985, 7, 14);
  p.set_place_of_birth("مدينة الكويت");
  p.set_sex(hawiya::v1::MALE);
  p.set_nationality("KWT");
  p.set_civil_status(hawiya::v1::MARRIED);
  hawiya::v1::Document* passport = p.add_documents();
  passport->set_type(hawiya::v1::PASSPORT);
  passport->set_number("P1234567");
  passport->set_issuing_country("KWT");
  *passport->mutable_expiry_date() = MakeDate(2030, 1, 31);
  hawiya::v1::Document* card = p.add_documents();
  card->set_type(hawiya::v1::NATIONAL_ID_CARD);
  card->set_number("285071401234");
  card->set_issuing_country("KWT");
  return p;
}

TEST(ValidatePersonTest, AcceptsValidPerson) {
  EXPECT_TRUE(ValidatePerson("person", ValidPerson(), Now()).ok());
}

TEST(ValidatePersonTest, IgnoresOutputOnlyFields) {
  Person p = ValidPerson();
  p.set_subject_id("\xff not even UTF-8");
  p.set_state(static_cast<hawiya::v1::PersonState>(42));
  p.set_version(-7);
  p.mutable_create_time()->set_seconds(-1);
  p.add_template_counts()->set_count(9);
  EXPECT_TRUE(ValidatePerson("person", p, Now()).ok());
}

struct Case {
  std::string name;
  std::function<void(Person&)> mutate;
  // Empty: the person stays valid.
  std::string error;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ValidatePersonCaseTest : public ::testing::TestWithParam<Case> {};

TEST_P(ValidatePersonCaseTest, GivesExactError) {
  const Case& c = GetParam();
  Person p = ValidPerson();
  c.mutate(p);
  const absl::Status status = ValidatePerson("person", p, Now());
  if (c.error.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(status.message(), c.error);
  }
}

std::string Repeat(absl::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) absl::StrAppend(&out, s);
  return out;
}

constexpr char kIdError[] = "must be 1-32 characters of [0-9A-Za-z-]";
constexpr char kCountryError[] =
    "must be 3 upper-case letters (ISO 3166-1 alpha-3)";
constexpr char kNameError[] =
    "person.name: a given and a family name are required in Arabic or Latin "
    "script";
constexpr char kUtf8Error[] = "person.name_latin.given: is not valid UTF-8";

const Case kCases[] = {
    // national_id
    {"IdEmpty", [](Person& p) { p.clear_national_id(); },
     absl::StrCat("person.national_id: ", kIdError)},
    {"Id32", [](Person& p) { p.set_national_id(std::string(32, '7')); }, ""},
    {"Id33", [](Person& p) { p.set_national_id(std::string(33, '7')); },
     absl::StrCat("person.national_id: ", kIdError)},
    {"IdUnderscore", [](Person& p) { p.set_national_id("12_34"); },
     absl::StrCat("person.national_id: ", kIdError)},
    {"IdSpace", [](Person& p) { p.set_national_id("12 34"); },
     absl::StrCat("person.national_id: ", kIdError)},
    {"IdArabicDigits", [](Person& p) { p.set_national_id("١٢٣"); },
     absl::StrCat("person.national_id: ", kIdError)},
    {"IdMixedCaseAndHyphen", [](Person& p) { p.set_national_id("aZ-09"); }, ""},
    // country codes
    {"CountryLower", [](Person& p) { p.set_issuing_country("kwt"); },
     absl::StrCat("person.issuing_country: ", kCountryError)},
    {"CountryShort", [](Person& p) { p.set_issuing_country("KW"); },
     absl::StrCat("person.issuing_country: ", kCountryError)},
    {"CountryLong", [](Person& p) { p.set_issuing_country("KWTT"); },
     absl::StrCat("person.issuing_country: ", kCountryError)},
    {"CountryDigit", [](Person& p) { p.set_issuing_country("K1T"); },
     absl::StrCat("person.issuing_country: ", kCountryError)},
    {"CountryMissing", [](Person& p) { p.clear_issuing_country(); },
     absl::StrCat("person.issuing_country: ", kCountryError)},
    {"NationalityOptional", [](Person& p) { p.clear_nationality(); }, ""},
    {"NationalityBad", [](Person& p) { p.set_nationality("Kuw"); },
     absl::StrCat("person.nationality: ", kCountryError)},
    // a given and a family name in one script
    {"NoNames",
     [](Person& p) {
       p.clear_name_ar();
       p.clear_name_latin();
     },
     kNameError},
    {"ArabicOnly", [](Person& p) { p.clear_name_latin(); }, ""},
    {"LatinOnly", [](Person& p) { p.clear_name_ar(); }, ""},
    {"GivenAndFamilyInDifferentScripts",
     [](Person& p) {
       p.mutable_name_ar()->clear_family();
       p.mutable_name_latin()->clear_given();
     },
     kNameError},
    {"FatherAndGrandfatherDoNotCount",
     [](Person& p) {
       p.clear_name_latin();
       p.mutable_name_ar()->clear_family();
     },
     kNameError},
    // Arabic script
    {"ArabicGivenInLatin",
     [](Person& p) { p.mutable_name_ar()->set_given("Mohammed"); },
     "person.name_ar.given: must be in Arabic script"},
    {"ArabicFamilyWithDigit",
     [](Person& p) { p.mutable_name_ar()->set_family("العلي2"); },
     "person.name_ar.family: must be in Arabic script"},
    {"ArabicWithArabicIndicDigit",
     [](Person& p) { p.mutable_name_ar()->set_father("عبدالله٣"); },
     "person.name_ar.father: must be in Arabic script"},
    {"ArabicWithArabicComma",
     [](Person& p) { p.mutable_name_ar()->set_grandfather("أحمد،"); },
     "person.name_ar.grandfather: must be in Arabic script"},
    {"ArabicWithByteOrderMark",
     [](Person& p) { p.mutable_name_ar()->set_given("\xEF\xBB\xBFمحمد"); },
     "person.name_ar.given: must be in Arabic script"},
    {"ArabicWithoutLetter",
     [](Person& p) { p.mutable_name_ar()->set_given("- '"); },
     "person.name_ar.given: must contain an Arabic letter"},
    {"ArabicHarakatOnly",
     [](Person& p) { p.mutable_name_ar()->set_given("\u064E\u064F"); },
     "person.name_ar.given: must contain an Arabic letter"},
    {"ArabicWithHarakat",
     [](Person& p) { p.mutable_name_ar()->set_given("مُحَمَّد"); }, ""},
    {"ArabicWithSpaceHyphenApostropheZwnj",
     [](Person& p) {
       p.mutable_name_ar()->set_family("آل\u200Cالشيخ - بن'علي");
     },
     ""},
    {"ArabicSupplementAndExtendedA",
     [](Person& p) { p.mutable_name_ar()->set_given("\u0750\u08A0ب"); }, ""},
    {"ArabicPresentationForms",
     [](Person& p) {
       p.mutable_name_ar()->set_given("\uFEE3\uFEA3\uFEE4\uFEA9");
     },
     ""},
    // Latin script
    {"ArabicInLatin",
     [](Person& p) { p.mutable_name_latin()->set_family("العلي"); },
     "person.name_latin.family: must not contain Arabic letters"},
    {"ArabicMixedIntoLatin",
     [](Person& p) { p.mutable_name_latin()->set_given("Ali علي"); },
     "person.name_latin.given: must not contain Arabic letters"},
    {"ArabicPresentationFormInLatin",
     [](Person& p) { p.mutable_name_latin()->set_given("Ali\uFEED"); },
     "person.name_latin.given: must not contain Arabic letters"},
    {"LatinWithTab",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\thammed"); },
     "person.name_latin.given: must not contain control characters"},
    {"LatinWithNul",
     [](Person& p) {
       p.mutable_name_latin()->set_given(std::string("Mo\0h", 4));
     },
     "person.name_latin.given: must not contain control characters"},
    {"LatinWithC1Control",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\u0085h"); },
     "person.name_latin.given: must not contain control characters"},
    {"LatinWithDigit",
     [](Person& p) { p.mutable_name_latin()->set_given("Mohammed3"); },
     "person.name_latin.given: contains U+0033, which is not a Latin letter, "
     "space, hyphen, apostrophe or period"},
    {"LatinWithCyrillic",
     [](Person& p) { p.mutable_name_latin()->set_given("Ivan \u0418"); },
     "person.name_latin.given: contains U+0418, which is not a Latin letter, "
     "space, hyphen, apostrophe or period"},
    {"LatinWithoutLetter",
     [](Person& p) { p.mutable_name_latin()->set_father(" .-"); },
     "person.name_latin.father: must contain a Latin letter"},
    {"LatinAccentedAndPunctuation",
     [](Person& p) {
       p.mutable_name_latin()->set_given("José-María Zoë");
       p.mutable_name_latin()->set_father("St. John");
       p.mutable_name_latin()->set_grandfather("O'Brien O\u2019Neil");
       p.mutable_name_latin()->set_family("Müller Łukasiewicz Nguyễn");
     },
     ""},
    {"LatinDecomposedAccent",
     [](Person& p) { p.mutable_name_latin()->set_given("Zoe\u0308"); }, ""},
    // UTF-8
    {"Utf8BadContinuation",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xC3\x28"); },
     kUtf8Error},
    {"Utf8LoneContinuation",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\x80"); },
     kUtf8Error},
    {"Utf8Truncated",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xD9"); },
     kUtf8Error},
    {"Utf8Overlong2",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xC0\xAF"); },
     kUtf8Error},
    {"Utf8Overlong3",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xE0\x80\xAF"); },
     kUtf8Error},
    {"Utf8Overlong4",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xF0\x80\x80\xAF"); },
     kUtf8Error},
    {"Utf8Surrogate",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xED\xA0\x80"); },
     kUtf8Error},
    {"Utf8AboveMax",
     [](Person& p) { p.mutable_name_latin()->set_given("Mo\xF4\x90\x80\x80"); },
     kUtf8Error},
    {"Utf8FiveByte",
     [](Person& p) {
       p.mutable_name_latin()->set_given("Mo\xF8\x88\x80\x80\x80");
     },
     kUtf8Error},
    {"Utf8InvalidInArabic",
     [](Person& p) { p.mutable_name_ar()->set_family("العلي\xFF"); },
     "person.name_ar.family: is not valid UTF-8"},
    // size limits
    {"Latin128Bytes",
     [](Person& p) {
       p.mutable_name_latin()->set_given(std::string(128, 'a'));
     },
     ""},
    {"Latin129Bytes",
     [](Person& p) {
       p.mutable_name_latin()->set_given(std::string(129, 'a'));
     },
     "person.name_latin.given: is 129 bytes, at most 128 allowed"},
    {"Arabic128Bytes",
     [](Person& p) { p.mutable_name_ar()->set_family(Repeat("ب", 64)); }, ""},
    {"Arabic130Bytes",
     [](Person& p) { p.mutable_name_ar()->set_family(Repeat("ب", 65)); },
     "person.name_ar.family: is 130 bytes, at most 128 allowed"},
    {"PlaceOfBirthTooLong",
     [](Person& p) { p.set_place_of_birth(std::string(129, 'x')); },
     "person.place_of_birth: is 129 bytes, at most 128 allowed"},
    {"PlaceOfBirthBadUtf8",
     [](Person& p) { p.set_place_of_birth("Kuwait \xE2\x82"); },
     "person.place_of_birth: is not valid UTF-8"},
    {"PlaceOfBirthOptional", [](Person& p) { p.clear_place_of_birth(); }, ""},
    // place_of_birth reaches audit-free logs and exports: no controls.
    {"PlaceOfBirthNul",
     [](Person& p) { p.set_place_of_birth(std::string("Kuwait\0City", 11)); },
     "person.place_of_birth: contains U+0000 at byte 6; control characters "
     "and line breaks are not allowed"},
    {"PlaceOfBirthEscape",
     [](Person& p) { p.set_place_of_birth("\x1b[2JKuwait"); },
     "person.place_of_birth: contains U+001B at byte 0; control characters "
     "and line breaks are not allowed"},
    {"PlaceOfBirthNewline",
     [](Person& p) { p.set_place_of_birth("Kuwait\r\nCity"); },
     "person.place_of_birth: contains U+000D at byte 6; control characters "
     "and line breaks are not allowed"},
    {"PlaceOfBirthC1Control",
     [](Person& p) { p.set_place_of_birth("Kuwait\xC2\x85"); },
     "person.place_of_birth: contains U+0085 at byte 6; control characters "
     "and line breaks are not allowed"},
    {"PlaceOfBirthLineSeparator",
     [](Person& p) { p.set_place_of_birth("Kuwait\xE2\x80\xA8"); },
     "person.place_of_birth: contains U+2028 at byte 6; control characters "
     "and line breaks are not allowed"},
    // documents
    {"SixteenDocuments",
     [](Person& p) {
       while (p.documents_size() < 16) *p.add_documents() = p.documents(0);
     },
     ""},
    {"SeventeenDocuments",
     [](Person& p) {
       while (p.documents_size() < 17) *p.add_documents() = p.documents(0);
     },
     "person.documents: at most 16, not 17"},
    // date of birth
    {"DobMissing", [](Person& p) { p.clear_date_of_birth(); },
     "person.date_of_birth: is required"},
    {"DobAllZero",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(0, 0, 0); },
     "person.date_of_birth: is required"},
    {"DobMonth13",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1985, 13, 1); },
     "person.date_of_birth: month 13 out of range"},
    {"DobMonth0",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1985, 0, 1); },
     "person.date_of_birth: month 0 out of range"},
    {"DobDay0",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1985, 1, 0); },
     "person.date_of_birth: day 0 out of range for 1985-01"},
    {"DobApril31",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1985, 4, 31); },
     "person.date_of_birth: day 31 out of range for 1985-04"},
    {"DobJan31",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1985, 1, 31); }, ""},
    {"LeapDay2000DivisibleBy400",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2000, 2, 29); }, ""},
    {"LeapDay2004",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2004, 2, 29); }, ""},
    {"LeapDay2001NotLeap",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2001, 2, 29); },
     "person.date_of_birth: day 29 out of range for 2001-02"},
    {"LeapDay1900CenturyNotLeap",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1900, 2, 29); },
     "person.date_of_birth: day 29 out of range for 1900-02"},
    {"Feb30InLeapYear",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2004, 2, 30); },
     "person.date_of_birth: day 30 out of range for 2004-02"},
    {"Dob1900-01-01",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1900, 1, 1); }, ""},
    {"Dob1899",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(1899, 12, 31); },
     "person.date_of_birth: year 1899 is before 1900"},
    {"DobNegativeYear",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(-5, 1, 1); },
     "person.date_of_birth: year -5 is before 1900"},
    {"DobToday",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2024, 3, 15); }, ""},
    {"DobTomorrow",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2024, 3, 16); },
     "person.date_of_birth: 2024-03-16 is in the future"},
    {"DobNextYear",
     [](Person& p) { *p.mutable_date_of_birth() = MakeDate(2025, 1, 1); },
     "person.date_of_birth: 2025-01-01 is in the future"},
    // enums
    {"SexUnspecified",
     [](Person& p) { p.set_sex(hawiya::v1::SEX_UNSPECIFIED); }, ""},
    {"SexUnknown",
     [](Person& p) { p.set_sex(static_cast<hawiya::v1::Sex>(7)); },
     "person.sex: unknown value 7"},
    {"CivilStatusUnspecified",
     [](Person& p) {
       p.set_civil_status(hawiya::v1::CIVIL_STATUS_UNSPECIFIED);
     },
     ""},
    {"CivilStatusUnknown",
     [](Person& p) {
       p.set_civil_status(static_cast<hawiya::v1::CivilStatus>(9));
     },
     "person.civil_status: unknown value 9"},
    // documents
    {"NoDocuments", [](Person& p) { p.clear_documents(); }, ""},
    {"DocumentTypeUnset",
     [](Person& p) {
       p.mutable_documents(1)->set_type(hawiya::v1::DOCUMENT_TYPE_UNSPECIFIED);
     },
     "person.documents[1].type: must be set"},
    {"DocumentTypeUnknown",
     [](Person& p) {
       p.mutable_documents(1)->set_type(
           static_cast<hawiya::v1::DocumentType>(99));
     },
     "person.documents[1].type: unknown value 99"},
    {"DocumentNumberEmpty",
     [](Person& p) { p.mutable_documents(1)->clear_number(); },
     absl::StrCat("person.documents[1].number: ", kIdError)},
    {"DocumentNumberBad",
     [](Person& p) { p.mutable_documents(0)->set_number("P 123"); },
     absl::StrCat("person.documents[0].number: ", kIdError)},
    {"DocumentCountryMissing",
     [](Person& p) { p.mutable_documents(1)->clear_issuing_country(); },
     absl::StrCat("person.documents[1].issuing_country: ", kCountryError)},
    {"DocumentExpiryInFutureAllowed",
     [](Person& p) {
       *p.mutable_documents(1)->mutable_expiry_date() = MakeDate(2099, 12, 31);
     },
     ""},
    {"DocumentExpiryNotReal",
     [](Person& p) {
       *p.mutable_documents(1)->mutable_expiry_date() = MakeDate(2023, 2, 29);
     },
     "person.documents[1].expiry_date: day 29 out of range for 2023-02"},
    {"DocumentExpiryBefore1900",
     [](Person& p) {
       *p.mutable_documents(0)->mutable_expiry_date() = MakeDate(1899, 1, 1);
     },
     "person.documents[0].expiry_date: year 1899 is before 1900"},
    {"DocumentExpiryMonth13",
     [](Person& p) {
       *p.mutable_documents(0)->mutable_expiry_date() = MakeDate(2030, 13, 1);
     },
     "person.documents[0].expiry_date: month 13 out of range"},
};

INSTANTIATE_TEST_SUITE_P(Rules, ValidatePersonCaseTest,
                         ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return name;
                         });

TEST(ValidatePersonTest, UsesCallersFieldPrefix) {
  Person p = ValidPerson();
  p.mutable_documents(0)->set_issuing_country("xx");
  EXPECT_EQ(ValidatePerson("request.person", p, Now()).message(),
            absl::StrCat("request.person.documents[0].issuing_country: ",
                         kCountryError));
}

TEST(ValidateDateTest, FutureIsJudgedByTheUtcCivilDay) {
  // 23:30 UTC on the 15th is already the 16th east of UTC; the service's day
  // is the UTC one, so the 16th is still in the future.
  const absl::Time late = absl::FromCivil(
      absl::CivilSecond(2024, 3, 15, 23, 30, 0), absl::UTCTimeZone());
  EXPECT_TRUE(ValidateDate("d", MakeDate(2024, 3, 15), late).ok());
  EXPECT_EQ(ValidateDate("d", MakeDate(2024, 3, 16), late).message(),
            "d: 2024-03-16 is in the future");
  const absl::Time early = absl::FromCivil(
      absl::CivilSecond(2024, 3, 16, 0, 0, 0), absl::UTCTimeZone());
  EXPECT_TRUE(ValidateDate("d", MakeDate(2024, 3, 16), early).ok());
}

TEST(ValidateDateTest, LeapYearsOverFourCenturies) {
  const absl::Time now =
      absl::FromCivil(absl::CivilDay(2024, 12, 31), absl::UTCTimeZone());
  for (int year = 1900; year <= 2024; ++year) {
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    EXPECT_EQ(ValidateDate("d", MakeDate(year, 2, 29), now).ok(), leap) << year;
    EXPECT_TRUE(ValidateDate("d", MakeDate(year, 2, 28), now).ok()) << year;
  }
}

TEST(ValidateDateTest, DirectCallNamesField) {
  const absl::Status status =
      ValidateDate("x.when", MakeDate(2020, 6, 31), Now());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "x.when: day 31 out of range for 2020-06");
}

TEST(ValidateNationalIdTest, DirectCalls) {
  EXPECT_TRUE(ValidateNationalId("id", "A").ok());
  EXPECT_EQ(ValidateNationalId("id", "a/b").message(),
            absl::StrCat("id: ", kIdError));
  EXPECT_EQ(ValidateNationalId("id", "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateCountryCodeTest, DirectCalls) {
  EXPECT_TRUE(ValidateCountryCode("c", "SAU").ok());
  EXPECT_EQ(ValidateCountryCode("c", "ÉGY").message(),
            absl::StrCat("c: ", kCountryError));
  EXPECT_EQ(ValidateCountryCode("c", "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidatePersonTest, DocumentLimitIsTheCallers) {
  Person p = ValidPerson();
  InputLimits limits;
  limits.max_documents = 1;
  EXPECT_EQ(ValidatePerson("person", p, Now(), limits).message(),
            "person.documents: at most 1, not 2");
  limits.max_documents = 2;
  EXPECT_TRUE(ValidatePerson("person", p, Now(), limits).ok());
}

// --- free text, ids, quoting -----------------------------------------------

TEST(ValidateFreeTextTest, RefusesEveryControlAndLineBreak) {
  EXPECT_TRUE(ValidateFreeText("f", "", 8).ok());
  EXPECT_TRUE(ValidateFreeText("f", "ok \\ 'é' مدينة", 64).ok());
  EXPECT_EQ(ValidateFreeText("f", "123456789", 8).message(),
            "f: is 9 bytes, at most 8 allowed");
  EXPECT_EQ(ValidateFreeText("f", "a\xFF", 8).message(),
            "f: is not valid UTF-8");
  // Every Cc code point (C0, DEL, C1) and both Unicode line separators.
  std::vector<char32_t> refused;
  for (char32_t c = 0; c < 0x20; ++c) refused.push_back(c);
  for (char32_t c = 0x7F; c <= 0x9F; ++c) refused.push_back(c);
  refused.push_back(0x2028);
  refused.push_back(0x2029);
  for (char32_t c : refused) {
    std::string text = "x";
    if (c < 0x80) {
      text.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      text.push_back(static_cast<char>(0xC0 | (c >> 6)));
      text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      text.push_back(static_cast<char>(0xE0 | (c >> 12)));
      text.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      text.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
    const absl::Status status = ValidateFreeText("f", text, 8);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << static_cast<uint32_t>(c);
    EXPECT_THAT(std::string(status.message()), StartsWith("f: contains U+"))
        << status;
  }
}

TEST(QuoteTest, TruncatesOnAUtf8BoundaryAndEscapes) {
  EXPECT_EQ(Quote("abc"), "'abc'");
  EXPECT_EQ(Quote("a\nb\x1b\\'"), "'a\\nb\\x1b\\\\\\''");
  EXPECT_EQ(Quote("\xFF\xC2\x85"), "'\\xff\\u0085'");
  // A 4 MiB value quotes as at most 64 bytes of it, and says how long it was.
  const std::string huge(4 << 20, 'x');
  EXPECT_EQ(Quote(huge), absl::StrCat("'", std::string(kMaxQuotedBytes, 'x'),
                                      "'... (", huge.size(), " bytes)"));
  // Two-byte letters: never half of one.
  const std::string arabic = Repeat("ب", 40);
  const std::string quoted = Quote(arabic);
  EXPECT_EQ(quoted, absl::StrCat("'", Repeat("ب", 32), "'... (80 bytes)"));
  // Escapes count toward the bound, and are never cut in half either.
  EXPECT_EQ(Quote(std::string(40, '\n')),
            absl::StrCat("'", Repeat("\\n", 32), "'... (40 bytes)"));
}

TEST(AuditTextTest, ClipsAndEscapesButKeepsBackslashes) {
  EXPECT_EQ(AuditText("req-1", 256), "req-1");
  EXPECT_EQ(AuditText("a\\b", 256), "a\\b");
  EXPECT_EQ(AuditText("a\r\nb", 256), "a\\r\\nb");
  // Never half of a letter.
  EXPECT_EQ(AuditText(Repeat("ب", 3), 5), Repeat("ب", 2));
  EXPECT_EQ(AuditText(std::string(300, 'y'), 256), std::string(256, 'y'));
}

TEST(ValidateIdTest, BoundsLengthAndCharacters) {
  EXPECT_TRUE(ValidateId("subject_id", "").ok());
  EXPECT_TRUE(ValidateId("subject_id", std::string(kMaxIdBytes, 'a')).ok());
  const absl::Status long_id =
      ValidateId("subject_id", std::string(4 << 20, 'a'));
  EXPECT_EQ(long_id.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(long_id.message()),
              StartsWith("subject_id: must be at most 64 printable ASCII "
                         "characters, is 'aaaa"));
  EXPECT_LT(long_id.message().size(), 200u);
  EXPECT_EQ(ValidateId("case_id", "case 1").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateId("case_id", "c\n").message(),
            "case_id: must be at most 64 printable ASCII characters, is "
            "'c\\n'");
}

TEST(ValidatePersonRefTest, SubjectIdOrNationalIdNotBoth) {
  EXPECT_TRUE(ValidatePersonRef("abc", "", "").ok());
  EXPECT_TRUE(ValidatePersonRef("", "N1", "KWT").ok());
  EXPECT_EQ(ValidatePersonRef("abc", "N1", "KWT").message(),
            "subject_id, national_id: give subject_id, or national_id and "
            "issuing_country, not both");
  EXPECT_EQ(ValidatePersonRef("abc", "", "KWT").message(),
            "subject_id, issuing_country: give subject_id, or national_id "
            "and issuing_country, not both");
  EXPECT_EQ(ValidatePersonRef(std::string(65, 'a'), "", "").code(),
            absl::StatusCode::kInvalidArgument);
}

google::protobuf::Timestamp MakeTimestamp(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  t.set_nanos(nanos);
  return t;
}

TEST(ValidateTimestampTest, RangeOfTheTimestampSpecification) {
  EXPECT_TRUE(ValidateTimestamp("t", MakeTimestamp(0, 0)).ok());
  // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z.
  EXPECT_TRUE(ValidateTimestamp("t", MakeTimestamp(-62135596800, 0)).ok());
  EXPECT_TRUE(
      ValidateTimestamp("t", MakeTimestamp(253402300799, 999999999)).ok());
  EXPECT_EQ(ValidateTimestamp("t", MakeTimestamp(-62135596801, 0)).message(),
            "t.seconds: -62135596801 is outside 0001-01-01..9999-12-31");
  // Year 10000, and a value whose microseconds overflow int64.
  EXPECT_EQ(ValidateTimestamp("t", MakeTimestamp(253402300800, 0)).message(),
            "t.seconds: 253402300800 is outside 0001-01-01..9999-12-31");
  EXPECT_EQ(
      ValidateTimestamp("start_time", MakeTimestamp(9223372036855, 0))
          .message(),
      "start_time.seconds: 9223372036855 is outside 0001-01-01..9999-12-31");
  EXPECT_EQ(ValidateTimestamp("t", MakeTimestamp(0, -1)).message(),
            "t.nanos: -1 out of range 0-999999999");
  EXPECT_EQ(ValidateTimestamp("t", MakeTimestamp(0, 1000000000)).message(),
            "t.nanos: 1000000000 out of range 0-999999999");
}

TEST(ValidateClaimedNameTest, ScriptIsCheckedPartsAreOptional) {
  hawiya::v1::PersonName name;
  name.set_given("Mohammed");
  EXPECT_TRUE(ValidateLatinName("name_latin", name).ok());
  EXPECT_EQ(ValidateArabicName("name_ar", name).message(),
            "name_ar.given: must be in Arabic script");
  name.set_given("محمد");
  EXPECT_TRUE(ValidateArabicName("name_ar", name).ok());
  EXPECT_EQ(ValidateLatinName("name_latin", name).message(),
            "name_latin.given: must not contain Arabic letters");
  EXPECT_TRUE(ValidateLatinName("name_latin", hawiya::v1::PersonName()).ok());
}

// --- templates -------------------------------------------------------------

std::unique_ptr<matcher::Matcher> OpenMatcher(
    std::vector<matcher::ModalitySpec> modalities) {
  matcher::MatcherOptions options;
  options.modalities = std::move(modalities);
  absl::StatusOr<std::unique_ptr<matcher::Matcher>> m =
      matcher::Matcher::Open(options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

Template MakeTemplate(hawiya::v1::Modality modality, uint32_t position,
                      int dimension) {
  Template t;
  t.set_modality(modality);
  t.set_position(position);
  t.set_quality(80);
  t.set_algorithm("arcface-r100/2.1");
  for (int i = 0; i < dimension; ++i) {
    t.add_vector(std::sin(0.37f * static_cast<float>(i + 1)));
  }
  return t;
}

Template Face() { return MakeTemplate(hawiya::v1::FACE, 0, 512); }
Template Finger(uint32_t position) {
  return MakeTemplate(hawiya::v1::FINGERPRINT, position, 256);
}
Template Iris(uint32_t position) {
  return MakeTemplate(hawiya::v1::IRIS, position, 256);
}

class ValidateTemplatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    matcher_ = OpenMatcher(matcher::DefaultModalities());
    ASSERT_NE(matcher_, nullptr);
  }

  absl::Status Validate(const std::vector<Template>& templates) {
    return ValidateTemplates("templates", templates, *matcher_);
  }

  // The error for one bad template placed after two good ones, so the index
  // in the message is checked too.
  absl::Status ValidateThird(const Template& bad) {
    return Validate({Face(), Finger(1), bad});
  }

  std::unique_ptr<matcher::Matcher> matcher_;
};

TEST_F(ValidateTemplatesTest, AcceptsEveryModalityAndPosition) {
  std::vector<Template> templates = {Face(), Iris(1), Iris(2)};
  for (uint32_t finger = 1; finger <= 10; ++finger) {
    templates.push_back(Finger(finger));
  }
  EXPECT_TRUE(Validate(templates).ok());
}

TEST_F(ValidateTemplatesTest, AcceptsNoTemplates) {
  EXPECT_TRUE(Validate({}).ok());
}

TEST_F(ValidateTemplatesTest, QualityBounds) {
  Template t = Face();
  t.set_quality(0);
  EXPECT_TRUE(Validate({t}).ok());
  t.set_quality(100);
  EXPECT_TRUE(Validate({t}).ok());
  t.set_quality(101);
  const absl::Status status = Validate({t});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "templates[0].quality: 101 out of range 0-100");
}

TEST_F(ValidateTemplatesTest, ModalityMustBeSetAndKnown) {
  Template t = Face();
  t.set_modality(hawiya::v1::MODALITY_UNSPECIFIED);
  EXPECT_EQ(ValidateThird(t).message(), "templates[2].modality: must be set");
  t.set_modality(static_cast<hawiya::v1::Modality>(9));
  EXPECT_EQ(ValidateThird(t).message(),
            "templates[2].modality: unknown value 9");
}

TEST_F(ValidateTemplatesTest, ModalityMustBeConfigured) {
  std::unique_ptr<matcher::Matcher> face_only =
      OpenMatcher({matcher::ModalitySpec{matcher::Modality::kFace, 512, 0.4f}});
  ASSERT_NE(face_only, nullptr);
  EXPECT_TRUE(ValidateTemplates("templates", {Face()}, *face_only).ok());
  const absl::Status status =
      ValidateTemplates("templates", {Face(), Iris(1)}, *face_only);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "templates[1].modality: IRIS is not configured on this server");
}

TEST_F(ValidateTemplatesTest, DimensionFollowsConfiguration) {
  std::unique_ptr<matcher::Matcher> small =
      OpenMatcher({matcher::ModalitySpec{matcher::Modality::kFace, 128, 0.4f}});
  ASSERT_NE(small, nullptr);
  EXPECT_TRUE(
      ValidateTemplates("t", {MakeTemplate(hawiya::v1::FACE, 0, 128)}, *small)
          .ok());
  EXPECT_THAT(std::string(ValidateTemplates("t", {Face()}, *small).message()),
              StartsWith("t[0].vector: "));
}

TEST_F(ValidateTemplatesTest, VectorRules) {
  const auto expect_vector_error = [&](const Template& t) {
    const absl::Status status = ValidateThird(t);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()),
                StartsWith("templates[2].vector: "));
    EXPECT_GT(status.message().size(),
              absl::string_view("templates[2].vector: ").size());
  };
  EXPECT_EQ(ValidateThird(MakeTemplate(hawiya::v1::FACE, 0, 500)).message(),
            "templates[2].vector: has 500 components, expected 512");
  expect_vector_error(MakeTemplate(hawiya::v1::FACE, 0, 513));
  expect_vector_error(MakeTemplate(hawiya::v1::FACE, 0, 0));
  // A fingerprint has its own dimension: 512 is wrong for it.
  expect_vector_error(MakeTemplate(hawiya::v1::FINGERPRINT, 1, 512));
  Template nan = Face();
  nan.set_vector(17, std::numeric_limits<float>::quiet_NaN());
  expect_vector_error(nan);
  Template inf = Face();
  inf.set_vector(3, std::numeric_limits<float>::infinity());
  expect_vector_error(inf);
  Template zero = Face();
  for (int i = 0; i < zero.vector_size(); ++i) zero.set_vector(i, 0.0f);
  expect_vector_error(zero);
}

TEST_F(ValidateTemplatesTest, PositionPerModality) {
  EXPECT_EQ(ValidateThird(MakeTemplate(hawiya::v1::FACE, 1, 512)).message(),
            "templates[2].position: must be 0 for FACE, is 1");
  EXPECT_EQ(ValidateThird(Finger(0)).message(),
            "templates[2].position: must be 1-10 for FINGERPRINT, is 0");
  EXPECT_EQ(ValidateThird(Finger(11)).message(),
            "templates[2].position: must be 1-10 for FINGERPRINT, is 11");
  EXPECT_EQ(ValidateThird(Iris(0)).message(),
            "templates[2].position: must be 1 (right) or 2 (left) for IRIS, "
            "is 0");
  EXPECT_EQ(ValidateThird(Iris(3)).message(),
            "templates[2].position: must be 1 (right) or 2 (left) for IRIS, "
            "is 3");
}

TEST_F(ValidateTemplatesTest, AlgorithmHasNoControls) {
  Template t = Face();
  t.set_algorithm(std::string("arcface\0", 8));
  EXPECT_EQ(ValidateThird(t).message(),
            "templates[2].algorithm: contains U+0000 at byte 7; control "
            "characters and line breaks are not allowed");
  t.set_algorithm("arcface\x1b[0m");
  EXPECT_EQ(ValidateThird(t).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateTemplateSetTest, OneTemplatePerFingerAndEye) {
  const InputLimits limits;
  std::vector<Template> templates = {Face(), Face(), Iris(1), Iris(2)};
  for (uint32_t finger = 1; finger <= 10; ++finger) {
    templates.push_back(Finger(finger));
  }
  EXPECT_TRUE(ValidateTemplateSet("templates", templates, limits).ok());
  EXPECT_EQ(
      ValidateTemplateSet("templates", {Finger(3), Face(), Finger(3)}, limits)
          .message(),
      "templates[2]: a second FINGERPRINT at position 3, after templates[0]");
  EXPECT_EQ(
      ValidateTemplateSet("templates", {Iris(2), Iris(2)}, limits).message(),
      "templates[1]: a second IRIS at position 2, after templates[0]");
  // The same position of another modality is no duplicate.
  EXPECT_TRUE(
      ValidateTemplateSet("templates", {Finger(1), Iris(1)}, limits).ok());
}

TEST(ValidateTemplateSetTest, PerModalityLimits) {
  InputLimits limits;
  std::vector<Template> faces(5, Face());
  EXPECT_TRUE(ValidateTemplateSet("templates", faces, limits).ok());
  faces.push_back(Face());
  EXPECT_EQ(ValidateTemplateSet("templates", faces, limits).message(),
            "templates[5]: more than 5 FACE templates for one person");
  limits.max_faces = 6;
  EXPECT_TRUE(ValidateTemplateSet("templates", faces, limits).ok());
  limits.max_fingerprints = 2;
  EXPECT_EQ(ValidateTemplateSet("templates", {Finger(1), Finger(2), Finger(3)},
                                limits)
                .message(),
            "templates[2]: more than 2 FINGERPRINT templates for one person");
  limits.max_irises = 1;
  EXPECT_EQ(
      ValidateTemplateSet("templates", {Iris(1), Iris(2)}, limits).message(),
      "templates[1]: more than 1 IRIS templates for one person");
}

TEST_F(ValidateTemplatesTest, Algorithm) {
  Template t = Face();
  t.clear_algorithm();
  EXPECT_TRUE(Validate({t}).ok());
  t.set_algorithm(std::string(128, 'a'));
  EXPECT_TRUE(Validate({t}).ok());
  t.set_algorithm(std::string(129, 'a'));
  EXPECT_EQ(ValidateThird(t).message(),
            "templates[2].algorithm: is 129 bytes, at most 128 allowed");
  t.set_algorithm("arcface\xC0\xAF");
  EXPECT_EQ(ValidateThird(t).message(),
            "templates[2].algorithm: is not valid UTF-8");
}

}  // namespace
}  // namespace hawiya::enroll
