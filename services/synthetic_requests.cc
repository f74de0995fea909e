#include "services/synthetic_requests.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace hawiya::services {
namespace {

// Given names no two of which names::CompareNames matches, in Arabic and
// Latin (dedup_test checks it).
constexpr struct {
  const char* arabic;
  const char* latin;
} kGivenNames[] = {
    {"محمد", "Mohammed"}, {"أحمد", "Ahmed"},   {"خالد", "Khalid"},
    {"عمر", "Omar"},      {"يوسف", "Youssef"}, {"إبراهيم", "Ibrahim"},
    {"حسن", "Hassan"},    {"علي", "Ali"},      {"فاطمة", "Fatima"},
    {"عائشة", "Aisha"},   {"مريم", "Mariam"},  {"ليلى", "Layla"},
    {"زينب", "Zainab"},   {"سلمى", "Salma"},   {"نور", "Nour"},
    {"هدى", "Huda"},      {"طارق", "Tariq"},   {"سمير", "Samir"},
    {"كريم", "Karim"},    {"وليد", "Waleed"},
};
constexpr uint64_t kBirthDays = 18250;  // 1955-01-01 to 2004-12-20

}  // namespace

uint64_t DistinctSyntheticPersons() {
  return kBirthDays * (sizeof(kGivenNames) / sizeof(kGivenNames[0]));
}

v1::Person SyntheticPerson(uint64_t n) {
  v1::Person person;
  person.set_national_id(absl::StrCat("N", n));
  person.set_issuing_country("KWT");
  // No two of the first DistinctSyntheticPersons() persons share both a
  // name and a date of birth, else the demographic dedup check would hold
  // them for adjudication: the date runs through kBirthDays days (7919 is
  // prime, so n -> 7919 n mod kBirthDays is one-to-one on each run of
  // kBirthDays persons), the given name changes with each run.
  const auto& given =
      kGivenNames[n / kBirthDays %
                  (sizeof(kGivenNames) / sizeof(kGivenNames[0]))];
  person.mutable_name_ar()->set_given(given.arabic);
  person.mutable_name_ar()->set_father("عبدالله");
  person.mutable_name_ar()->set_family("الصباح");
  person.mutable_name_latin()->set_given(given.latin);
  person.mutable_name_latin()->set_family("Al-Sabah");
  const absl::CivilDay born =
      absl::CivilDay(1955, 1, 1) +
      static_cast<absl::civil_diff_t>(n * 7919 % kBirthDays);
  person.mutable_date_of_birth()->set_year(static_cast<int>(born.year()));
  person.mutable_date_of_birth()->set_month(born.month());
  person.mutable_date_of_birth()->set_day(born.day());
  person.set_place_of_birth("Kuwait City");
  person.set_sex(n % 2 == 0 ? v1::FEMALE : v1::MALE);
  person.set_nationality("KWT");
  person.set_civil_status(v1::SINGLE);
  v1::Document* passport = person.add_documents();
  passport->set_type(v1::PASSPORT);
  passport->set_number(absl::StrCat("P", n));
  passport->set_issuing_country("KWT");
  passport->mutable_expiry_date()->set_year(2030);
  passport->mutable_expiry_date()->set_month(6);
  passport->mutable_expiry_date()->set_day(30);
  return person;
}

v1::Template SyntheticFaceTemplate(const matcher::SyntheticModel& model,
                                   uint64_t identity, uint64_t capture) {
  v1::Template t;
  t.set_modality(v1::FACE);
  t.set_position(0);
  const std::vector<float> vector = model.Capture(identity, capture);
  t.mutable_vector()->Assign(vector.begin(), vector.end());
  t.set_quality(90);
  t.set_algorithm("hawiya-synthetic/1");
  return t;
}

v1::EnrollRequest SyntheticEnrollRequest(const matcher::SyntheticModel& model,
                                         uint64_t n) {
  v1::EnrollRequest request;
  *request.mutable_person() = SyntheticPerson(n);
  *request.add_templates() = SyntheticFaceTemplate(model, n, 0);
  return request;
}

}  // namespace hawiya::services
