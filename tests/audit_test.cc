// The audit log: the hash chain verifies, and each kind of tampering with
// the stored records (edit, delete, reorder, truncate in the middle,
// truncate the tail against an anchor) is detected at the right record;
// group commit keeps one chain under concurrent appends; the Registry
// records every call with its caller, resource and outcome, commits a
// write's record with the write, and fails a call whose record cannot be
// written (having written nothing).
#include "enroll/audit.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "enroll/audit_log.h"
#include "enroll/registry.h"
#include "enroll/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/raw_db.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::hawiya::testing::RawDb;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string NewDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : "/tmp", "/audit-XXXXXX");
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

AuditEvent Event(int i) {
  AuditEvent event;
  event.principal = absl::StrCat("hawiya://dev/p", i % 3);
  event.role = "border";
  event.method = "/hawiya.v1.MatchService/Identify";
  event.subject_id = absl::StrCat("subject-", i);
  event.national_id = absl::StrCat("KWT/N", i);
  event.request_id = absl::StrCat("req-", i);
  event.outcome = i % 2 == 0 ? 0 : 7;
  event.subject_ids = {absl::StrCat("c", i), absl::StrCat("d", i)};
  return event;
}

class AuditChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewDir();
    path_ = dir_ + "/hawiya.db";
    Build();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A fresh database holding records 1..kRecords.
  void Build() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(path_ + suffix);
    }
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open({path_});
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<AuditEvent> events;
    for (int i = 1; i <= kRecords; ++i) events.push_back(Event(i));
    // Two transactions: the chain continues across commits.
    ASSERT_TRUE(
        (*store)->AppendAudit(absl::MakeSpan(events).subspan(0, 4)).ok());
    ASSERT_TRUE((*store)->AppendAudit(absl::MakeSpan(events).subspan(4)).ok());
  }

  AuditVerification Verify(const AuditAnchor& anchor = {}) {
    absl::StatusOr<AuditVerification> result =
        VerifyAuditDatabase(path_, anchor);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : AuditVerification{};
  }

  std::string StoredHash(int64_t sequence) {
    return RawDb(path_).Blob(
        absl::StrCat("SELECT hash FROM audit WHERE seq = ", sequence));
  }

  static constexpr int kRecords = 10;
  std::string dir_;
  std::string path_;
};

TEST_F(AuditChainTest, IntactChainVerifiesToItsHead) {
  const AuditVerification result = Verify();
  EXPECT_TRUE(result.intact) << result.reason;
  EXPECT_EQ(result.records_checked, kRecords);
  EXPECT_EQ(result.head_sequence, kRecords);
  EXPECT_EQ(result.head_hash, StoredHash(kRecords));
  EXPECT_EQ(result.head_hash.size(), kAuditHashBytes);
  // Each record holds its predecessor's hash; the first, 32 zero bytes.
  RawDb raw(path_);
  EXPECT_EQ(raw.Blob("SELECT prev_hash FROM audit WHERE seq = 1"),
            AuditGenesisHash());
  for (int seq = 2; seq <= kRecords; ++seq) {
    EXPECT_EQ(
        raw.Blob(absl::StrCat("SELECT prev_hash FROM audit WHERE seq = ", seq)),
        StoredHash(seq - 1));
  }
  // The stored hash is the SHA-256 of the canonical encoding.
  EXPECT_EQ(StoredHash(1), AuditHash(1, AuditGenesisHash(), [&] {
              AuditEvent e = Event(1);
              e.time_us = raw.Int("SELECT time_us FROM audit WHERE seq = 1");
              return e;
            }()));
}

