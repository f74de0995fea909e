// hawiya-dedup-bench: the cost of the demographic pre-check when many
// persons share one date of birth (docs/PERFORMANCE.md, "Dedup cost").
//
// Fills a fresh store with --persons persons born the same day (names drawn
// from common Arabic given and family names, Zipf-weighted, as 1 January
// looks on a real registry), then times, for --probes new names of that
// date:
//   keyed: Store::DemographicCandidates (the name_keys lookup) plus the name
//          comparison of what it returns, as FindDuplicates does;
//   full:  reading every person of the date and comparing every name (what
//          an uncapped lookup without keys costs).
// and checks that both find the same matches.
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "enroll/names.h"
#include "enroll/store.h"
#include "hawiya/v1/types.pb.h"

ABSL_FLAG(int, persons, 20000, "persons sharing the date of birth");
ABSL_FLAG(int, probes, 200, "new names looked up");
ABSL_FLAG(bool, varied, false,
          "given names from 3,000 made-up ones (uniform) instead of 42 common "
          "ones (Zipf): how selective the keys are when names vary");

namespace {

using hawiya::enroll::NewPerson;
using hawiya::enroll::Store;
using hawiya::v1::Person;
using Clock = std::chrono::steady_clock;

const char* const kGiven[] = {
    "Mohammed", "Ahmed",   "Abdullah",  "Ali",         "Khalid",  "Omar",
    "Fahad",    "Saad",    "Faisal",    "Sultan",      "Nasser",  "Yousef",
    "Ibrahim",  "Hamad",   "Saleh",     "Majed",       "Turki",   "Bader",
    "Hassan",   "Hussein", "Abdulaziz", "Abdulrahman", "Mansour", "Naif",
    "Fatima",   "Noura",   "Sara",      "Maryam",      "Aisha",   "Reem",
    "Hessa",    "Latifa",  "Mona",      "Huda",        "Amal",    "Asma",
    "Khadija",  "Zainab",  "Layla",     "Salma",       "Dalal",   "Shaikha"};
const char* const kFamily[] = {
    "Al-Harbi",   "Al-Otaibi",  "Al-Mutairi", "Al-Shammari", "Al-Dosari",
    "Al-Qahtani", "Al-Zahrani", "Al-Ghamdi",  "Al-Anazi",    "Al-Rashidi",
    "Al-Sabah",   "Al-Ajmi",    "Al-Enezi",   "Al-Hajri",    "Al-Kandari",
    "Al-Azmi",    "Haddad",     "Khoury",     "Mansour",     "Saleh"};

// Zipf-weighted index in [0, n).
size_t Zipf(size_t n, std::mt19937& rng) {
  std::vector<double> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = 1.0 / static_cast<double>(i + 1);
  return std::discrete_distribution<size_t>(w.begin(), w.end())(rng);
}

// A made-up given name of three consonant-vowel syllables.
std::string MadeUpName(size_t i) {
  static const char kC[] = "bdfghjklmnrstz";
  static const char kV[] = "aeiou";
  std::string name;
  for (int k = 0; k < 3; ++k) {
    name += kC[i % 14];
    name += kV[i / 14 % 5];
    i = i / 70 + i * 7 % 70;
  }
  name[0] = static_cast<char>(name[0] - 'a' + 'A');
  return name;
}

Person RandomPerson(int64_t n, std::mt19937& rng) {
  Person p;
  p.set_subject_id(absl::StrCat("s-", n));
  p.set_state(hawiya::v1::ACTIVE);
  p.set_national_id(absl::StrCat(100000000 + n));
  p.set_issuing_country("KWT");
  hawiya::v1::PersonName* name = p.mutable_name_latin();
  if (absl::GetFlag(FLAGS_varied)) {
    name->set_given(
        MadeUpName(std::uniform_int_distribution<size_t>(0, 2999)(rng)));
  } else {
    name->set_given(kGiven[Zipf(std::size(kGiven), rng)]);
  }
  name->set_father(kGiven[Zipf(24, rng)]);
  name->set_family(kFamily[Zipf(std::size(kFamily), rng)]);
  p.mutable_date_of_birth()->set_year(1970);
  p.mutable_date_of_birth()->set_month(1);
  p.mutable_date_of_birth()->set_day(1);
  return p;
}

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

int Run() {
  const int persons = absl::GetFlag(FLAGS_persons);
  const int probes = absl::GetFlag(FLAGS_probes);
  std::string dir =
      (std::filesystem::temp_directory_path() / "hawiya-dedup-bench-XXXXXX")
          .string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  hawiya::enroll::StoreOptions options;
  options.path = dir + "/hawiya.db";
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  std::mt19937 rng(7);
  const Clock::time_point fill = Clock::now();
  for (int start = 0; start < persons; start += 1000) {
    std::vector<NewPerson> batch;
    for (int n = start; n < std::min(persons, start + 1000); ++n) {
      NewPerson& item = batch.emplace_back();
      item.key = {absl::StrCat("r-", n), "Enroll", "f"};
      item.person = RandomPerson(n, rng);
    }
    if (absl::Status s = (*store)->CreatePersons(batch).status(); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  const double fill_ms = Ms(Clock::now() - fill);

  sqlite3* db = nullptr;
  sqlite3_open_v2(options.path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  double lookup_ms = 0, keyed_ms = 0, full_ms = 0;
  int64_t keyed_rows = 0, keyed_matches = 0, full_matches = 0;
  for (int i = 0; i < probes; ++i) {
    Person probe = RandomPerson(persons + i, rng);
    Clock::time_point t = Clock::now();
    absl::StatusOr<std::vector<Person>> found =
        (*store)->DemographicCandidates(probe);
    if (!found.ok()) return 1;
    lookup_ms += Ms(Clock::now() - t);
    for (const Person& p : *found) {
      keyed_matches += hawiya::enroll::names::CompareNames(probe.name_latin(),
                                                           p.name_latin())
                           .match;
    }
    keyed_ms += Ms(Clock::now() - t);
    keyed_rows += static_cast<int64_t>(found->size());

    t = Clock::now();
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT record FROM persons WHERE birth_date = 19700101",
                       -1, &stmt, nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      Person p;
      p.ParseFromArray(sqlite3_column_blob(stmt, 0),
                       sqlite3_column_bytes(stmt, 0));
      full_matches += hawiya::enroll::names::CompareNames(probe.name_latin(),
                                                          p.name_latin())
                          .match;
    }
    sqlite3_finalize(stmt);
    full_ms += Ms(Clock::now() - t);
  }
  sqlite3_stmt* count = nullptr;
  sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM name_keys", -1, &count, nullptr);
  sqlite3_step(count);
  const double keys_per_person =
      static_cast<double>(sqlite3_column_int64(count, 0)) / persons;
  sqlite3_finalize(count);
  sqlite3_close(db);
  std::printf("name_keys rows per person: %.1f\n", keys_per_person);
  std::printf(
      "persons on one date: %d (stored in %.0f ms, %.0f/s)\n"
      "keyed lookup + compare: %.2f ms per probe (lookup %.2f ms), %.0f rows "
      "read per probe, %lld matches\n"
      "full read + compare:    %.2f ms per probe, %d rows read per probe, "
      "%lld matches\n",
      persons, fill_ms, persons / fill_ms * 1000, keyed_ms / probes,
      lookup_ms / probes, static_cast<double>(keyed_rows) / probes,
      static_cast<long long>(keyed_matches), full_ms / probes, persons,
      static_cast<long long>(full_matches));
  std::filesystem::remove_all(dir);
  return keyed_matches == full_matches ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
