#include "enroll/store.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/types.pb.h"
#include "tests/testing/raw_db.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::hawiya::v1::Person;
using ::hawiya::v1::PersonState;
using ::hawiya::v1::Template;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::StartsWith;

// A fresh folder per test: tests run in parallel processes (ctest -j), so the
// name carries the pid as well as the test name.
fs::path UniqueDir() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  static std::atomic<int> counter{0};
  std::string name =
      absl::StrCat("hawiya_store_", getpid(), "_", info->test_suite_name(), "_",
                   info->name(), "_", counter++);
  std::replace(name.begin(), name.end(), '/', '_');
  return fs::path(::testing::TempDir()) / name;
}

int64_t Micros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

Person MakePerson(const std::string& subject_id, const std::string& national_id,
                  PersonState state = hawiya::v1::ACTIVE) {
  Person p;
  p.set_subject_id(subject_id);
  p.set_state(state);
  p.set_national_id(national_id);
  p.set_issuing_country("KWT");
  p.mutable_name_latin()->set_given("Given " + national_id);
  p.mutable_name_latin()->set_family("Family");
  p.mutable_date_of_birth()->set_year(1990);
  p.mutable_date_of_birth()->set_month(5);
  p.mutable_date_of_birth()->set_day(17);
  return p;
}

// Components chosen to be unlikely anywhere else in the database file, so
// their bytes can be searched for.
Template MakeTemplate(hawiya::v1::Modality modality, float seed,
                      int dimension = 512) {
  Template t;
  t.set_modality(modality);
  t.set_position(modality == hawiya::v1::FACE ? 0 : 1);
  t.set_quality(77);
  t.set_algorithm("test-gen/1.0");
  for (int i = 0; i < dimension; ++i) {
    t.add_vector(seed + 0.000731f * static_cast<float>(i) +
                 1e-7f * static_cast<float>(i * i));
  }
  return t;
}

Template Face(float seed) { return MakeTemplate(hawiya::v1::FACE, seed); }
Template Finger(float seed) {
  return MakeTemplate(hawiya::v1::FINGERPRINT, seed, 256);
}

IdempotencyKey Key(const std::string& request_id,
                   const std::string& method = "Enroll") {
  return IdempotencyKey{request_id, method, "digest-of-" + request_id};
}

std::string VectorBytes(const Template& t) {
  std::string bytes(t.vector_size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), t.vector().data(), bytes.size());
  return bytes;  // the test hosts are little-endian, like the file format
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

using ::hawiya::testing::RawDb;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = UniqueDir();
    fs::remove_all(dir_);
    ASSERT_TRUE(fs::create_directories(dir_));
    path_ = dir_ / "hawiya.db";
    Reopen();
  }

  void TearDown() override {
    store_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open(StoreOptions{path_.string()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  WriteResult Create(const Person& person,
                     const std::vector<Template>& templates = {},
                     const std::string& request_id = "") {
    absl::StatusOr<WriteResult> result = store_->CreatePerson(
        Key(request_id.empty() ? "req-" + person.subject_id() : request_id),
        person, templates);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *std::move(result) : WriteResult{};
  }

  std::vector<TemplateRecord> ActiveTemplates() {
    std::vector<TemplateRecord> out;
    const absl::Status status =
        store_->ForEachActiveTemplate([&](TemplateRecord&& record) {
          out.push_back(std::move(record));
          return absl::OkStatus();
        });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  std::map<PersonState, int64_t> Counts() {
    absl::StatusOr<std::map<PersonState, int64_t>> counts =
        store_->CountPersons();
    EXPECT_TRUE(counts.ok()) << counts.status();
    return counts.ok() ? *counts : std::map<PersonState, int64_t>{};
  }

  // Every byte of the database folder: main file, WAL, shared memory and
  // the key folder.
  std::string AllFileBytes() {
    std::string all;
    for (const fs::directory_entry& entry :
         fs::recursive_directory_iterator(dir_)) {
      if (entry.is_regular_file()) all += ReadFile(entry.path());
    }
    return all;
  }

  fs::path dir_;
  fs::path path_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, CreateThenGetAndFindFillOutputOnlyFields) {
  Person input = MakePerson("s-1", "123");
  // Output-only fields from the caller must not leak into the record.
  input.set_version(77);
  input.mutable_create_time()->set_seconds(5);
  input.add_template_counts()->set_count(99);

  const int64_t before = absl::ToUnixMicros(absl::Now());
  WriteResult created =
      Create(input, {Finger(0.5f), Face(0.1f), Face(0.2f)}, "req-a");
  const int64_t after = absl::ToUnixMicros(absl::Now());

  EXPECT_FALSE(created.replayed);
  ASSERT_EQ(created.templates.size(), 3u);
  EXPECT_LT(created.templates[0].template_id, created.templates[1].template_id);
  EXPECT_LT(created.templates[1].template_id, created.templates[2].template_id);
  EXPECT_EQ(created.templates[0].subject_id, "s-1");
  EXPECT_EQ(created.templates[1].tmpl.vector_size(), 512);

  const Person& p = created.person;
  EXPECT_EQ(p.subject_id(), "s-1");
  EXPECT_EQ(p.state(), hawiya::v1::ACTIVE);
  EXPECT_EQ(p.version(), 1);
  EXPECT_GE(Micros(p.create_time()), before);
  EXPECT_LE(Micros(p.create_time()), after);
  EXPECT_EQ(Micros(p.update_time()), Micros(p.create_time()));
  EXPECT_EQ(p.name_latin().given(), "Given 123");
  EXPECT_EQ(p.date_of_birth().day(), 17);
  // Modality order (FACE before FINGERPRINT), whatever the insert order.
  ASSERT_EQ(p.template_counts_size(), 2);
  EXPECT_EQ(p.template_counts(0).modality(), hawiya::v1::FACE);
  EXPECT_EQ(p.template_counts(0).count(), 2u);
  EXPECT_EQ(p.template_counts(1).modality(), hawiya::v1::FINGERPRINT);
  EXPECT_EQ(p.template_counts(1).count(), 1u);

  absl::StatusOr<Person> got = store_->GetPerson("s-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->SerializeAsString(), p.SerializeAsString());

  absl::StatusOr<Person> found = store_->FindPerson("123", "KWT");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->SerializeAsString(), p.SerializeAsString());
}

TEST_F(StoreTest, NewDatabaseFilesAreOwnerOnly) {
  Create(MakePerson("subject-1", "N1"));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path file = path_.string() + suffix;
    ASSERT_TRUE(fs::exists(file)) << file;
    EXPECT_EQ(fs::status(file).permissions() &
                  (fs::perms::group_all | fs::perms::others_all),
              fs::perms::none)
        << file;
  }
}

TEST_F(StoreTest, MissingPersonIsNotFoundNamingTheField) {
  const absl::StatusOr<Person> got = store_->GetPerson("nobody");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "subject_id: no person nobody");

  Create(MakePerson("s-1", "123"));
  // Same national id, other country.
  const absl::StatusOr<Person> found = store_->FindPerson("123", "SAU");
  EXPECT_EQ(found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(found.status().message()),
              StartsWith("national_id: "));
}

TEST_F(StoreTest, PersonWithoutTemplates) {
  WriteResult created = Create(MakePerson("newborn", "2024"));
  EXPECT_TRUE(created.templates.empty());
  EXPECT_EQ(created.person.template_counts_size(), 0);
  EXPECT_TRUE(ActiveTemplates().empty());
}

TEST_F(StoreTest, DuplicateNationalIdIsRefusedAndLeavesNothing) {
  Create(MakePerson("s-1", "123"), {Face(0.1f)});
  RawDb raw(path_);
  const int64_t changes = raw.Int("SELECT COUNT(*) FROM changes");

  absl::StatusOr<WriteResult> dup = store_->CreatePerson(
      Key("req-dup"), MakePerson("s-2", "123"), {Face(0.2f), Finger(0.3f)});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(dup.status().message(),
            "person.national_id: 123 is already enrolled for KWT");

  EXPECT_EQ(store_->GetPerson("s-2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates WHERE subject_id = 's-2'"),
            0);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes);
  EXPECT_EQ(ActiveTemplates().size(), 1u);

  // A taken subject id (the server draws them at random, so only a store
  // caller could reuse one) is refused too, naming it.
  absl::StatusOr<WriteResult> same_subject = store_->CreatePerson(
      Key("req-same-subject"), MakePerson("s-1", "456"), {Face(0.4f)});
  EXPECT_EQ(same_subject.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(same_subject.status().message(), "subject_id: s-1 already exists");
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes);

  // The same national id in another country is a different person, and the
  // refused request_id was not consumed.
  Person other = MakePerson("s-2", "123");
  other.set_issuing_country("SAU");
  absl::StatusOr<WriteResult> ok =
      store_->CreatePerson(Key("req-dup"), other, {Face(0.2f)});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->replayed);
}