TEST_F(AuditChainTest, EditedFieldIsDetectedAtThatRecord) {
  for (const char* edit :
       {"principal = 'hawiya://dev/admin'", "outcome = 0", "subject_ids = 'c4'",
        "time_us = time_us + 1", "role = ''"}) {
    SCOPED_TRACE(edit);
    Build();
    // Record 4's outcome is already 0: edit record 5's (7) instead.
    const int seq = absl::StrContains(edit, "outcome") ? 5 : 4;
    RawDb(path_).Exec(
        absl::StrCat("UPDATE audit SET ", edit, " WHERE seq = ", seq));
    const AuditVerification result = Verify();
    EXPECT_FALSE(result.intact);
    EXPECT_EQ(result.first_broken_sequence, seq);
    EXPECT_THAT(result.reason, HasSubstr("edited"));
    EXPECT_EQ(result.records_checked, seq - 1);
    EXPECT_EQ(result.head_sequence, seq - 1);
  }
}

// A cast keeps a value's bytes, so its hash still checks out; but the store
// compares stored values by type (a BLOB principal matches no principal
// filter), so a value of another storage class breaks the chain there. (A
// number cast to TEXT or REAL is turned back into an INTEGER by the
// column's affinity; a BLOB is stored as it is.)
TEST_F(AuditChainTest, ValueCastToAnotherStorageClassIsDetected) {
  for (const char* edit :
       {"principal = CAST(principal AS BLOB)", "method = CAST(method AS BLOB)",
        "national_id = CAST(national_id AS BLOB)",
        "time_us = CAST(time_us AS BLOB)", "outcome = CAST(outcome AS BLOB)",
        "hash = CAST(hash AS TEXT)", "purpose = CAST(purpose AS BLOB)"}) {
    SCOPED_TRACE(edit);
    Build();
    RawDb(path_).Exec(
        absl::StrCat("UPDATE audit SET ", edit, " WHERE seq = 4"));
    const AuditVerification result = Verify();
    EXPECT_FALSE(result.intact);
    EXPECT_EQ(result.first_broken_sequence, 4);
    EXPECT_THAT(result.reason, HasSubstr("is stored as"));
    EXPECT_EQ(result.records_checked, 3);
    EXPECT_EQ(result.head_sequence, 3);
  }
  // The exact message, for one.
  Build();
  RawDb(path_).Exec(
      "UPDATE audit SET principal = CAST(principal AS BLOB) WHERE seq = 2");
  EXPECT_EQ(Verify().reason,
            "principal is stored as BLOB, not TEXT (the record was edited)");
}

TEST_F(AuditChainTest, EditWithARecomputedHashIsDetectedAtTheNextRecord) {
  // Whoever edits record 4 and recomputes its hash breaks record 5's link.
  RawDb raw(path_);
  AuditEvent edited = Event(4);
  edited.principal = "hawiya://dev/someone-else";
  edited.time_us = raw.Int("SELECT time_us FROM audit WHERE seq = 4");
  raw.Exec(
      "UPDATE audit SET principal = 'hawiya://dev/someone-else' "
      "WHERE seq = 4");
  raw.ExecBlob("UPDATE audit SET hash = ?1 WHERE seq = 4",
               AuditHash(4, StoredHash(3), edited));
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 5);
  EXPECT_THAT(result.reason, HasSubstr("prev_hash"));
}

TEST_F(AuditChainTest, DeletedRecordIsDetectedAtItsSuccessor) {
  RawDb(path_).Exec("DELETE FROM audit WHERE seq = 6");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 7);
  EXPECT_THAT(result.reason, HasSubstr("records 6..6 are missing"));
  EXPECT_EQ(result.head_sequence, 5);
}

TEST_F(AuditChainTest, DeletedFirstRecordIsDetected) {
  RawDb(path_).Exec("DELETE FROM audit WHERE seq = 1");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 2);
  EXPECT_EQ(result.records_checked, 0);
}

TEST_F(AuditChainTest, SwappedRecordsAreDetectedAtTheEarlierPosition) {
  // Swap rows 3 and 7: each now sits at the other's sequence.
  RawDb(path_).Exec(
      "UPDATE audit SET seq = -1 WHERE seq = 3;"
      "UPDATE audit SET seq = 3 WHERE seq = 7;"
      "UPDATE audit SET seq = 7 WHERE seq = -1;");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 3);
  EXPECT_EQ(result.records_checked, 2);
}

