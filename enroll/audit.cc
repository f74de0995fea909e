#include "enroll/audit.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <filesystem>
#include <iterator>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace hawiya::enroll {
namespace {

// Versioned, so that a later encoding can never collide with this one.
constexpr absl::string_view kDomainTag = "hawiya.audit.v1";

void AppendBe(uint64_t value, int bytes, std::string* out) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

void AppendField(absl::string_view value, std::string* out) {
  AppendBe(value.size(), 4, out);
  out->append(value.data(), value.size());
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};

// The columns VerifyAuditDatabase reads, in order, with the storage class
// the store writes each with.
struct AuditColumn {
  const char* name;
  int type;
};
constexpr AuditColumn kAuditColumns[] = {
    {"seq", SQLITE_INTEGER},      {"time_us", SQLITE_INTEGER},
    {"principal", SQLITE_TEXT},   {"role", SQLITE_TEXT},
    {"method", SQLITE_TEXT},      {"subject_id", SQLITE_TEXT},
    {"national_id", SQLITE_TEXT}, {"request_id", SQLITE_TEXT},
    {"outcome", SQLITE_INTEGER},  {"subject_ids", SQLITE_TEXT},
    {"prev_hash", SQLITE_BLOB},   {"hash", SQLITE_BLOB},
    {"purpose", SQLITE_TEXT},     {"decision", SQLITE_TEXT},
    {"disclosed", SQLITE_TEXT},
};
// Without the partner columns (purpose, decision, disclosed).
constexpr int kAuditColumnsBeforePartners = 12;

const char* StorageClassName(int type) {
  switch (type) {
    case SQLITE_INTEGER:
      return "INTEGER";
    case SQLITE_FLOAT:
      return "REAL";
    case SQLITE_TEXT:
      return "TEXT";
    case SQLITE_BLOB:
      return "BLOB";
    default:
      return "NULL";
  }
}

// Why the current row of `stmt` is not stored as the store writes it;
// empty if it is. Must run before any value is read (reading converts).
std::string WrongStorageClass(sqlite3_stmt* stmt, int columns) {
  for (int i = 0; i < columns; ++i) {
    const int type = sqlite3_column_type(stmt, i);
    if (type != kAuditColumns[i].type) {
      return absl::StrCat(kAuditColumns[i].name, " is stored as ",
                          StorageClassName(type), ", not ",
                          StorageClassName(kAuditColumns[i].type),
                          " (the record was edited)");
    }
  }
  return "";
}

std::string Column(sqlite3_stmt* stmt, int column) {
  const void* bytes = sqlite3_column_blob(stmt, column);
  if (bytes == nullptr) return std::string();
  return std::string(static_cast<const char*>(bytes),
                     sqlite3_column_bytes(stmt, column));
}

}  // namespace

std::string AuditGenesisHash() { return std::string(kAuditHashBytes, '\0'); }

std::string CanonicalAuditBytes(int64_t sequence, absl::string_view prev_hash,
                                const AuditEvent& event) {
  std::string out;
  out.reserve(256);
  AppendField(kDomainTag, &out);
  AppendBe(static_cast<uint64_t>(sequence), 8, &out);
  AppendField(prev_hash, &out);
  AppendBe(static_cast<uint64_t>(event.time_us), 8, &out);
  for (const std::string* field :
       {&event.principal, &event.role, &event.method, &event.subject_id,
        &event.national_id, &event.request_id}) {
    AppendField(*field, &out);
  }
  AppendBe(static_cast<uint32_t>(event.outcome), 4, &out);
  AppendBe(event.subject_ids.size(), 4, &out);
  for (const std::string& id : event.subject_ids) AppendField(id, &out);
  if (event.has_partner_fields()) {
    AppendField(event.purpose, &out);
    AppendField(event.decision, &out);
    AppendBe(event.disclosed.size(), 4, &out);
    for (const std::string& name : event.disclosed) AppendField(name, &out);
  }
  return out;
}

std::string AuditHash(int64_t sequence, absl::string_view prev_hash,
                      const AuditEvent& event) {
  const std::string bytes = CanonicalAuditBytes(sequence, prev_hash, event);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(),
             nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string JoinSubjectIds(const std::vector<std::string>& ids) {
  return absl::StrJoin(ids, ",");
}

std::vector<std::string> SplitSubjectIds(absl::string_view joined) {
  if (joined.empty()) return {};
  return absl::StrSplit(joined, ',');
}

std::string HashHex(absl::string_view hash) {
  return absl::BytesToHexString(hash);
}

absl::StatusOr<std::string> HashFromHex(absl::string_view field,
                                        absl::string_view hex) {
  if (hex.size() != 2 * kAuditHashBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", 2 * kAuditHashBytes,
                     " hex digits expected, got ", hex.size()));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": not hexadecimal"));
    }
  }
  return absl::HexStringToBytes(hex);
}

AuditChainVerifier::AuditChainVerifier(AuditAnchor anchor)
    : anchor_(std::move(anchor)) {
  result_.head_hash = AuditGenesisHash();
}

void AuditChainVerifier::Break(int64_t sequence, std::string reason) {
  result_.intact = false;
  result_.first_broken_sequence = sequence;
  result_.reason = std::move(reason);
}