TEST_F(StoreTest, ReplayReturnsFirstResultAndWritesNothing) {
  WriteResult first = Create(MakePerson("s-1", "123"), {Face(0.1f)}, "req-1");
  RawDb raw(path_);
  const int64_t changes = raw.Int("SELECT COUNT(*) FROM changes");
  const int64_t templates = raw.Int("SELECT COUNT(*) FROM templates");

  // A retried Enroll arrives with a freshly generated subject id; the stored
  // result still wins.
  absl::StatusOr<WriteResult> replay = store_->CreatePerson(
      Key("req-1"), MakePerson("s-retry", "123"), {Face(0.1f)});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  EXPECT_TRUE(replay->templates.empty());
  EXPECT_EQ(replay->person.subject_id(), "s-1");
  EXPECT_EQ(replay->person.SerializeAsString(),
            first.person.SerializeAsString());

  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates"), templates);
  EXPECT_THAT(Counts(), ElementsAre(Pair(hawiya::v1::ACTIVE, 1)));
  EXPECT_EQ(store_->GetPerson("s-retry").status().code(),
            absl::StatusCode::kNotFound);
}

// The idempotency row names the subject only: after an update a replay
// answers with the record as it is now, and no copy of the old one is kept.
TEST_F(StoreTest, ReplayAfterUpdateAnswersWithThePersonAsItIsNow) {
  WriteResult first = Create(MakePerson("s-1", "123"), {Face(0.1f)}, "req-1");
  ASSERT_EQ(first.person.name_latin().given(), "Given 123");
  Person renamed = first.person;
  renamed.mutable_name_latin()->set_given("Renamed");
  ASSERT_TRUE(store_->UpdatePerson(renamed, 1).ok());

  absl::StatusOr<WriteResult> replay = store_->CreatePerson(
      Key("req-1"), MakePerson("s-retry", "123"), {Face(0.1f)});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->person.subject_id(), "s-1");
  EXPECT_EQ(replay->person.name_latin().given(), "Renamed");
  EXPECT_EQ(replay->person.version(), 2);
  EXPECT_EQ(replay->person.SerializeAsString(),
            store_->GetPerson("s-1")->SerializeAsString());
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency WHERE "
                    "instr(response, 'Given 123') > 0"),
            0);
  Person stub;
  ASSERT_TRUE(stub.ParseFromString(
      raw.Blob("SELECT response FROM idempotency WHERE request_id = 'req-1'")));
  EXPECT_EQ(stub.ShortDebugString(), "subject_id: \"s-1\"");
}

// Rows an older version wrote with the whole record are reduced to the
// subject id once, at open; replays still answer.
TEST_F(StoreTest, OpenReducesResponsesOlderVersionsStoredWhole) {
  WriteResult first = Create(MakePerson("s-1", "123"), {Face(0.1f)}, "req-1");
  {
    RawDb raw(path_);
    raw.ExecBlob("UPDATE idempotency SET response = ?1",
                 first.person.SerializeAsString());
    raw.Exec("DELETE FROM meta WHERE key = 'responses_scrubbed'");
  }
  Reopen();
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency WHERE "
                    "instr(response, 'Given 123') > 0"),
            0);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM meta WHERE key = "
                    "'responses_scrubbed'"),
            1);
  absl::StatusOr<WriteResult> replay =
      store_->CreatePerson(Key("req-1"), MakePerson("s-retry", "123"), {});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->person.SerializeAsString(),
            first.person.SerializeAsString());
}