TEST_F(AuditChainTest, AdjacentSwapIsDetected) {
  // Rows 5 and 6 swapped, sequence numbers and all (a reorder that keeps
  // every row's own columns).
  RawDb(path_).Exec(
      "UPDATE audit SET seq = -1 WHERE seq = 5;"
      "UPDATE audit SET seq = 5 WHERE seq = 6;"
      "UPDATE audit SET seq = 6 WHERE seq = -1;");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 5);
}

TEST_F(AuditChainTest, TruncationInTheMiddleIsDetected) {
  RawDb(path_).Exec("DELETE FROM audit WHERE seq BETWEEN 3 AND 8");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 9);
  EXPECT_THAT(result.reason, HasSubstr("records 3..8 are missing"));
  EXPECT_EQ(result.head_sequence, 2);
}

TEST_F(AuditChainTest, RenumberedRecordsAfterADeleteAreDetected) {
  // Deleting record 4 and renumbering the rest to close the gap.
  RawDb(path_).Exec(
      "DELETE FROM audit WHERE seq = 4;"
      "UPDATE audit SET seq = -(seq - 1) WHERE seq > 4;"
      "UPDATE audit SET seq = -seq WHERE seq < 0;");
  const AuditVerification result = Verify();
  EXPECT_FALSE(result.intact);
  EXPECT_EQ(result.first_broken_sequence, 4);
}

TEST_F(AuditChainTest, TruncatedTailIsOnlyDetectedAgainstAnAnchor) {
  const AuditVerification before = Verify();
  ASSERT_TRUE(before.intact);
  const AuditAnchor anchor{before.head_sequence, before.head_hash};
  EXPECT_TRUE(Verify(anchor).intact);
  RawDb(path_).Exec("DELETE FROM audit WHERE seq > 7");
  // The shorter chain is a valid chain...
  const AuditVerification alone = Verify();
  EXPECT_TRUE(alone.intact);
  EXPECT_EQ(alone.head_sequence, 7);
  // ...which the anchor kept elsewhere shows to be cut.
  const AuditVerification anchored = Verify(anchor);
  EXPECT_FALSE(anchored.intact);
  EXPECT_EQ(anchored.first_broken_sequence, kRecords);
  EXPECT_THAT(anchored.reason, HasSubstr("missing"));
}

TEST_F(AuditChainTest, RewrittenChainIsDetectedAgainstAnAnchor) {
  const AuditVerification before = Verify();
  // Someone with write access rewrites the whole chain consistently.
  {
    RawDb raw(path_);
    std::string prev = AuditGenesisHash();
    for (int seq = 1; seq <= kRecords; ++seq) {
      AuditEvent event = Event(seq);
      if (seq == 2) event.principal = "hawiya://dev/forged";
      event.time_us =
          raw.Int(absl::StrCat("SELECT time_us FROM audit WHERE seq = ", seq));
      const std::string hash = AuditHash(seq, prev, event);
      raw.Exec(absl::StrCat("UPDATE audit SET principal = '", event.principal,
                            "' WHERE seq = ", seq));
      raw.ExecBlob(
          absl::StrCat("UPDATE audit SET prev_hash = ?1 WHERE seq = ", seq),
          prev);
      raw.ExecBlob(absl::StrCat("UPDATE audit SET hash = ?1 WHERE seq = ", seq),
                   hash);
      prev = hash;
    }
  }
  EXPECT_TRUE(Verify().intact);
  const AuditVerification anchored =
      Verify({before.head_sequence, before.head_hash});
  EXPECT_FALSE(anchored.intact);
  EXPECT_EQ(anchored.first_broken_sequence, kRecords);
  EXPECT_THAT(anchored.reason, HasSubstr("anchor"));
}