bool AuditChainVerifier::Add(const AuditRecord& record) {
  if (!result_.intact) return false;
  const int64_t expected = result_.head_sequence + 1;
  if (record.sequence != expected) {
    Break(record.sequence,
          record.sequence > expected
              ? absl::StrCat("sequence ", record.sequence, " follows ",
                             result_.head_sequence, ": records ", expected,
                             "..", record.sequence - 1, " are missing")
              : absl::StrCat("sequence ", record.sequence, " out of order"));
    return false;
  }
  if (record.prev_hash != result_.head_hash) {
    Break(record.sequence,
          absl::StrCat("prev_hash does not match the hash of record ",
                       result_.head_sequence,
                       " (a record before it was changed, removed or moved)"));
    return false;
  }
  if (AuditHash(record.sequence, result_.head_hash, record.event) !=
      record.hash) {
    Break(record.sequence,
          "hash does not match the record's contents (the record was edited, "
          "or moved from another position)");
    return false;
  }
  if (anchor_.sequence == record.sequence) {
    anchor_seen_ = true;
    if (record.hash != anchor_.hash) {
      Break(record.sequence,
            absl::StrCat("hash ", HashHex(record.hash),
                         " differs from the anchor's ", HashHex(anchor_.hash),
                         " (the chain was rewritten)"));
      return false;
    }
  }
  result_.records_checked++;
  result_.head_sequence = record.sequence;
  result_.head_hash = record.hash;
  return true;
}

bool AuditChainVerifier::Reject(int64_t sequence, std::string reason) {
  if (result_.intact) Break(sequence, std::move(reason));
  return false;
}

AuditVerification AuditChainVerifier::Finish() {
  if (result_.intact && anchor_.sequence > 0 && !anchor_seen_) {
    Break(anchor_.sequence,
          absl::StrCat("anchor record ", anchor_.sequence,
                       " is missing: the log ends at ", result_.head_sequence,
                       " (records were removed from its end)"));
  }
  return result_;
}

absl::StatusOr<AuditVerification> VerifyAuditDatabase(
    const std::string& db_path, const AuditAnchor& anchor) {
  std::error_code error;
  if (!std::filesystem::exists(db_path, error)) {
    return absl::NotFoundError(absl::StrCat(db_path, ": no such file"));
  }
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(db_path.c_str(), &raw,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbCloser> db(raw);
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path, ": ", raw ? sqlite3_errmsg(raw) : "cannot open"));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_stmt* raw_stmt = nullptr;
  // Schema 5 added the partner columns; a schema-4 file has none.
  bool partner_columns = true;
  if (sqlite3_prepare_v2(
          db.get(),
          "SELECT seq, time_us, principal, role, method, subject_id, "
          "national_id, request_id, outcome, subject_ids, prev_hash, hash, "
          "purpose, decision, disclosed FROM audit ORDER BY seq",
          -1, &raw_stmt, nullptr) != SQLITE_OK) {
    partner_columns = false;
    raw_stmt = nullptr;
  }
  if (!partner_columns &&
      sqlite3_prepare_v2(
          db.get(),
          "SELECT seq, time_us, principal, role, method, subject_id, "
          "national_id, request_id, outcome, subject_ids, prev_hash, hash "
          "FROM audit ORDER BY seq",
          -1, &raw_stmt, nullptr) != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path, ": no audit log (", sqlite3_errmsg(db.get()),
                     "); written by a version before schema 4?"));
  }
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw_stmt);
  AuditChainVerifier verifier(anchor);
  while (true) {
    const int step = sqlite3_step(stmt.get());
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) {
      return absl::InternalError(absl::StrCat(
          db_path, ": reading the audit log: ", sqlite3_errmsg(db.get())));
    }
    const std::string wrong = WrongStorageClass(
        stmt.get(), partner_columns ? static_cast<int>(std::size(kAuditColumns))
                                    : kAuditColumnsBeforePartners);
    if (!wrong.empty()) {
      verifier.Reject(sqlite3_column_int64(stmt.get(), 0), wrong);
      break;
    }
    AuditRecord record;
    record.sequence = sqlite3_column_int64(stmt.get(), 0);
    record.event.time_us = sqlite3_column_int64(stmt.get(), 1);
    record.event.principal = Column(stmt.get(), 2);
    record.event.role = Column(stmt.get(), 3);
    record.event.method = Column(stmt.get(), 4);
    record.event.subject_id = Column(stmt.get(), 5);
    record.event.national_id = Column(stmt.get(), 6);
    record.event.request_id = Column(stmt.get(), 7);
    record.event.outcome =
        static_cast<int>(sqlite3_column_int64(stmt.get(), 8));
    record.event.subject_ids = SplitSubjectIds(Column(stmt.get(), 9));
    record.prev_hash = Column(stmt.get(), 10);
    record.hash = Column(stmt.get(), 11);
    if (partner_columns) {
      record.event.purpose = Column(stmt.get(), 12);
      record.event.decision = Column(stmt.get(), 13);
      record.event.disclosed = SplitSubjectIds(Column(stmt.get(), 14));
    }
    if (!verifier.Add(record)) break;
  }
  return verifier.Finish();
}

}  // namespace hawiya::enroll