TEST_F(StoreTest, CreatePersonsIsOneTransactionNamingTheFailedItem) {
  Create(MakePerson("s-0", "100"), {Face(0.1f)}, "req-0");
  RawDb raw(path_);
  const int64_t changes = raw.Int("SELECT COUNT(*) FROM changes");
  const int64_t requests = raw.Int("SELECT COUNT(*) FROM idempotency");

  // Item 2 collides with the committed person: items 0 and 1, already
  // inserted in the transaction, must roll back with it.
  std::vector<NewPerson> batch = {
      {Key("req-1"), MakePerson("s-1", "101"), {Face(0.2f)}},
      {Key("req-2"), MakePerson("s-2", "102"), {Face(0.3f), Finger(0.4f)}},
      {Key("req-3"), MakePerson("s-3", "100"), {Face(0.5f)}},
  };
  absl::StatusOr<std::vector<WriteResult>> refused =
      store_->CreatePersons(batch);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(refused.status().message(),
            "[2].person.national_id: 100 is already enrolled for KWT");
  EXPECT_THAT(Counts(), ElementsAre(Pair(hawiya::v1::ACTIVE, 1)));
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency"), requests);
  EXPECT_EQ(ActiveTemplates().size(), 1u);

  // Fixed, with a replay of the committed request in front: the replay
  // writes nothing, the rest is written, and a second run replays it all.
  batch[2].person.set_national_id("103");
  batch.insert(batch.begin(),
               {Key("req-0"), MakePerson("s-retry", "100"), {Face(0.1f)}});
  absl::StatusOr<std::vector<WriteResult>> written =
      store_->CreatePersons(batch);
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->size(), 4u);
  EXPECT_TRUE((*written)[0].replayed);
  EXPECT_EQ((*written)[0].person.subject_id(), "s-0");
  EXPECT_FALSE((*written)[2].replayed);
  EXPECT_EQ((*written)[2].templates.size(), 2u);
  EXPECT_EQ((*written)[3].person.subject_id(), "s-3");
  EXPECT_THAT(Counts(), ElementsAre(Pair(hawiya::v1::ACTIVE, 4)));
  EXPECT_EQ(ActiveTemplates().size(), 5u);
  // Each answer is what a read returns (the store builds new persons'
  // answers without reading them back), template counts included.
  for (const WriteResult& result : *written) {
    absl::StatusOr<Person> got = store_->GetPerson(result.person.subject_id());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->SerializeAsString(), result.person.SerializeAsString());
  }

  absl::StatusOr<std::vector<WriteResult>> replayed =
      store_->CreatePersons(batch);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  for (const WriteResult& result : *replayed) EXPECT_TRUE(result.replayed);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes + 3);
  EXPECT_TRUE(store_->CreatePersons({}).ok());
}

// Pruning deletes exactly the rows below the sequence, across several of
// its short transactions (25,000 rows > 10,000 per transaction), and leaves
// the numbering of later changes alone.
TEST_F(StoreTest, PruneChangesBeforeKeepsTheSequenceAndLaterRows) {
  constexpr int kPersons = 25000;
  std::vector<NewPerson> batch;
  for (int i = 0; i < kPersons; ++i) {
    batch.push_back({Key(absl::StrCat("req-", i)),
                     MakePerson(absl::StrCat("s-", i), absl::StrCat(1000 + i)),
                     {}});
  }
  ASSERT_TRUE(store_->CreatePersons(batch).ok());
  ASSERT_EQ(*store_->ChangeSequence(), kPersons);

  absl::StatusOr<int64_t> pruned = store_->PruneChangesBefore(24000);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 23999);
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), kPersons - 23999);
  EXPECT_EQ(store_->GetChange(23999).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<Change> kept = store_->GetChange(24000);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->subject_id, "s-23999");
  EXPECT_EQ(*store_->ChangeSequence(), kPersons);
  EXPECT_EQ(store_->SubjectsChangedAfter(24000)->subject_ids.size(), 1000u);
  EXPECT_EQ(*store_->PruneChangesBefore(24000), 0);

  // Even with every row gone, a new change is numbered after the old ones.
  EXPECT_EQ(*store_->PruneChangesBefore(kPersons + 1), kPersons - 23999);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), 0);
  Create(MakePerson("s-new", "999"));
  EXPECT_EQ(*store_->ChangeSequence(), kPersons + 1);
}