// The encoding documented in audit.h, pinned: the digest below was computed
// by an independent implementation (Python's struct and hashlib) from that
// comment alone. A change to the encoding must fail here, since every
// stored chain depends on it.
TEST(AuditHashTest, MatchesTheDocumentedEncoding) {
  AuditEvent event;
  event.time_us = 1700000000123456;
  event.principal = "hawiya://dev/border";
  event.role = "border";
  event.method = "/hawiya.v1.MatchService/Identify";
  event.subject_id = "s1";
  event.national_id = "KWT/N1";
  event.request_id = "r1";
  event.outcome = 7;
  event.subject_ids = {"a", "bc"};
  std::string prev;
  for (int i = 0; i < 32; ++i) prev.push_back(static_cast<char>(i));
  EXPECT_EQ(CanonicalAuditBytes(3, prev, event).size(), 181u);
  EXPECT_EQ(HashHex(AuditHash(3, prev, event)),
            "21671483a9e15aa142829aa87ee8e402463ad8a51226a72df52b396d108a2b96");
  // Every field counts: moving a byte between two fields changes the hash.
  AuditEvent shifted = event;
  shifted.subject_id = "s";
  shifted.national_id = "1KWT/N1";
  EXPECT_NE(AuditHash(3, prev, shifted), AuditHash(3, prev, event));
}

TEST(AuditDatabaseTest, MissingFileIsNotFound) {
  EXPECT_TRUE(
      absl::IsNotFound(VerifyAuditDatabase("/nonexistent/hawiya.db").status()));
}

TEST(AuditHexTest, RoundTripsAndRejectsBadInput) {
  const std::string hash = AuditHash(1, AuditGenesisHash(), Event(1));
  absl::StatusOr<std::string> back = HashFromHex("h", HashHex(hash));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, hash);
  EXPECT_TRUE(absl::IsInvalidArgument(HashFromHex("h", "abc").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(HashFromHex("h", std::string(64, 'g')).status()));
}

// Concurrent appenders share commits, and the result is one unbroken chain
// with every record in it once.
TEST(AuditLogTest, GroupCommitKeepsOneChain) {
  const std::string dir = NewDir();
  const std::string path = dir + "/hawiya.db";
  {
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open({path});
    ASSERT_TRUE(store.ok()) << store.status();
    AuditLog log;
    // Held until the store is attached, then written first.
    ASSERT_TRUE(log.Append(Event(0)).ok());
    EXPECT_EQ(RawDb(path).Int("SELECT COUNT(*) FROM audit"), 0);
    ASSERT_TRUE(log.Attach(store->get()).ok());
    EXPECT_EQ(RawDb(path).Int("SELECT COUNT(*) FROM audit"), 1);
    constexpr int kThreads = 8;
    constexpr int kPerThread = 50;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < kPerThread; ++i) {
          AuditEvent event = Event(i);
          event.request_id = absl::StrCat("t", t, "-", i);
          // Returns only once committed: the row is there.
          ASSERT_TRUE(log.Append(std::move(event)).ok());
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    RawDb raw(path);
    EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM audit"), 1 + kThreads * kPerThread);
    EXPECT_EQ(raw.Int("SELECT COUNT(DISTINCT request_id) FROM audit"),
              1 + kThreads * kPerThread);
    log.Detach();
    EXPECT_TRUE(absl::IsUnavailable(log.Append(Event(1))));
  }
  absl::StatusOr<AuditVerification> verified = VerifyAuditDatabase(path);
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->intact) << verified->reason;
  EXPECT_EQ(verified->head_sequence, 401);
  fs::remove_all(dir);
}

class RegistryAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = NewDir();
    RegistryOptions options;
    options.data_dir = dir_;
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }
  void TearDown() override {
    registry_.reset();
    fs::remove_all(dir_);
  }

  std::string Db() const { return dir_ + "/hawiya.db"; }

  v1::EnrollRequest EnrollRequest(uint64_t n) {
    v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
    request.set_request_id(absl::StrCat("enroll-", n));
    return request;
  }

  std::vector<v1::AuditRecord> AllRecords() {
    absl::StatusOr<v1::ListAuditRecordsResponse> page =
        registry_->ListAuditRecords(v1::ListAuditRecordsRequest());
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return {};
    return {page->records().begin(), page->records().end()};
  }

  const AuditActor registrar_{"hawiya://dev/registrar", "registrar",
                              "/hawiya.v1.EnrollmentService/Enroll"};
  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string dir_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryAuditTest, RecordsCallerResourceOutcomeAndCandidates) {
  absl::StatusOr<v1::EnrollResponse> enrolled =
      registry_->Enroll(EnrollRequest(1), registrar_);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  const std::string subject = enrolled->person().subject_id();
  // The same national id again: refused, and recorded as refused.
  v1::EnrollRequest duplicate = EnrollRequest(1);
  duplicate.set_request_id("enroll-1-again");
  EXPECT_TRUE(
      absl::IsAlreadyExists(registry_->Enroll(duplicate, registrar_).status()));
  // A replay commits its own record, naming the subject first enrolled.
  ASSERT_TRUE(registry_->Enroll(EnrollRequest(1), registrar_).ok());

  v1::IdentifyRequest identify;
  *identify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
  const AuditActor border{"hawiya://dev/border", "border",
                          "/hawiya.v1.MatchService/Identify"};
  absl::StatusOr<v1::IdentifyResponse> found =
      registry_->Identify(identify, border);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_GE(found->candidates_size(), 1);
  EXPECT_EQ(found->candidates(0).subject_id(), subject);

  const std::vector<v1::AuditRecord> records = AllRecords();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].sequence(), 1);
  EXPECT_EQ(records[0].principal(), "hawiya://dev/registrar");
  EXPECT_EQ(records[0].role(), "registrar");
  EXPECT_EQ(records[0].method(), "/hawiya.v1.EnrollmentService/Enroll");
  EXPECT_EQ(records[0].subject_id(), subject);
  EXPECT_EQ(records[0].national_id(), "KWT/N1");
  EXPECT_EQ(records[0].request_id(), "enroll-1");
  EXPECT_EQ(records[0].outcome(), "OK");
  EXPECT_EQ(records[1].outcome(), "ALREADY_EXISTS");
  EXPECT_EQ(records[1].outcome_code(), 6);
  EXPECT_EQ(records[1].request_id(), "enroll-1-again");
  EXPECT_EQ(records[2].outcome(), "OK");
  EXPECT_EQ(records[2].subject_id(), subject);
  EXPECT_EQ(records[3].principal(), "hawiya://dev/border");
  EXPECT_EQ(records[3].method(), "/hawiya.v1.MatchService/Identify");
  std::vector<std::string> candidates;
  for (const v1::Candidate& c : found->candidates()) {
    candidates.push_back(c.subject_id());
  }
  EXPECT_THAT(records[3].subject_ids(),
              ::testing::ElementsAreArray(candidates));
  EXPECT_EQ(records[3].prev_hash(), records[2].hash());
  // No template vector in any record: they hold ids and names only.
  EXPECT_EQ(RawDb(Db()).Int("SELECT MAX(length(subject_ids)) FROM audit"),
            static_cast<int64_t>(subject.size()));

  // The ListAuditRecords call above was itself recorded; the chain holds.
  absl::StatusOr<v1::VerifyAuditLogResponse> verified =
      registry_->VerifyAuditLog(v1::VerifyAuditLogRequest());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->intact()) << verified->reason();
  EXPECT_EQ(verified->head_sequence(), 5);
}