TEST_F(StoreTest, ReusedRequestIdForAnotherRequestIsRefused) {
  Create(MakePerson("s-1", "123"), {}, "req-1");

  IdempotencyKey other_fingerprint = Key("req-1");
  other_fingerprint.fingerprint = "another digest";
  absl::StatusOr<WriteResult> refused =
      store_->CreatePerson(other_fingerprint, MakePerson("s-2", "456"), {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(refused.status().message(),
            "request_id: already used for a different request");

  // Same fingerprint, other method.
  absl::StatusOr<WriteResult> other_method = store_->ReplaceTemplates(
      Key("req-1", "ReplaceTemplates"), "s-1", {Face(0.3f)});
  EXPECT_EQ(other_method.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(other_method.status().message(),
            "request_id: already used for a different request");

  EXPECT_EQ(store_->GetPerson("s-2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(ActiveTemplates().empty());
}

TEST_F(StoreTest, UpdateIsCompareAndSet) {
  WriteResult created = Create(MakePerson("s-1", "123"), {Face(0.1f)});
  Create(MakePerson("s-2", "456"));

  Person change = created.person;
  change.mutable_name_latin()->set_given("Renamed");
  change.set_civil_status(hawiya::v1::WIDOWED);
  absl::StatusOr<Person> updated = store_->UpdatePerson(change, 1);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->version(), 2);
  EXPECT_EQ(updated->name_latin().given(), "Renamed");
  EXPECT_EQ(updated->civil_status(), hawiya::v1::WIDOWED);
  EXPECT_EQ(Micros(updated->create_time()),
            Micros(created.person.create_time()));
  EXPECT_GE(Micros(updated->update_time()),
            Micros(created.person.update_time()));
  EXPECT_EQ(updated->template_counts_size(), 1);

  // A writer still holding version 1 lost the race.
  Person stale = created.person;
  stale.mutable_name_latin()->set_given("Lost update");
  absl::StatusOr<Person> aborted = store_->UpdatePerson(stale, 1);
  EXPECT_EQ(aborted.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(aborted.status().message(),
            "expected_version: is 1, current version is 2");
  EXPECT_EQ(store_->GetPerson("s-1")->name_latin().given(), "Renamed");

  Person clash = *updated;
  clash.set_national_id("456");
  absl::StatusOr<Person> taken = store_->UpdatePerson(clash, 2);
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(taken.status().message(),
            "person.national_id: 456 is already enrolled for KWT");
  EXPECT_EQ(store_->GetPerson("s-1")->version(), 2);

  // A new national id frees the old one.
  Person moved = *updated;
  moved.set_national_id("789");
  ASSERT_TRUE(store_->UpdatePerson(moved, 2).ok());
  EXPECT_EQ(store_->FindPerson("789", "KWT")->subject_id(), "s-1");
  EXPECT_EQ(store_->FindPerson("123", "KWT").status().code(),
            absl::StatusCode::kNotFound);

  Person ghost = MakePerson("ghost", "000");
  absl::StatusOr<Person> missing = store_->UpdatePerson(ghost, 1);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "subject_id: no person ghost");
}

// A revoked record stays as it was withdrawn: UpdatePerson refuses it, as
// ReplaceTemplates does.
TEST_F(StoreTest, RevokedRecordCannotBeUpdated) {
  WriteResult created = Create(MakePerson("s-1", "123"));
  ASSERT_TRUE(store_->RevokePerson("s-1", "fraudulent enrollment").ok());
  Person change = created.person;
  change.clear_state();
  change.mutable_name_latin()->set_given("Renamed");
  absl::StatusOr<Person> refused = store_->UpdatePerson(change, 2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(), "person.subject_id: person is REVOKED");
  absl::StatusOr<Person> kept = store_->GetPerson("s-1");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->version(), 2);
  EXPECT_EQ(kept->name_latin().given(), "Given 123");
  EXPECT_EQ(kept->state(), hawiya::v1::REVOKED);
}

TEST_F(StoreTest, UpdateWithoutStateKeepsStoredState) {
  Create(MakePerson("s-1", "123", hawiya::v1::PENDING_ADJUDICATION));
  Person change =
      MakePerson("s-1", "123", hawiya::v1::PERSON_STATE_UNSPECIFIED);
  absl::StatusOr<Person> kept = store_->UpdatePerson(change, 1);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->state(), hawiya::v1::PENDING_ADJUDICATION);

  change.set_state(hawiya::v1::ACTIVE);
  absl::StatusOr<Person> decided = store_->UpdatePerson(change, 2);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->state(), hawiya::v1::ACTIVE);
  EXPECT_EQ(decided->version(), 3);
}

TEST_F(StoreTest, ReplaceTemplates) {
  WriteResult created =
      Create(MakePerson("s-1", "123"), {Face(0.1f), Face(0.2f)});
  Create(MakePerson("s-2", "456"), {Face(0.3f)});
  const int64_t old_max = std::max(created.templates[0].template_id,
                                   created.templates[1].template_id);

  absl::StatusOr<WriteResult> replaced = store_->ReplaceTemplates(
      Key("req-replace", "ReplaceTemplates"), "s-1", {Finger(0.4f)});
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_FALSE(replaced->replayed);
  ASSERT_EQ(replaced->templates.size(), 1u);
  EXPECT_GT(replaced->templates[0].template_id, old_max);
  EXPECT_EQ(replaced->person.version(), 2);
  ASSERT_EQ(replaced->person.template_counts_size(), 1);
  EXPECT_EQ(replaced->person.template_counts(0).modality(),
            hawiya::v1::FINGERPRINT);

  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 2u);
  // template_id order: s-2's face, then s-1's new finger.
  EXPECT_EQ(active[0].subject_id, "s-2");
  EXPECT_EQ(active[1].subject_id, "s-1");
  EXPECT_EQ(active[1].template_id, replaced->templates[0].template_id);
  EXPECT_EQ(active[1].tmpl.modality(), hawiya::v1::FINGERPRINT);
  EXPECT_EQ(active[1].tmpl.quality(), 77u);
  EXPECT_EQ(active[1].tmpl.algorithm(), "test-gen/1.0");
  EXPECT_EQ(VectorBytes(active[1].tmpl), VectorBytes(Finger(0.4f)));

  // Replay: same result, nothing written.
  absl::StatusOr<WriteResult> replay = store_->ReplaceTemplates(
      Key("req-replace", "ReplaceTemplates"), "s-1", {Finger(0.4f)});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
  EXPECT_TRUE(replay->templates.empty());
  EXPECT_EQ(replay->person.version(), 2);
  EXPECT_EQ(store_->GetPerson("s-1")->version(), 2);
  EXPECT_EQ(ActiveTemplates().size(), 2u);

  absl::StatusOr<WriteResult> missing = store_->ReplaceTemplates(
      Key("req-ghost", "ReplaceTemplates"), "ghost", {Face(0.5f)});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "subject_id: no person ghost");

  // A revoked person's templates cannot be replaced, but the earlier request
  // still replays its first result.
  ASSERT_TRUE(store_->RevokePerson("s-1", "test").ok());
  absl::StatusOr<WriteResult> revoked = store_->ReplaceTemplates(
      Key("req-after-revoke", "ReplaceTemplates"), "s-1", {Face(0.6f)});
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(revoked.status().message(), "subject_id: person is REVOKED");
  replay = store_->ReplaceTemplates(Key("req-replace", "ReplaceTemplates"),
                                    "s-1", {Finger(0.4f)});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);
}

TEST_F(StoreTest, TemplateIdsAreNeverReused) {
  WriteResult a = Create(MakePerson("s-1", "123"), {Face(0.1f)});
  ASSERT_TRUE(store_->ErasePerson("s-1").ok());
  WriteResult b = Create(MakePerson("s-2", "456"), {Face(0.2f)});
  ASSERT_EQ(b.templates.size(), 1u);
  EXPECT_GT(b.templates[0].template_id, a.templates[0].template_id);
}

TEST_F(StoreTest, RevokeHidesTemplatesButKeepsRecord) {
  Create(MakePerson("s-1", "123"), {Face(0.1f)});
  Create(MakePerson("s-2", "456"), {Face(0.2f)});

  ASSERT_TRUE(store_->RevokePerson("s-1", "fraudulent enrollment").ok());
  absl::StatusOr<Person> revoked = store_->GetPerson("s-1");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->state(), hawiya::v1::REVOKED);
  EXPECT_EQ(revoked->version(), 2);
  EXPECT_EQ(revoked->template_counts_size(), 1);

  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].subject_id, "s-2");
  EXPECT_THAT(Counts(), ElementsAre(Pair(hawiya::v1::ACTIVE, 1),
                                    Pair(hawiya::v1::REVOKED, 1)));

  RawDb raw(path_);
  EXPECT_EQ(raw.Text("SELECT revoke_reason FROM persons WHERE subject_id = "
                     "'s-1'"),
            "fraudulent enrollment");

  const absl::Status missing = store_->RevokePerson("ghost", "x");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "subject_id: no person ghost");
}

TEST_F(StoreTest, OnlyActivePersonsTemplatesAreListed) {
  Create(MakePerson("s-1", "1", hawiya::v1::PENDING_ADJUDICATION),
         {Face(0.1f)});
  Create(MakePerson("s-2", "2", hawiya::v1::DECEASED), {Face(0.2f)});
  Create(MakePerson("s-3", "3"), {Face(0.3f)});
  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].subject_id, "s-3");
}

TEST_F(StoreTest, ForEachActiveTemplateStopsAtFirstError) {
  Create(MakePerson("s-1", "1"), {Face(0.1f), Face(0.2f), Face(0.3f)});
  int calls = 0;
  const absl::Status status =
      store_->ForEachActiveTemplate([&](TemplateRecord&&) {
        ++calls;
        return calls == 2 ? absl::CancelledError("enough") : absl::OkStatus();
      });
  EXPECT_EQ(status, absl::CancelledError("enough"));
  EXPECT_EQ(calls, 2);
  // The store is still usable afterwards.
  EXPECT_EQ(ActiveTemplates().size(), 3u);
}

TEST_F(StoreTest, EraseRemovesEveryTraceOfTheTemplates) {
  const Template secret = Face(0.4242f);
  const Template kept = Face(0.1313f);
  Create(MakePerson("s-1", "123"), {secret, Finger(0.77f)}, "req-1");
  Create(MakePerson("s-2", "456"), {kept});
  // Let some of it reach the main file too, as in a long-running server.
  RawDb(path_).Exec("PRAGMA wal_checkpoint(PASSIVE)");
  ASSERT_TRUE(store_
                  ->ReplaceTemplates(Key("req-2", "ReplaceTemplates"), "s-1",
                                     {secret, Finger(0.77f)})
                  .ok());

  // What is on disk is the sealed vectors: those must go (and the plaintext
  // is never there at all).
  const std::vector<std::string> secret_sealed = RawDb(path_).Blobs(
      "SELECT vector FROM templates WHERE subject_id = 's-1' ORDER BY "
      "template_id");
  ASSERT_EQ(secret_sealed.size(), 2u);
  const std::string secret_bytes = secret_sealed[0];
  const std::string kept_bytes = RawDb(path_).Blobs(
      "SELECT vector FROM templates WHERE subject_id = 's-2'")[0];
  // Chunks rather than the whole vector: a page boundary could split it.
  const auto find_chunks = [](const std::string& haystack,
                              const std::string& needle) {
    int found = 0;
    for (size_t offset = 0; offset + 64 <= needle.size(); offset += 256) {
      if (haystack.find(needle.substr(offset, 64)) != std::string::npos) {
        ++found;
      }
    }
    return found;
  };
  const int chunks = static_cast<int>(secret_bytes.size() / 256);

  // Guard against a vacuous pass: the bytes are there before the erase.
  EXPECT_EQ(find_chunks(AllFileBytes(), secret_bytes), chunks);
  EXPECT_EQ(find_chunks(AllFileBytes(), VectorBytes(secret)), 0);

  ASSERT_TRUE(store_->ErasePerson("s-1").ok());

  const std::string after = AllFileBytes();
  EXPECT_EQ(find_chunks(after, secret_bytes), 0);
  EXPECT_EQ(find_chunks(after, secret_sealed[1]), 0);
  // The other person's template survives: the search itself works.
  EXPECT_EQ(find_chunks(after, kept_bytes), chunks);

  EXPECT_EQ(store_->GetPerson("s-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->FindPerson("123", "KWT").status().code(),
            absl::StatusCode::kNotFound);
  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].subject_id, "s-2");

  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates WHERE subject_id = 's-1'"),
            0);
  EXPECT_EQ(
      raw.Int("SELECT COUNT(*) FROM idempotency WHERE subject_id = 's-1'"), 0);
  // s-1's two requests stay as tombstones, without the record they returned.
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency"), 3);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency WHERE subject_id IS NULL "
                    "AND length(response) = 0"),
            2);
  // Replaying the enrollment must not bring the erased person back.
  const absl::StatusOr<WriteResult> replay = store_->CreatePerson(
      Key("req-1"), MakePerson("s-1", "123"), {secret, Finger(0.77f)});
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(replay.status().message()),
              ::testing::StartsWith("request_id"));
  EXPECT_EQ(store_->GetPerson("s-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(raw.Text("SELECT kind FROM changes ORDER BY seq DESC LIMIT 1"),
            "erase");

  const absl::Status again = store_->ErasePerson("s-1");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(again.message(), "subject_id: no person s-1");
}