TEST_F(RegistryAuditTest, PaginatesAndFilters) {
  for (int i = 0; i < 5; ++i) {
    const AuditActor actor{absl::StrCat("hawiya://dev/p", i % 2), "admin",
                           "/hawiya.v1.AdminService/GetStats"};
    ASSERT_TRUE(registry_->GetStats(actor).ok());
  }
  v1::ListAuditRecordsRequest request;
  request.set_page_size(2);
  request.set_principal("hawiya://dev/p0");
  std::vector<int64_t> sequences;
  while (true) {
    absl::StatusOr<v1::ListAuditRecordsResponse> page =
        registry_->ListAuditRecords(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const v1::AuditRecord& record : page->records()) {
      EXPECT_EQ(record.principal(), "hawiya://dev/p0");
      sequences.push_back(record.sequence());
    }
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  EXPECT_THAT(sequences, ElementsAre(1, 3, 5));
  // A time range after every record: none.
  v1::ListAuditRecordsRequest later;
  later.mutable_start_time()->set_seconds(absl::ToUnixSeconds(absl::Now()) +
                                          3600);
  absl::StatusOr<v1::ListAuditRecordsResponse> none =
      registry_->ListAuditRecords(later);
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(none->records(), IsEmpty());
  v1::ListAuditRecordsRequest bad;
  bad.set_page_token("x");
  EXPECT_TRUE(
      absl::IsInvalidArgument(registry_->ListAuditRecords(bad).status()));
}

// The principal cast to a BLOB hides the record from the principal filter;
// online verification (VerifyAuditLog) reports the record, as offline does.
TEST_F(RegistryAuditTest, RecordHiddenFromThePrincipalFilterIsBroken) {
  const AuditActor admin{"hawiya://dev/admin", "admin",
                         "/hawiya.v1.AdminService/GetStats"};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(registry_->GetStats(admin).ok());
  RawDb(Db()).Exec(
      "UPDATE audit SET principal = CAST(principal AS BLOB) WHERE seq = 2");
  v1::ListAuditRecordsRequest by_admin;
  by_admin.set_principal("hawiya://dev/admin");
  absl::StatusOr<v1::ListAuditRecordsResponse> listed =
      registry_->ListAuditRecords(by_admin);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->records_size(), 2);  // what the cast hides
  EXPECT_EQ(listed->records(1).sequence(), 3);

  absl::StatusOr<v1::VerifyAuditLogResponse> online =
      registry_->VerifyAuditLog(v1::VerifyAuditLogRequest());
  ASSERT_TRUE(online.ok()) << online.status();
  EXPECT_FALSE(online->intact());
  EXPECT_EQ(online->first_broken_sequence(), 2);
  EXPECT_EQ(online->reason(),
            "principal is stored as BLOB, not TEXT (the record was edited)");
  absl::StatusOr<AuditVerification> offline = VerifyAuditDatabase(Db());
  ASSERT_TRUE(offline.ok()) << offline.status();
  EXPECT_FALSE(offline->intact);
  EXPECT_EQ(offline->first_broken_sequence, 2);
}

// A write whose audit record cannot be appended fails, and leaves nothing
// of itself in the store; so does a read.
TEST_F(RegistryAuditTest,
       CallFailsAndWritesNothingWhenItsRecordCannotBeWritten) {
  ASSERT_TRUE(registry_->Enroll(EnrollRequest(1), registrar_).ok());
  RawDb(Db()).Exec(
      "CREATE TRIGGER no_audit BEFORE INSERT ON audit "
      "BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;");
  absl::StatusOr<v1::EnrollResponse> refused =
      registry_->Enroll(EnrollRequest(2), registrar_);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("audit disk full"));
  RawDb raw(Db());
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM persons"), 1);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM persons WHERE national_id = 'N2'"),
            0);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM idempotency"), 1);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM changes"), 1);
  // A read whose record cannot be written fails too.
  absl::StatusOr<v1::GetStatsResponse> stats = registry_->GetStats();
  EXPECT_TRUE(absl::IsUnavailable(stats.status())) << stats.status();
  v1::GetPersonRequest get;
  get.set_national_id("N1");
  get.set_issuing_country("KWT");
  EXPECT_FALSE(registry_->GetPerson(get).ok());

  raw.Exec("DROP TRIGGER no_audit");
  stats = registry_->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  // Person 2 is in neither the store nor the galleries.
  EXPECT_EQ(stats->persons(), 1);
  EXPECT_EQ(stats->galleries(0).templates(), 1);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM audit"), 2);
  absl::StatusOr<AuditVerification> verified = VerifyAuditDatabase(Db());
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->intact);
}

}  // namespace
}  // namespace hawiya::enroll