TEST_F(StoreTest, PaginationVisitsEveryPersonOnceWithStateFilter) {
  const PersonState kStates[] = {hawiya::v1::ACTIVE,
                                 hawiya::v1::PENDING_ADJUDICATION,
                                 hawiya::v1::REVOKED, hawiya::v1::DECEASED};
  std::map<PersonState, std::vector<std::string>> by_state;
  std::vector<std::string> all;
  for (int i = 0; i < 24; ++i) {
    // Inserted out of subject_id order.
    const std::string id = absl::StrFormat("s-%02d", (i * 7) % 24);
    const PersonState state = kStates[i % 4];
    if (state == hawiya::v1::REVOKED) {
      Create(MakePerson(id, absl::StrCat(i)), {Face(0.01f * i)});
      ASSERT_TRUE(store_->RevokePerson(id, "test").ok());
    } else {
      Create(MakePerson(id, absl::StrCat(i), state), {Face(0.01f * i)});
    }
    by_state[state].push_back(id);
    all.push_back(id);
  }

  const auto list_all = [&](PersonState state, int page_size,
                            std::vector<size_t>* page_sizes) {
    std::vector<std::string> ids;
    std::string after;
    for (int pages = 0; pages < 100; ++pages) {
      absl::StatusOr<PersonPage> page =
          store_->ListPersons(state, page_size, after);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      page_sizes->push_back(page->persons.size());
      for (const Person& p : page->persons) {
        if (state != hawiya::v1::PERSON_STATE_UNSPECIFIED) {
          EXPECT_EQ(p.state(), state);
        }
        EXPECT_EQ(p.template_counts_size(), 1);
        EXPECT_GT(p.version(), 0);
        ids.push_back(p.subject_id());
      }
      if (page->last_subject_id.empty()) break;
      EXPECT_EQ(page->last_subject_id, page->persons.back().subject_id());
      after = page->last_subject_id;
    }
    return ids;
  };

  std::sort(all.begin(), all.end());
  std::vector<size_t> sizes;
  EXPECT_EQ(list_all(hawiya::v1::PERSON_STATE_UNSPECIFIED, 5, &sizes), all);
  EXPECT_THAT(sizes, ElementsAre(5, 5, 5, 5, 4));

  for (PersonState state : kStates) {
    std::vector<std::string> expected = by_state[state];
    std::sort(expected.begin(), expected.end());
    sizes.clear();
    // 6 per state in pages of 3: the second page is full yet the last, so
    // it must not promise more.
    EXPECT_EQ(list_all(state, 3, &sizes), expected) << state;
    EXPECT_THAT(sizes, ElementsAre(3, 3)) << state;
  }

  sizes.clear();
  EXPECT_EQ(list_all(hawiya::v1::PERSON_STATE_UNSPECIFIED, 24, &sizes), all);
  EXPECT_THAT(sizes, ElementsAre(24));

  EXPECT_EQ(store_->ListPersons(hawiya::v1::PERSON_STATE_UNSPECIFIED, 0, "")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Counts(), ElementsAre(Pair(hawiya::v1::ACTIVE, 6),
                                    Pair(hawiya::v1::PENDING_ADJUDICATION, 6),
                                    Pair(hawiya::v1::REVOKED, 6),
                                    Pair(hawiya::v1::DECEASED, 6)));
}

TEST_F(StoreTest, ReopenKeepsEverythingWithoutRerunningSchema) {
  WriteResult created =
      Create(MakePerson("s-1", "123"), {Face(0.1f), Finger(0.2f)}, "req-1");
  Person change = created.person;
  change.set_place_of_birth("Jahra");
  ASSERT_TRUE(store_->UpdatePerson(change, 1).ok());
  const Person before = *store_->GetPerson("s-1");

  Reopen();

  absl::StatusOr<Person> after = store_->GetPerson("s-1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->SerializeAsString(), before.SerializeAsString());
  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].template_id, created.templates[0].template_id);
  EXPECT_EQ(VectorBytes(active[0].tmpl), VectorBytes(Face(0.1f)));
  // The idempotency record survived too.
  absl::StatusOr<WriteResult> replay =
      store_->CreatePerson(Key("req-1"), MakePerson("s-9", "123"), {});
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->replayed);

  RawDb raw(path_);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), 8);
  EXPECT_EQ(raw.Text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' "
                    "AND name IN ('persons', 'templates', 'idempotency', "
                    "'changes', 'meta', 'data_keys', 'audit', "
                    "'signing_keys', 'partner_quota', 'cases', "
                    "'distinct_pairs', 'name_keys', 'snapshots')"),
            13);
}

// Each write says which change-log rows it appended, so that a caller can
// tell its own changes from another writer's in between.
TEST_F(StoreTest, WritesReportTheChangesTheyAppended) {
  AuditWrite first;
  ASSERT_TRUE(store_
                  ->CreatePerson(Key("req-1"), MakePerson("s-1", "111"),
                                 {Face(0.1f)}, &first)
                  .ok());
  EXPECT_EQ(first.first_change, 1);
  EXPECT_EQ(first.last_change, 1);

  std::vector<NewPerson> batch;
  for (int i = 2; i <= 4; ++i) {
    NewPerson& item = batch.emplace_back();
    item.key = Key(absl::StrCat("req-", i));
    item.person = MakePerson(absl::StrCat("s-", i), absl::StrCat(i, i, i));
  }
  AuditWrite three;
  ASSERT_TRUE(store_->CreatePersons(batch, &three).ok());
  EXPECT_EQ(three.first_change, 2);
  EXPECT_EQ(three.last_change, 4);

  // A replay appends no change; nor does a write that fails.
  AuditWrite replay;
  ASSERT_TRUE(store_
                  ->CreatePerson(Key("req-1"), MakePerson("s-1", "111"),
                                 {Face(0.1f)}, &replay)
                  .ok());
  EXPECT_EQ(replay.last_change, 0);
  AuditWrite taken;
  EXPECT_EQ(
      store_->CreatePerson(Key("req-5"), MakePerson("s-5", "111"), {}, &taken)
          .status()
          .code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(taken.first_change, 0);
  EXPECT_EQ(taken.last_change, 0);

  // Another handle on the database (another process) writes change 5: this
  // handle's next write starts at 6, not right after its own last one.
  {
    absl::StatusOr<std::unique_ptr<Store>> other =
        Store::Open(StoreOptions{path_.string()});
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_TRUE((*other)->RevokePerson("s-2", "elsewhere").ok());
  }
  AuditWrite after;
  ASSERT_TRUE(store_->RevokePerson("s-3", "here", &after).ok());
  EXPECT_EQ(after.first_change, 6);
  EXPECT_EQ(after.last_change, 6);
  EXPECT_EQ(*store_->ChangeSequence(), 6);
}

TEST_F(StoreTest, RecordsTheSnapshotsWritten) {
  EXPECT_EQ(store_->GetSnapshot(5).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(store_->GetSnapshot(5).status().message()),
              StartsWith("sequence: "));
  ASSERT_TRUE(store_->RecordSnapshot({5, "aaaa", 100}).ok());
  ASSERT_TRUE(store_->RecordSnapshot({9, "bbbb", 200}).ok());
  // A later file at the same sequence replaces the record.
  ASSERT_TRUE(store_->RecordSnapshot({9, "cccc", 300}).ok());
  Reopen();
  absl::StatusOr<SnapshotRecord> nine = store_->GetSnapshot(9);
  ASSERT_TRUE(nine.ok()) << nine.status();
  EXPECT_EQ(nine->file_id, "cccc");
  EXPECT_EQ(nine->create_time_us, 300);
  EXPECT_EQ(store_->GetSnapshot(5)->file_id, "aaaa");

  const std::vector<int64_t> kept = {9};
  EXPECT_EQ(*store_->ForgetSnapshots(kept), 1);
  EXPECT_EQ(store_->GetSnapshot(5).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetSnapshot(9).ok());
  EXPECT_EQ(*store_->ForgetSnapshots({}), 1);
  EXPECT_FALSE(store_->GetSnapshot(9).ok());
}

// Schema 7 keys the names of the persons stored before it, so the
// demographic pre-check finds them by name blocking key.
TEST_F(StoreTest, MigrationToSchema7KeysExistingNames) {
  Person harbi = MakePerson("s-1", "123");
  harbi.mutable_name_latin()->set_given("Mohammed");
  harbi.mutable_name_latin()->set_family("Al-Harbi");
  Create(harbi, {}, "req-1");
  Create(MakePerson("s-2", "456"), {}, "req-2");  // "Given 456 Family"
  store_.reset();
  RawDb(path_).Exec(
      "DROP TABLE snapshots; DROP TABLE distinct_pairs; DROP TABLE name_keys; "
      "PRAGMA user_version = 6");
  Reopen();
  EXPECT_EQ(RawDb(path_).Int("PRAGMA user_version"), 8);
  EXPECT_GT(RawDb(path_).Int("SELECT COUNT(DISTINCT subject_id) FROM "
                             "name_keys"),
            1);

  Person probe = MakePerson("s-3", "789");
  probe.mutable_name_latin()->set_given("Muhammad");
  probe.mutable_name_latin()->set_family("Alharbi");
  absl::StatusOr<std::vector<Person>> found =
      store_->DemographicCandidates(probe);
  ASSERT_TRUE(found.ok()) << found.status();
  // Only the plausible name of the date: not "Given 456".
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].subject_id(), "s-1");
}

// Name keys follow the record: an update to the name or the date of birth
// moves them, an erase deletes them.
TEST_F(StoreTest, NameKeysFollowUpdatesAndErase) {
  Person probe = MakePerson("s-9", "999");
  probe.mutable_name_latin()->set_given("Khalid");
  auto candidates = [&]() {
    std::vector<std::string> ids;
    absl::StatusOr<std::vector<Person>> found =
        store_->DemographicCandidates(probe);
    EXPECT_TRUE(found.ok()) << found.status();
    if (!found.ok()) return ids;
    for (const Person& p : *found) ids.push_back(p.subject_id());
    return ids;
  };
  Person person = Create(MakePerson("s-1", "123"), {}, "req-1").person;
  EXPECT_THAT(candidates(), IsEmpty());
  person.mutable_name_latin()->set_given("Khaled");
  person = *store_->UpdatePerson(person, 1);
  EXPECT_THAT(candidates(), ElementsAre("s-1"));
  person.mutable_date_of_birth()->set_day(18);
  person = *store_->UpdatePerson(person, 2);
  EXPECT_THAT(candidates(), IsEmpty());
  probe.mutable_date_of_birth()->set_day(18);
  EXPECT_THAT(candidates(), ElementsAre("s-1"));
  ASSERT_TRUE(store_->ErasePerson("s-1").ok());
  EXPECT_EQ(RawDb(path_).Int("SELECT COUNT(*) FROM name_keys"), 0);
}

TEST_F(StoreTest, RefusesNewerSchema) {
  Create(MakePerson("s-1", "123"));
  store_.reset();
  RawDb(path_).Exec("PRAGMA user_version = 99");

  absl::StatusOr<std::unique_ptr<Store>> store =
      Store::Open(StoreOptions{path_.string()});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RawDb(path_).Int("PRAGMA user_version"), 99);
}

TEST(StoreOpenTest, RefusesNewerSchemaWithoutTouchingTheFile) {
  const fs::path dir = UniqueDir();
  fs::remove_all(dir);
  ASSERT_TRUE(fs::create_directories(dir));
  const fs::path path = dir / "future.db";
  {
    RawDb raw(path);
    raw.Exec("CREATE TABLE from_the_future (x); PRAGMA user_version = 99");
  }
  absl::StatusOr<std::unique_ptr<Store>> store =
      Store::Open(StoreOptions{path.string()});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  {
    RawDb raw(path);
    EXPECT_EQ(raw.Int("PRAGMA user_version"), 99);
    // Not even switched to WAL.
    EXPECT_EQ(raw.Text("PRAGMA journal_mode"), "delete");
  }
  fs::remove_all(dir);
}

TEST(StoreOpenTest, NewDatabasesUseEightKiBPagesOldOnesKeepTheirs) {
  const fs::path dir = UniqueDir();
  fs::remove_all(dir);
  ASSERT_TRUE(fs::create_directories(dir));
  // A database made with 4 KiB pages, as before: it opens as it is.
  const fs::path old_path = dir / "old.db";
  {
    RawDb raw(old_path);
    raw.Exec(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; "
        "CREATE TABLE t (x)");
  }
  const fs::path new_path = dir / "new.db";
  for (const fs::path& path : {old_path, new_path}) {
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open(StoreOptions{path.string()});
    ASSERT_TRUE(store.ok()) << store.status();
    absl::StatusOr<WriteResult> created = (*store)->CreatePerson(
        Key("req-1"), MakePerson("s-1", "123"), {Face(0.1f)});
    ASSERT_TRUE(created.ok()) << created.status();
  }
  EXPECT_EQ(RawDb(old_path).Int("PRAGMA page_size"), 4096);
  // Three 2 KiB face templates fit an 8 KiB page; a 4 KiB page held one.
  EXPECT_EQ(RawDb(new_path).Int("PRAGMA page_size"), 8192);
  fs::remove_all(dir);
}

TEST(StoreOpenTest, MissingFolderIsAnError) {
  const fs::path path = UniqueDir() / "no" / "such" / "dir.db";
  absl::StatusOr<std::unique_ptr<Store>> store =
      Store::Open(StoreOptions{path.string()});
  EXPECT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInternal);
}

TEST(StoreOpenTest, NotADatabaseIsAnError) {
  const fs::path dir = UniqueDir();
  fs::remove_all(dir);
  ASSERT_TRUE(fs::create_directories(dir));
  const fs::path path = dir / "junk.db";
  std::ofstream(path) << std::string(8192, 'x');
  absl::StatusOr<std::unique_ptr<Store>> store =
      Store::Open(StoreOptions{path.string()});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInternal);
  fs::remove_all(dir);
}

TEST_F(StoreTest, FailedWriteRollsBackEverything) {
  Create(MakePerson("s-1", "123"), {Face(0.1f)});
  RawDb raw(path_);
  // The idempotency row is the last write of CreatePerson: failing it means
  // the person, templates and change row were already written.
  raw.Exec(
      "CREATE TRIGGER fail_idempotency BEFORE INSERT ON idempotency "
      "BEGIN SELECT RAISE(ABORT, 'injected fault'); END");
  const int64_t changes = raw.Int("SELECT COUNT(*) FROM changes");

  absl::StatusOr<WriteResult> failed = store_->CreatePerson(
      Key("req-2"), MakePerson("s-2", "456"), {Face(0.2f), Finger(0.3f)});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(failed.status().message()),
              ::testing::HasSubstr("injected"));

  EXPECT_EQ(store_->GetPerson("s-2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates WHERE subject_id = 's-2'"),
            0);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), changes);
  EXPECT_EQ(ActiveTemplates().size(), 1u);

  raw.Exec("DROP TRIGGER fail_idempotency");
  absl::StatusOr<WriteResult> retried = store_->CreatePerson(
      Key("req-2"), MakePerson("s-2", "456"), {Face(0.2f), Finger(0.3f)});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_FALSE(retried->replayed);
  EXPECT_EQ(ActiveTemplates().size(), 3u);
}

TEST_F(StoreTest, FailedEraseKeepsThePerson) {
  Create(MakePerson("s-1", "123"), {Face(0.1f)});
  RawDb raw(path_);
  raw.Exec(
      "CREATE TRIGGER fail_changes BEFORE INSERT ON changes "
      "BEGIN SELECT RAISE(ABORT, 'injected fault'); END");

  EXPECT_EQ(store_->ErasePerson("s-1").code(), absl::StatusCode::kInternal);
  absl::StatusOr<Person> still = store_->GetPerson("s-1");
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->template_counts_size(), 1);
  EXPECT_EQ(ActiveTemplates().size(), 1u);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency"), 1);

  // The same for the other writers.
  EXPECT_EQ(store_->RevokePerson("s-1", "x").code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(store_->GetPerson("s-1")->state(), hawiya::v1::ACTIVE);
  EXPECT_EQ(store_->UpdatePerson(*still, 1).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(store_->GetPerson("s-1")->version(), 1);
  EXPECT_EQ(store_
                ->ReplaceTemplates(Key("r", "ReplaceTemplates"), "s-1",
                                   {Finger(0.5f)})
                .status()
                .code(),
            absl::StatusCode::kInternal);
  std::vector<TemplateRecord> active = ActiveTemplates();
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].tmpl.modality(), hawiya::v1::FACE);
}

TEST_F(StoreTest, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 15;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = absl::StrCat("t", t, "-", i);
        if (!store_->CreatePerson(Key(id), MakePerson(id, id), {Face(0.1f * i)})
                 .ok() ||
            !store_->GetPerson(id).ok() || !store_->CountPersons().ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_THAT(Counts(),
              ElementsAre(Pair(hawiya::v1::ACTIVE, kThreads * kPerThread)));
  std::set<int64_t> ids;
  for (const TemplateRecord& r : ActiveTemplates()) ids.insert(r.template_id);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(StoreTest, EmptyRequestIdIsRefused) {
  absl::StatusOr<WriteResult> result = store_->CreatePerson(
      IdempotencyKey{"", "Enroll", "fp"}, MakePerson("s-1", "123"), {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetPerson("s-1").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hawiya::enroll
