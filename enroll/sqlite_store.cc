// The SQLite implementation of Store: one connection in WAL mode with full
// sync, serialised by a mutex, every public method one transaction.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/config.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "enroll/crypto.h"
#include "enroll/names.h"
#include "enroll/store.h"
#include "hawiya/v1/types.pb.h"

#define HAWIYA_STORE_RETURN_IF_ERROR(expr)                     \
  do {                                                         \
    absl::Status hawiya_store_status = (expr);                 \
    if (!hawiya_store_status.ok()) return hawiya_store_status; \
  } while (false)

#define HAWIYA_STORE_CONCAT_INNER(a, b) a##b
#define HAWIYA_STORE_CONCAT(a, b) HAWIYA_STORE_CONCAT_INNER(a, b)
#define HAWIYA_STORE_ASSIGN_OR_RETURN(lhs, expr) \
  HAWIYA_STORE_ASSIGN_OR_RETURN_IMPL(            \
      HAWIYA_STORE_CONCAT(hawiya_store_or_, __LINE__), lhs, expr)
#define HAWIYA_STORE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                       \
  if (!tmp.ok()) return tmp.status();                      \
  lhs = std::move(*tmp)

namespace hawiya::enroll {
namespace {

using hawiya::v1::Person;
using hawiya::v1::PersonState;
using hawiya::v1::Template;

// Long enough to ride out another process's checkpoint or backup, short
// enough that a wedged lock surfaces as an error rather than a hung request.
constexpr int kBusyTimeoutMs = 5000;

// Page size of new databases.
constexpr int kPageSize = 8192;

// The page cache of the connection: 64 MiB holds the pages one 10,000-person
// BatchEnroll writes and the hot index pages of a few million persons.
constexpr int kCacheKiB = 64 << 10;

// Ordered schema migrations: migration i takes user_version i to i + 1.
// Append only; never edit one that has shipped.
constexpr const char* kMigrations[] = {
    // 1: the v1 schema.
    R"sql(
CREATE TABLE persons (
  subject_id TEXT PRIMARY KEY,
  national_id TEXT NOT NULL,
  issuing_country TEXT NOT NULL,
  state INTEGER NOT NULL,
  version INTEGER NOT NULL,
  create_time_us INTEGER NOT NULL,
  update_time_us INTEGER NOT NULL,
  revoke_reason TEXT,
  -- Serialized hawiya.v1.Person without its output-only fields.
  record BLOB NOT NULL,
  UNIQUE (issuing_country, national_id)
);
-- ListPersons with a state filter walks this instead of every person.
CREATE INDEX persons_by_state ON persons (state, subject_id);
CREATE TABLE templates (
  -- AUTOINCREMENT so an id is never reused: it is the gallery label.
  template_id INTEGER PRIMARY KEY AUTOINCREMENT,
  subject_id TEXT NOT NULL REFERENCES persons (subject_id) ON DELETE CASCADE,
  modality INTEGER NOT NULL,
  position INTEGER NOT NULL,
  quality INTEGER NOT NULL,
  algorithm TEXT NOT NULL,
  -- float32 little-endian.
  vector BLOB NOT NULL
);
CREATE INDEX templates_by_subject ON templates (subject_id);
CREATE TABLE idempotency (
  request_id TEXT PRIMARY KEY,
  method TEXT NOT NULL,
  fingerprint BLOB NOT NULL,
  subject_id TEXT,
  -- Serialized hawiya.v1.Person as first returned.
  response BLOB NOT NULL,
  create_time_us INTEGER NOT NULL
);
CREATE INDEX idempotency_by_subject ON idempotency (subject_id);
-- One row per write: the sequence gallery snapshots are taken against.
CREATE TABLE changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  subject_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  time_us INTEGER NOT NULL
);
)sql",
    // 2: the store's identity, which gallery snapshots carry so that one
    // made from another data dir is refused. randomblob draws from sqlite's
    // PRNG, seeded from the OS: unique, not secret.
    R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(16))));
)sql",
    // 3: templates encrypted at rest (crypto.h). templates.vector now holds
    // the vector sealed under data key key_version; key_version 0 marks a
    // vector an older version stored in plaintext, which Store::Open
    // encrypts once the keys are loaded.
    R"sql(
CREATE TABLE data_keys (
  version INTEGER PRIMARY KEY,
  -- The 32-byte data key sealed by the key-encryption key, AAD
  -- DataKeyAad(version).
  wrapped BLOB NOT NULL,
  create_time_us INTEGER NOT NULL
);
ALTER TABLE templates ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
)sql",
    // 4: the audit log (audit.h): one row per call, numbered 1, 2, 3...
    // without gaps, each holding the SHA-256 of its predecessor (prev_hash)
    // and of its own canonical encoding (hash).
    R"sql(
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  principal TEXT NOT NULL,
  role TEXT NOT NULL,
  method TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  national_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  outcome INTEGER NOT NULL,
  -- Comma-separated subject ids (Identify's candidates, ...).
  subject_ids TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX audit_by_principal ON audit (principal, seq);
)sql",
    // 5: partner verification (PartnerService). The audit record's
    // purpose, decision and disclosed attributes (comma-separated); the
    // Ed25519 receipt signing keys, their private half sealed by the
    // key-encryption key (AAD SigningKeyAad(key_id)); and the partners'
    // daily quota counters.
    R"sql(
ALTER TABLE audit ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN disclosed TEXT NOT NULL DEFAULT '';
CREATE TABLE signing_keys (
  key_id TEXT PRIMARY KEY,
  public_key BLOB NOT NULL,
  sealed_private_key BLOB NOT NULL,
  valid_from_us INTEGER NOT NULL,
  -- 0 for the current key. A retired key's sealed_private_key is emptied:
  -- only its public key is kept, to check old receipts.
  valid_until_us INTEGER NOT NULL
);
CREATE TABLE partner_quota (
  principal TEXT NOT NULL,
  -- UTC day, YYYY-MM-DD.
  day TEXT NOT NULL,
  used INTEGER NOT NULL,
  PRIMARY KEY (principal, day)
);
)sql",
    // 6: deduplication and adjudication. One row per case, in the order
    // raised (seq); candidates is a serialized hawiya.v1.Case holding only
    // the candidates (subject ids, scores, reasons: no records, no
    // vectors). Persons gain adjudication flags (comma-separated) and the
    // date of birth as YYYYMMDD (0 unknown), filled for existing rows by
    // Migrate, indexed with the national id for the demographic pre-check.
    R"sql(
CREATE TABLE cases (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  case_id TEXT NOT NULL UNIQUE,
  subject_id TEXT NOT NULL,
  raised_by TEXT NOT NULL,
  create_time_us INTEGER NOT NULL,
  candidates BLOB NOT NULL,
  -- hawiya.v1.Decision; 0 while open.
  decision INTEGER NOT NULL DEFAULT 0,
  adjudicator TEXT NOT NULL DEFAULT '',
  comment TEXT NOT NULL DEFAULT '',
  decide_time_us INTEGER NOT NULL DEFAULT 0,
  duplicate_of TEXT NOT NULL DEFAULT '',
  merged_templates INTEGER NOT NULL DEFAULT 0,
  request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX cases_by_decision ON cases (decision, seq);
CREATE INDEX cases_by_subject ON cases (subject_id);
ALTER TABLE persons ADD COLUMN flags TEXT NOT NULL DEFAULT '';
ALTER TABLE persons ADD COLUMN birth_date INTEGER NOT NULL DEFAULT 0;
CREATE INDEX persons_by_birth_date ON persons (birth_date);
CREATE INDEX persons_by_national_id ON persons (national_id);
)sql",
    // 7: what deduplication remembers. distinct_pairs: two subjects an
    // adjudicator decided are different persons (DISTINCT), once per pair
    // with subject_a < subject_b, written in the decision's transaction;
    // FindDuplicates no longer raises the pair. name_keys: the name blocking
    // keys (names::NameBlockingKeys of both scripts) of every person with a
    // date of birth, so the demographic pre-check reads only the persons of
    // that date whose names CompareNames could match, however many share
    // the date. Filled for existing rows by Migrate.
    R"sql(
CREATE TABLE distinct_pairs (
  subject_a TEXT NOT NULL,
  subject_b TEXT NOT NULL,
  case_id TEXT NOT NULL,
  PRIMARY KEY (subject_a, subject_b)
) WITHOUT ROWID;
CREATE INDEX distinct_pairs_by_b ON distinct_pairs (subject_b);
CREATE TABLE name_keys (
  birth_date INTEGER NOT NULL,
  key TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  PRIMARY KEY (birth_date, key, subject_id)
) WITHOUT ROWID;
CREATE INDEX name_keys_by_subject ON name_keys (subject_id);
)sql",
    // 8: the gallery snapshots written from this store, one per file (a
    // file is named by its sequence): a snapshot file the store has no
    // record of, or another file under a recorded name, is not loaded.
    R"sql(
CREATE TABLE snapshots (
  sequence INTEGER PRIMARY KEY,
  file_id TEXT NOT NULL,
  create_time_us INTEGER NOT NULL
);
)sql",
};
constexpr int64_t kSchemaVersion =
    static_cast<int64_t>(sizeof(kMigrations) / sizeof(kMigrations[0]));

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrFormat("sqlite: %s: %s (code %d)", what,
                                             sqlite3_errmsg(db),
                                             sqlite3_extended_errcode(db)));
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// A borrowed, cached prepared statement. Resetting on destruction matters: a
// statement left mid-iteration keeps its read snapshot open, which would
// block WAL checkpoints and leak bindings into the next use.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        status_(std::move(other.status_)),
        error_code_(other.error_code_) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Statement& BindInt(int index, int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, index, value));
  }
  Statement& BindText(int index, absl::string_view value) {
    return Check(sqlite3_bind_text64(stmt_, index, NonNull(value), value.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Statement& BindBlob(int index, absl::string_view value) {
    return Check(sqlite3_bind_blob64(stmt_, index, NonNull(value), value.size(),
                                     SQLITE_TRANSIENT));
  }
  // BindBlob without the copy, for the large values of bulk writes.
  // REQUIRES: `value` stays valid and unchanged until this Statement is
  // destroyed (which resets it).
  Statement& BindBlobRef(int index, absl::string_view value) {
    return Check(sqlite3_bind_blob64(stmt_, index, NonNull(value), value.size(),
                                     SQLITE_STATIC));
  }
  Statement& BindNull(int index) {
    return Check(sqlite3_bind_null(stmt_, index));
  }

  // True when a row is ready to read.
  absl::StatusOr<bool> Step() {
    if (!status_.ok()) return status_;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    error_code_ = sqlite3_extended_errcode(db_);
    status_ = SqliteError(db_, sqlite3_sql(stmt_));
    return status_;
  }

  // sqlite's extended result code of the failed step (e.g.
  // SQLITE_CONSTRAINT_UNIQUE); SQLITE_OK if no step failed.
  int error_code() const { return error_code_; }

  // Runs to completion, ignoring any rows.
  absl::Status Run() {
    while (true) {
      absl::StatusOr<bool> row = Step();
      if (!row.ok()) return row.status();
      if (!*row) return absl::OkStatus();
    }
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  bool IsNull(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return std::string();
    return std::string(reinterpret_cast<const char*>(text),
                       sqlite3_column_bytes(stmt_, column));
  }
  std::string Blob(int column) const {
    // The pointer must be fetched before the size (sqlite3 docs).
    const void* blob = sqlite3_column_blob(stmt_, column);
    if (blob == nullptr) return std::string();
    return std::string(static_cast<const char*>(blob),
                       sqlite3_column_bytes(stmt_, column));
  }

 private:
  // sqlite binds NULL, not an empty value, for a null pointer.
  static const char* NonNull(absl::string_view value) {
    return value.data() == nullptr ? "" : value.data();
  }

  Statement& Check(int rc) {
    if (rc != SQLITE_OK && status_.ok()) {
      status_ = SqliteError(db_, "bind");
    }
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  absl::Status status_;
  int error_code_ = SQLITE_OK;
};

class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path) {
    // Identity records are plaintext: a new database is owner-only, and
    // SQLite gives its -wal and -shm files the database file's mode.
    const int fd =
        open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                        nullptr);
    DbPtr db(raw);  // sqlite allocates a handle even when opening fails
    if (rc != SQLITE_OK) {
      if (db == nullptr) {
        return absl::InternalError(
            absl::StrCat("sqlite: open ", path, ": ", sqlite3_errstr(rc)));
      }
      return SqliteError(db.get(), absl::StrCat("open ", path));
    }
    if (sqlite3_busy_timeout(db.get(), kBusyTimeoutMs) != SQLITE_OK) {
      return SqliteError(db.get(), "busy_timeout");
    }
    return std::unique_ptr<Connection>(new Connection(std::move(db)));
  }

  sqlite3* db() const { return db_.get(); }

  // Prepared once per connection and reused.
  absl::StatusOr<Statement> Prepare(absl::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* raw = nullptr;
      const int rc = sqlite3_prepare_v3(
          db_.get(), sql.data(), static_cast<int>(sql.size()),
          SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
      StmtPtr stmt(raw);
      if (rc != SQLITE_OK || stmt == nullptr) {
        return SqliteError(db_.get(), absl::StrCat("prepare ", sql));
      }
      it = cache_.emplace(std::string(sql), std::move(stmt)).first;
    }
    return Statement(db_.get(), it->second.get());
  }

  // For parameterless statements, possibly several separated by ';'.
  absl::Status Exec(const std::string& sql) {
    if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      return SqliteError(db_.get(), sql);
    }
    return absl::OkStatus();
  }

  // The first column of the first row of a query that must return one.
  absl::StatusOr<int64_t> QueryInt(absl::string_view sql) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return absl::InternalError(absl::StrCat(sql, ": no row"));
    return stmt.Int(0);
  }

  // The change-log rows the open write transaction appended, first and last
  // sequence (0 if none); Transaction::Begin clears it.
  struct AppendedChanges {
    int64_t first = 0;
    int64_t last = 0;
  };
  AppendedChanges& appended_changes() { return appended_changes_; }

 private:
  explicit Connection(DbPtr db) : db_(std::move(db)) {}

  AppendedChanges appended_changes_;
  // Members are destroyed in reverse order: statements are finalized before
  // the connection closes.
  DbPtr db_;
  std::map<std::string, StmtPtr, std::less<>> cache_;
};

// Rolls back unless committed, so an early return leaves nothing written.
// Declare it before any Statement in the same scope: statements must be
// reset before the rollback.
class Transaction {
 public:
  enum class Mode { kRead, kWrite };

  explicit Transaction(Connection* connection) : connection_(connection) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    // sqlite rolls back by itself after some errors (SQLITE_FULL, IOERR);
    // a second ROLLBACK would only fail.
    if (active_ && !sqlite3_get_autocommit(connection_->db())) {
      sqlite3_exec(connection_->db(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  absl::Status Begin(Mode mode) {
    // IMMEDIATE takes the write lock up front, so a read-then-write
    // transaction never fails half way with SQLITE_BUSY on lock upgrade.
    HAWIYA_STORE_RETURN_IF_ERROR(connection_->Exec(
        mode == Mode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED"));
    active_ = true;
    connection_->appended_changes() = {};
    return absl::OkStatus();
  }

  absl::Status Commit() {
    HAWIYA_STORE_RETURN_IF_ERROR(connection_->Exec("COMMIT"));
    active_ = false;
    return absl::OkStatus();
  }

 private:
  Connection* connection_;
  bool active_ = false;
};

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

void SetTimestamp(int64_t micros, google::protobuf::Timestamp* ts) {
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {
    rest += 1000000;
    --seconds;
  }
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>(rest * 1000));
}

// Explicit little-endian so the file format does not depend on the host.
std::string EncodeVector(const google::protobuf::RepeatedField<float>& v) {
  std::string out(static_cast<size_t>(v.size()) * 4, '\0');
  for (int i = 0; i < v.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], sizeof(bits));
    for (int b = 0; b < 4; ++b) {
      out[static_cast<size_t>(i) * 4 + b] =
          static_cast<char>((bits >> (8 * b)) & 0xFF);
    }
  }
  return out;
}

#ifdef ABSL_IS_LITTLE_ENDIAN
constexpr bool kLittleEndianHost = true;
#else
constexpr bool kLittleEndianHost = false;
#endif

// The stored bytes of a vector: on a little-endian host the field's own
// memory (no copy), else EncodeVector's into `storage`.
absl::string_view VectorBytes(const google::protobuf::RepeatedField<float>& v,
                              std::string* storage) {
  if (kLittleEndianHost) {
    return absl::string_view(reinterpret_cast<const char*>(v.data()),
                             static_cast<size_t>(v.size()) * sizeof(float));
  }
  *storage = EncodeVector(v);
  return *storage;
}

absl::Status DecodeVector(absl::string_view bytes,
                          google::protobuf::RepeatedField<float>* out) {
  if (bytes.size() % 4 != 0) {
    return absl::InternalError(absl::StrCat(
        "store: corrupt template vector of ", bytes.size(), " bytes"));
  }
  out->Clear();
  out->Reserve(static_cast<int>(bytes.size() / 4));
  for (size_t i = 0; i < bytes.size(); i += 4) {
    uint32_t bits = 0;
    for (int b = 0; b < 4; ++b) {
      bits |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + b]))
              << (8 * b);
    }
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    out->Add(value);
  }
  return absl::OkStatus();
}

void AppendLe(uint64_t value, int bytes, std::string* out) {
  for (int b = 0; b < bytes; ++b) {
    out->push_back(static_cast<char>((value >> (8 * b)) & 0xFF));
  }
}

// What a sealed template vector is bound to: its row (template id), its
// owner and what it is (modality, position), and the key version stored
// beside it. Fixed-width fields first, the subject id last, so no two
// identities encode alike. A sealed vector copied to another row, subject
// or key version fails to open.
std::string TemplateAad(int64_t template_id, absl::string_view subject_id,
                        int64_t modality, int64_t position,
                        int64_t key_version) {
  std::string aad = "hawiya.template.v1";
  aad.push_back('\0');
  AppendLe(static_cast<uint64_t>(template_id), 8, &aad);
  AppendLe(static_cast<uint64_t>(key_version), 8, &aad);
  AppendLe(static_cast<uint64_t>(modality), 4, &aad);
  AppendLe(static_cast<uint64_t>(position), 4, &aad);
  absl::StrAppend(&aad, subject_id);
  return aad;
}

std::string SigningKeyAad(absl::string_view key_id) {
  return absl::StrCat("hawiya.signing-key.v1/", key_id);
}

std::string DataKeyAad(int64_t version) {
  return absl::StrCat("hawiya.data-key.v1:", version);
}

// The row fields a template's vector is sealed with.
struct SealedTemplate {
  int64_t template_id = 0;
  std::string subject_id;
  int64_t modality = 0;
  int64_t position = 0;
  int64_t key_version = 0;
  std::string vector;  // sealed, or plaintext when key_version is 0
};

// The record column keeps only client data; output-only fields live in
// their own columns so they cannot drift from what queries filter on.
absl::StatusOr<std::string> SerializeRecord(const Person& person) {
  Person record = person;
  record.clear_subject_id();
  record.clear_state();
  record.clear_create_time();
  record.clear_update_time();
  record.clear_version();
  record.clear_template_counts();
  record.clear_flags();
  record.clear_case_id();
  std::string out;
  if (!record.SerializeToString(&out)) {
    return absl::InternalError("store: cannot serialize person");
  }
  return out;
}

// What ReadPerson returns for a person just inserted by InsertPerson, built
// without reading it back: the record as stored (SerializeRecord's fields),
// the columns as bound, and the counts of `templates`, which are all the
// templates of a new subject.
Person AsInserted(const Person& person, int64_t now,
                  absl::Span<const Template> templates) {
  Person stored = person;
  stored.clear_create_time();
  stored.clear_update_time();
  stored.clear_template_counts();
  stored.set_version(1);
  SetTimestamp(now, stored.mutable_create_time());
  SetTimestamp(now, stored.mutable_update_time());
  // As FillTemplateCounts: per modality, in modality order.
  std::map<int, uint32_t> counts;
  for (const Template& t : templates) ++counts[t.modality()];
  for (const auto& [modality, count] : counts) {
    hawiya::v1::TemplateCount* out = stored.add_template_counts();
    out->set_modality(static_cast<hawiya::v1::Modality>(modality));
    out->set_count(count);
  }
  return stored;
}

// The response an idempotency row keeps: a hawiya.v1.Person naming only
// the subject, never its record (a replay reads the record as it is now).
std::string ResponseStub(absl::string_view subject_id) {
  Person stub;
  stub.set_subject_id(std::string(subject_id));
  return stub.SerializeAsString();
}

absl::Status NoPerson(absl::string_view subject_id) {
  return absl::NotFoundError(
      absl::StrCat("subject_id: no person ", subject_id));
}

absl::Status NationalIdTaken(const Person& person) {
  return absl::AlreadyExistsError(
      absl::StrCat("person.national_id: ", person.national_id(),
                   " is already enrolled for ", person.issuing_country()));
}

constexpr char kPersonColumns[] =
    "subject_id, state, version, create_time_us, update_time_us, record, "
    "flags";

// persons.birth_date: YYYYMMDD, 0 if unknown.
int64_t BirthDate(const Person& person) {
  if (!person.has_date_of_birth()) return 0;
  const hawiya::v1::Date& d = person.date_of_birth();
  return static_cast<int64_t>(d.year()) * 10000 + d.month() * 100 + d.day();
}

// The first column (as text) of every row of `select`.
absl::StatusOr<std::vector<std::string>> FirstColumn(Statement& select) {
  std::vector<std::string> values;
  while (true) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return values;
    values.push_back(select.Text(0));
  }
}

// The name blocking keys of both of a person's names, each once.
std::vector<std::string> NameKeys(const Person& person) {
  std::vector<std::string> keys = names::NameBlockingKeys(person.name_ar());
  for (std::string& key : names::NameBlockingKeys(person.name_latin())) {
    keys.push_back(std::move(key));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

// Replaces the name_keys rows of `subject_id` with those of `person` (none
// without a date of birth, which the pre-check needs); null `person`:
// deletes them. Inside the caller's write transaction.
absl::Status WriteNameKeys(Connection& connection, absl::string_view subject_id,
                           const Person* person) {
  {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement erase,
        connection.Prepare("DELETE FROM name_keys WHERE subject_id = ?1"));
    erase.BindText(1, subject_id);
    HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
  }
  if (person == nullptr || BirthDate(*person) == 0) return absl::OkStatus();
  for (const std::string& key : NameKeys(*person)) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection.Prepare("INSERT INTO name_keys (birth_date, key, "
                           "subject_id) VALUES (?1, ?2, ?3)"));
    insert.BindInt(1, BirthDate(*person))
        .BindText(2, key)
        .BindText(3, subject_id);
    HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
  }
  return absl::OkStatus();
}

class SqliteStore final : public Store {
 public:
  SqliteStore(std::unique_ptr<Connection> connection, std::string path)
      : connection_(std::move(connection)), path_(std::move(path)) {}

  const std::string& path() const override { return path_; }

  // Idempotency rows an older version wrote keep the whole person record as
  // first returned, a copy UpdatePerson never corrected: reduced once to
  // the subject id (ResponseStub), which meta records, then the WAL that
  // held the old pages is checkpointed away. Part of Open.
  absl::Status ScrubStoredResponses() {
    absl::MutexLock lock(&mu_);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        int64_t scrubbed,
        connection_->QueryInt("SELECT COUNT(*) FROM meta WHERE key = "
                              "'responses_scrubbed'"));
    if (scrubbed > 0) return absl::OkStatus();
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    std::vector<std::pair<std::string, std::string>> stubs;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare("SELECT request_id, subject_id, response FROM "
                               "idempotency WHERE length(response) > 0"));
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        std::string stub = ResponseStub(select.Text(1));
        if (select.Blob(2) != stub) {
          stubs.emplace_back(select.Text(0), std::move(stub));
        }
      }
    }
    for (const auto& [request_id, stub] : stubs) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement update,
          connection_->Prepare(
              "UPDATE idempotency SET response = ?2 WHERE request_id = ?1"));
      update.BindText(1, request_id).BindBlob(2, stub);
      HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
    }
    HAWIYA_STORE_RETURN_IF_ERROR(
        connection_->Exec("INSERT OR REPLACE INTO meta (key, value) VALUES "
                          "('responses_scrubbed', '1')"));
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    if (!stubs.empty()) CheckpointWal();
    return absl::OkStatus();
  }

  // Loads the key-encryption key (creating the default one for a store
  // without data keys), makes the first data key if there is none, unwraps
  // every data key, and encrypts templates still stored in plaintext. Part
  // of Open: nothing else runs yet.
  absl::Status LoadKeys(const StoreOptions& options) {
    absl::MutexLock lock(&mu_);
    const bool default_file = options.key_file.empty();
    std::string key_file = options.key_file;
    if (default_file) {
      std::filesystem::path folder =
          std::filesystem::path(options.path).parent_path();
      key_file = (folder / "keys" / "kek.key").string();
    }
    key_report_.key_file = key_file;
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        int64_t wrapped_keys,
        connection_->QueryInt("SELECT COUNT(*) FROM data_keys"));
    std::error_code error;
    if (!std::filesystem::exists(key_file, error)) {
      if (wrapped_keys > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "key_file ", key_file, ": no such file, and the store's ",
            wrapped_keys,
            " data key(s) are wrapped by the key that was in it: restore the "
            "key file (or point key_file at it); the store stays closed"));
      }
      if (!default_file) {
        return absl::FailedPreconditionError(absl::StrCat(
            "key_file ", key_file,
            ": no such file (make one with `hawiya admin gen-key --out ",
            key_file, "`)"));
      }
      if (absl::Status s = CreateKeyFile(key_file); s.ok()) {
        key_report_.key_file_created = true;
      } else if (!absl::IsAlreadyExists(s)) {
        return s;
      }
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(AeadKey kek, LoadKeyFile(key_file));
    kek_ = std::move(kek);
    key_report_.key_check = KeyCheckValue(*kek_);
    HAWIYA_STORE_RETURN_IF_ERROR(CheckKeyCheck(key_file));

    if (wrapped_keys == 0) {
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      // Re-read under the write lock: another process may have made one.
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          wrapped_keys,
          connection_->QueryInt("SELECT COUNT(*) FROM data_keys"));
      if (wrapped_keys == 0) {
        HAWIYA_STORE_RETURN_IF_ERROR(InsertDataKey(1).status());
        HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(ReadDataKeys(key_file));
    HAWIYA_STORE_RETURN_IF_ERROR(RecordKeyCheck());

    // Templates an older version stored in plaintext: encrypted in one
    // transaction, then the WAL, which held their plaintext pages, is
    // checkpointed away. Looking for them reads the whole table, so it is
    // done until it has once found none, which meta records.
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        int64_t all_sealed,
        connection_->QueryInt("SELECT COUNT(*) FROM meta WHERE key = "
                              "'templates_sealed'"));
    if (all_sealed == 0) {
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          key_report_.templates_encrypted,
          ReencryptBatch(/*after_template_id=*/0, /*limit=*/-1,
                         /*only_plaintext=*/true, nullptr));
      HAWIYA_STORE_RETURN_IF_ERROR(
          connection_->Exec("INSERT OR REPLACE INTO meta (key, value) VALUES "
                            "('templates_sealed', '1')"));
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    }
    if (key_report_.templates_encrypted > 0) CheckpointWal();
    return absl::OkStatus();
  }

  KeyReport key_report() const override {
    absl::MutexLock lock(&mu_);
    return key_report_;
  }

  absl::StatusOr<WriteResult> CreatePerson(
      const IdempotencyKey& key, const Person& person,
      absl::Span<const Template> templates, AuditWrite* audit,
      const hawiya::v1::Case* dedup_case) override {
    HAWIYA_STORE_RETURN_IF_ERROR(CheckNewPerson(key, person));
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    const int64_t now = NowMicros();
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        WriteResult result,
        InsertPerson(key, person, templates, now, dedup_case));
    // A replay wrote nothing: without a record to commit, rolling back (no
    // commit) costs no fsync.
    if (result.replayed && audit == nullptr) return result;
    // A replay answers with the subject first enrolled.
    if (audit != nullptr) audit->event.subject_id = result.person.subject_id();
    HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    return result;
  }

  absl::StatusOr<std::vector<WriteResult>> CreatePersons(
      absl::Span<const NewPerson> persons, AuditWrite* audit) override {
    for (size_t i = 0; i < persons.size(); ++i) {
      HAWIYA_STORE_RETURN_IF_ERROR(
          ItemError(i, CheckNewPerson(persons[i].key, persons[i].person)));
    }
    std::vector<WriteResult> results;
    if (persons.empty() && audit == nullptr) return results;
    results.reserve(persons.size());
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    // One timestamp for the batch: it is one commit.
    const int64_t now = NowMicros();
    for (size_t i = 0; i < persons.size(); ++i) {
      const NewPerson& item = persons[i];
      absl::StatusOr<WriteResult> result = InsertPerson(
          item.key, item.person, item.templates, now, &item.dedup_case);
      if (!result.ok()) return ItemError(i, result.status());
      results.push_back(*std::move(result));
    }
    if (audit != nullptr) {
      for (const WriteResult& result : results) {
        audit->event.subject_ids.push_back(result.person.subject_id());
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    return results;
  }

  absl::StatusOr<Person> GetPerson(absl::string_view subject_id) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> person,
                                  ReadPerson(subject_id));
    if (!person.has_value()) return NoPerson(subject_id);
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return *std::move(person);
  }

  absl::StatusOr<Person> FindPerson(
      absl::string_view national_id,
      absl::string_view issuing_country) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::optional<Person> person;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(Statement select,
                                    connection_->Prepare(absl::StrCat(
                                        "SELECT ", kPersonColumns,
                                        " FROM persons WHERE issuing_country = "
                                        "?1 AND national_id = ?2")));
      select.BindText(1, issuing_country).BindText(2, national_id);
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (row) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(person, PersonFromRow(select));
      }
    }
    if (!person.has_value()) {
      return absl::NotFoundError(absl::StrCat("national_id: no person ",
                                              national_id, " enrolled for ",
                                              issuing_country));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(FillTemplateCounts(&*person));
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return *std::move(person);
  }

  absl::StatusOr<Person> UpdatePerson(const Person& person,
                                      int64_t expected_version,
                                      AuditWrite* audit) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));

    // A REVOKED record stays as it was withdrawn (ReplaceTemplates refuses
    // it too). A DECEASED one is still a civil record, open to correction.
    HAWIYA_STORE_RETURN_IF_ERROR(
        RequireState("person.subject_id", person.subject_id(),
                     {hawiya::v1::ACTIVE, hawiya::v1::PENDING_ADJUDICATION,
                      hawiya::v1::DECEASED}));
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<int64_t> version,
                                  ReadVersion(person.subject_id()));
    if (!version.has_value()) return NoPerson(person.subject_id());
    if (*version != expected_version) {
      return absl::AbortedError(
          absl::StrCat("expected_version: is ", expected_version,
                       ", current version is ", *version));
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<std::string> holder,
                                  NationalIdHolder(person));
    if (holder.has_value() && *holder != person.subject_id()) {
      return NationalIdTaken(person);
    }

    HAWIYA_STORE_ASSIGN_OR_RETURN(std::string record, SerializeRecord(person));
    const int64_t now = NowMicros();
    {
      // State is output-only for clients, so a record that went through a
      // field mask may carry none: then the stored state stays. The
      // registry sets one to move a person between states (adjudication).
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement update,
          connection_->Prepare(
              "UPDATE persons SET national_id = ?2, issuing_country = ?3, "
              "birth_date = ?7, "
              "state = CASE WHEN ?4 = 0 THEN state ELSE ?4 END, "
              "revoke_reason = CASE WHEN ?4 = 0 OR ?4 = 3 THEN revoke_reason "
              "ELSE NULL END, "
              "record = ?5, version = version + 1, "
              "update_time_us = max(update_time_us, ?6) "
              "WHERE subject_id = ?1"));
      update.BindText(1, person.subject_id())
          .BindText(2, person.national_id())
          .BindText(3, person.issuing_country())
          .BindInt(4, person.state())
          .BindBlob(5, record)
          .BindInt(6, now)
          .BindInt(7, BirthDate(person));
      HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
    }
    HAWIYA_STORE_RETURN_IF_ERROR(
        WriteNameKeys(*connection_, person.subject_id(), &person));
    HAWIYA_STORE_RETURN_IF_ERROR(
        AppendChange(person.subject_id(), "update", now));
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> stored,
                                  ReadPerson(person.subject_id()));
    if (!stored.has_value()) {
      return absl::InternalError("store: updated person vanished");
    }
    HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    return *std::move(stored);
  }

  absl::StatusOr<WriteResult> ReplaceTemplates(
      const IdempotencyKey& key, absl::string_view subject_id,
      absl::Span<const Template> templates, AuditWrite* audit,
      const hawiya::v1::Case* dedup_case) override {
    if (key.request_id.empty()) {
      return absl::InvalidArgumentError("request_id: must not be empty");
    }
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));

    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<WriteResult> replay,
                                  Replay(key));
    // A replay writes nothing but its audit record (if none, the
    // transaction rolls back).
    if (replay.has_value()) {
      if (audit != nullptr) {
        HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, NowMicros()));
      }
      return *std::move(replay);
    }

    // Checked after the replay lookup, so a replay still answers after the
    // person was revoked.
    HAWIYA_STORE_RETURN_IF_ERROR(
        RequireState("subject_id", subject_id,
                     {hawiya::v1::ACTIVE, hawiya::v1::PENDING_ADJUDICATION}));

    const int64_t now = NowMicros();
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement erase,
          connection_->Prepare("DELETE FROM templates WHERE subject_id = ?1"));
      erase.BindText(1, subject_id);
      HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
    }
    WriteResult result;
    HAWIYA_STORE_ASSIGN_OR_RETURN(result.templates,
                                  InsertTemplates(subject_id, templates));
    HAWIYA_STORE_RETURN_IF_ERROR(BumpVersion(subject_id, now));
    if (dedup_case != nullptr && !dedup_case->case_id().empty()) {
      HAWIYA_STORE_RETURN_IF_ERROR(
          SetState(subject_id, hawiya::v1::PENDING_ADJUDICATION, ""));
      HAWIYA_STORE_RETURN_IF_ERROR(InsertCase(*dedup_case, subject_id, now));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(
        AppendChange(subject_id, "replace_templates", now));
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> stored,
                                  ReadPerson(subject_id));
    if (!stored.has_value()) {
      return absl::InternalError("store: updated person vanished");
    }
    result.person = *std::move(stored);
    HAWIYA_STORE_RETURN_IF_ERROR(RecordRequest(key, subject_id, now));
    HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    return result;
  }

  absl::Status RevokePerson(absl::string_view subject_id,
                            absl::string_view reason,
                            AuditWrite* audit) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    const int64_t now = NowMicros();
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement update,
          connection_->Prepare(
              "UPDATE persons SET state = ?2, revoke_reason = ?3, "
              "version = version + 1, "
              "update_time_us = max(update_time_us, ?4) "
              "WHERE subject_id = ?1"));
      update.BindText(1, subject_id)
          .BindInt(2, hawiya::v1::REVOKED)
          .BindText(3, reason)
          .BindInt(4, now);
      HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
    }
    if (sqlite3_changes64(connection_->db()) == 0) return NoPerson(subject_id);
    HAWIYA_STORE_RETURN_IF_ERROR(WithdrawCase(
        subject_id, absl::StrCat("person revoked: ", reason), audit, now));
    HAWIYA_STORE_RETURN_IF_ERROR(AppendChange(subject_id, "revoke", now));
    return CommitWithAudit(txn, audit, now);
  }

  absl::Status ErasePerson(absl::string_view subject_id,
                           AuditWrite* audit) override {
    absl::MutexLock lock(&mu_);
    {
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      // Explicit deletes rather than relying on ON DELETE CASCADE: the
      // erasure must not depend on foreign_keys being on.
      // The person's idempotency rows stay as tombstones without their
      // response (which holds the record): a retried or re-imported request
      // must not enroll the erased person again.
      for (const char* sql :
           {"DELETE FROM templates WHERE subject_id = ?1",
            "UPDATE idempotency SET response = x'', subject_id = NULL "
            "WHERE subject_id = ?1",
            "DELETE FROM persons WHERE subject_id = ?1"}) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(Statement erase,
                                      connection_->Prepare(sql));
        erase.BindText(1, subject_id);
        HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
      }
      // Only the persons row counts: templates may legitimately be none.
      if (sqlite3_changes64(connection_->db()) == 0) {
        return NoPerson(subject_id);
      }
      const int64_t now = NowMicros();
      HAWIYA_STORE_RETURN_IF_ERROR(
          WriteNameKeys(*connection_, subject_id, nullptr));
      {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement erase,
            connection_->Prepare("DELETE FROM distinct_pairs WHERE "
                                 "subject_a = ?1 OR subject_b = ?1"));
        erase.BindText(1, subject_id);
        HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
      }
      HAWIYA_STORE_RETURN_IF_ERROR(
          WithdrawCase(subject_id, "person erased", audit, now));
      HAWIYA_STORE_RETURN_IF_ERROR(AppendChange(subject_id, "erase", now));
      HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    }
    // secure_delete zeroed the freed cells in the new page images, but the
    // WAL still holds older frames with the vectors. Copying the WAL back and
    // truncating it leaves no template bytes in any file.
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement checkpoint,
        connection_->Prepare("PRAGMA wal_checkpoint(TRUNCATE)"));
    absl::StatusOr<bool> row = checkpoint.Step();
    if (!row.ok() || !*row || checkpoint.Int(0) != 0) {
      // The person is gone; only the WAL scrub is incomplete (another
      // process holds a read snapshot). The next erase retries it.
      return absl::InternalError(
          absl::StrCat("subject_id: ", subject_id,
                       " was erased, but the WAL checkpoint did not complete: ",
                       row.ok() ? "database busy" : row.status().message()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<PersonPage> ListPersons(
      PersonState state, int page_size,
      absl::string_view after_subject_id) override {
    if (page_size <= 0) {
      return absl::InvalidArgumentError("page_size: must be positive");
    }
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    PersonPage page;
    bool more = false;
    {
      // Two statements rather than "?2 = 0 OR state = ?2" so the filtered
      // one can use persons_by_state.
      const std::string sql =
          state == hawiya::v1::PERSON_STATE_UNSPECIFIED
              ? absl::StrCat("SELECT ", kPersonColumns,
                             " FROM persons WHERE subject_id > ?1 "
                             "ORDER BY subject_id LIMIT ?3")
              : absl::StrCat("SELECT ", kPersonColumns,
                             " FROM persons WHERE state = ?2 AND "
                             "subject_id > ?1 ORDER BY subject_id LIMIT ?3");
      HAWIYA_STORE_ASSIGN_OR_RETURN(Statement select,
                                    connection_->Prepare(sql));
      select.BindText(1, after_subject_id);
      if (state != hawiya::v1::PERSON_STATE_UNSPECIFIED) {
        select.BindInt(2, state);
      }
      // One extra row tells whether another page exists.
      select.BindInt(3, static_cast<int64_t>(page_size) + 1);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        if (static_cast<int>(page.persons.size()) == page_size) {
          more = true;
          break;
        }
        HAWIYA_STORE_ASSIGN_OR_RETURN(Person person, PersonFromRow(select));
        page.persons.push_back(std::move(person));
      }
    }
    for (Person& person : page.persons) {
      HAWIYA_STORE_RETURN_IF_ERROR(FillTemplateCounts(&person));
    }
    if (more) page.last_subject_id = page.persons.back().subject_id();
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return page;
  }

  // fn runs with the store locked, so it must not call back into the store.
  absl::Status ForEachActiveTemplate(
      const std::function<absl::Status(TemplateRecord&&)>& fn) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              "SELECT t.template_id, t.modality, t.position, t.quality, "
              "t.algorithm, t.vector, t.key_version, t.subject_id "
              "FROM templates t "
              "JOIN persons p ON p.subject_id = t.subject_id "
              "WHERE p.state = ?1 ORDER BY t.template_id"));
      select.BindInt(1, hawiya::v1::ACTIVE);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        HAWIYA_STORE_ASSIGN_OR_RETURN(TemplateRecord record,
                                      TemplateOfRow(select, select.Text(7)));
        HAWIYA_STORE_RETURN_IF_ERROR(fn(std::move(record)));
      }
    }
    return txn.Commit();
  }

  absl::StatusOr<std::map<PersonState, int64_t>> CountPersons() override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::map<PersonState, int64_t> counts;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              "SELECT state, COUNT(*) FROM persons GROUP BY state"));
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        counts[static_cast<PersonState>(select.Int(0))] = select.Int(1);
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return counts;
  }

  absl::StatusOr<std::string> StoreId() override {
    absl::MutexLock lock(&mu_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement select, connection_->Prepare("SELECT value FROM meta "
                                                   "WHERE key = 'store_id'"));
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (row) return select.Text(0);
      }
      // Migration 2 made one; if it was deleted since, the old identity is
      // gone and a new one stands (snapshots of the old one are refused).
      HAWIYA_STORE_RETURN_IF_ERROR(
          connection_->Exec("INSERT OR IGNORE INTO meta (key, value) VALUES "
                            "('store_id', lower(hex(randomblob(16))))"));
    }
    return absl::InternalError("store: cannot read or make a store_id");
  }

  absl::StatusOr<int64_t> ChangeSequence() override {
    absl::MutexLock lock(&mu_);
    // The primary key's b-tree answers MAX without a scan.
    return connection_->QueryInt("SELECT COALESCE(MAX(seq), 0) FROM changes");
  }

  absl::StatusOr<Change> GetChange(int64_t sequence) override {
    absl::MutexLock lock(&mu_);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT subject_id, kind, time_us FROM changes WHERE seq = ?1"));
    select.BindInt(1, sequence);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("sequence: no change ", sequence));
    }
    return Change{sequence, select.Text(0), select.Text(1), select.Int(2)};
  }

  absl::StatusOr<ChangedSubjects> SubjectsChangedAfter(int64_t after) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    ChangedSubjects changed;
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        changed.sequence,
        connection_->QueryInt("SELECT COALESCE(MAX(seq), 0) FROM changes"));
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare("SELECT subject_id FROM changes "
                               "WHERE seq > ?1 AND seq <= ?2 "
                               "GROUP BY subject_id ORDER BY MIN(seq)"));
      select.BindInt(1, after).BindInt(2, changed.sequence);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        changed.subject_ids.push_back(select.Text(0));
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return changed;
  }

  absl::Status RecordSnapshot(const SnapshotRecord& snapshot) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement insert,
          connection_->Prepare("INSERT OR REPLACE INTO snapshots (sequence, "
                               "file_id, create_time_us) VALUES (?1, ?2, ?3)"));
      insert.BindInt(1, snapshot.sequence)
          .BindText(2, snapshot.file_id)
          .BindInt(3, snapshot.create_time_us);
      HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
    }
    return txn.Commit();
  }

  absl::StatusOr<SnapshotRecord> GetSnapshot(int64_t sequence) override {
    absl::MutexLock lock(&mu_);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare("SELECT file_id, create_time_us FROM snapshots "
                             "WHERE sequence = ?1"));
    select.BindInt(1, sequence);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("sequence: no snapshot recorded at change ", sequence));
    }
    return SnapshotRecord{sequence, select.Text(0), select.Int(1)};
  }

  absl::StatusOr<int64_t> ForgetSnapshots(
      absl::Span<const int64_t> kept) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    std::vector<int64_t> forgotten;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare("SELECT sequence FROM snapshots"));
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        if (std::find(kept.begin(), kept.end(), select.Int(0)) == kept.end()) {
          forgotten.push_back(select.Int(0));
        }
      }
    }
    for (int64_t sequence : forgotten) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement erase,
          connection_->Prepare("DELETE FROM snapshots WHERE sequence = ?1"));
      erase.BindInt(1, sequence);
      HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return static_cast<int64_t>(forgotten.size());
  }

  absl::StatusOr<int64_t> PruneChangesBefore(int64_t sequence) override {
    // Rows per transaction: a few milliseconds of work, so a write waits at
    // most that long for the store's mutex.
    constexpr int kRowsPerTransaction = 10000;
    int64_t deleted = 0;
    while (true) {
      absl::MutexLock lock(&mu_);
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      int64_t rows = 0;
      {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement erase,
            connection_->Prepare(
                "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes "
                "WHERE seq < ?1 ORDER BY seq LIMIT ?2)"));
        erase.BindInt(1, sequence).BindInt(2, kRowsPerTransaction);
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, erase.Step());
        (void)row;
        rows = sqlite3_changes64(connection_->db());
      }
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      deleted += rows;
      if (rows < kRowsPerTransaction) return deleted;
    }
  }

  absl::StatusOr<std::vector<TemplateRecord>> ActiveTemplatesOf(
      absl::Span<const std::string> subject_ids) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::vector<TemplateRecord> records;
    for (const std::string& subject_id : subject_ids) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              "SELECT t.template_id, t.modality, t.position, t.quality, "
              "t.algorithm, t.vector, t.key_version FROM templates t "
              "JOIN persons p ON p.subject_id = t.subject_id "
              "WHERE t.subject_id = ?1 AND p.state = ?2 "
              "ORDER BY t.template_id"));
      select.BindText(1, subject_id).BindInt(2, hawiya::v1::ACTIVE);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        HAWIYA_STORE_ASSIGN_OR_RETURN(TemplateRecord record,
                                      TemplateOfRow(select, subject_id));
        records.push_back(std::move(record));
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return records;
  }

  absl::StatusOr<std::vector<Person>> DemographicCandidates(
      const Person& person) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::vector<Person> persons;
    // The person's name keys, bound as ?7, ?8, ...: the date's persons
    // sharing none cannot match by name (names::NameBlockingKeys), so only
    // the others are read, without a cap.
    const std::vector<std::string> keys = NameKeys(person);
    std::string key_params;
    for (size_t i = 0; i < keys.size(); ++i) {
      absl::StrAppend(&key_params, i == 0 ? "" : ", ", "?", i + 7);
    }
    const std::string by_name = absl::StrCat(
        "subject_id IN (SELECT subject_id FROM name_keys WHERE birth_date = ?3 "
        "AND key IN (",
        key_params, "))");
    std::vector<std::string> lookups = {
        "national_id = ?1 AND issuing_country != ?2"};
    if (BirthDate(person) != 0 && !keys.empty()) lookups.push_back(by_name);
    // Indexed lookups one by one rather than one OR, which would scan.
    for (const std::string& where : lookups) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(absl::StrCat(
              "SELECT ", kPersonColumns, " FROM persons WHERE ", where,
              " AND subject_id != ?4 AND state IN (?5, ?6)")));
      select.BindText(1, person.national_id())
          .BindText(2, person.issuing_country())
          .BindInt(3, BirthDate(person))
          .BindText(4, person.subject_id())
          .BindInt(5, hawiya::v1::ACTIVE)
          .BindInt(6, hawiya::v1::PENDING_ADJUDICATION);
      for (size_t i = 0; i < keys.size() && where == by_name; ++i) {
        select.BindText(static_cast<int>(i + 7), keys[i]);
      }
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        HAWIYA_STORE_ASSIGN_OR_RETURN(Person found, PersonFromRow(select));
        const bool seen = std::any_of(
            persons.begin(), persons.end(), [&found](const Person& p) {
              return p.subject_id() == found.subject_id();
            });
        if (!seen) persons.push_back(std::move(found));
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return persons;
  }

  absl::StatusOr<std::vector<std::string>> AdjudicatedDistinct(
      absl::string_view subject_id) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    // Two indexed lookups (the primary key, distinct_pairs_by_b).
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT subject_b FROM distinct_pairs WHERE subject_a = ?1 "
            "UNION SELECT subject_a FROM distinct_pairs WHERE subject_b = ?1"));
    select.BindText(1, subject_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::vector<std::string> others,
                                  FirstColumn(select));
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return others;
  }

  absl::StatusOr<std::vector<TemplateRecord>> PendingTemplates() override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::vector<std::string> subjects;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare("SELECT subject_id FROM persons WHERE state = "
                               "?1 ORDER BY subject_id"));
      select.BindInt(1, hawiya::v1::PENDING_ADJUDICATION);
      HAWIYA_STORE_ASSIGN_OR_RETURN(subjects, FirstColumn(select));
    }
    std::vector<TemplateRecord> records;
    for (const std::string& subject : subjects) {
      HAWIYA_STORE_RETURN_IF_ERROR(ReadTemplates(subject, &records));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return records;
  }

  absl::StatusOr<hawiya::v1::Case> GetCase(absl::string_view case_id) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<StoredCase> found,
                                  ReadCase(case_id));
    if (!found.has_value()) return NoCase(case_id);
    HAWIYA_STORE_RETURN_IF_ERROR(FillCasePersons(&found->record, true));
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return std::move(found->record);
  }

  absl::StatusOr<CasePage> ListCases(bool include_decided, int page_size,
                                     int64_t after_sequence) override {
    if (page_size <= 0) {
      return absl::InvalidArgumentError("page_size: must be positive");
    }
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    CasePage page;
    std::vector<int64_t> sequences;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(absl::StrCat(
              "SELECT ", kCaseColumns, " FROM cases WHERE seq > ?1",
              include_decided ? "" : " AND decision = 0",
              " ORDER BY seq LIMIT ?2")));
      select.BindInt(1, after_sequence)
          .BindInt(2, static_cast<int64_t>(page_size) + 1);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        HAWIYA_STORE_ASSIGN_OR_RETURN(StoredCase stored, CaseFromRow(select));
        sequences.push_back(stored.sequence);
        page.cases.push_back(std::move(stored.record));
      }
    }
    if (page.cases.size() > static_cast<size_t>(page_size)) {
      page.cases.pop_back();
      page.last_sequence = sequences[page.cases.size() - 1];
    }
    sequences.resize(page.cases.size());
    page.sequences = std::move(sequences);
    for (hawiya::v1::Case& c : page.cases) {
      HAWIYA_STORE_RETURN_IF_ERROR(FillCasePersons(&c, false));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return page;
  }

  absl::StatusOr<DecideResult> DecideCase(const CaseDecision& decision,
                                          AuditWrite* audit) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    // The request ids of every write method are one key space: one an
    // Enroll used, or another DecideCase request, is ALREADY_EXISTS.
    const IdempotencyKey key{decision.request_id, "DecideCase",
                             decision.fingerprint};
    std::optional<CommittedRequest> committed;
    if (!key.request_id.empty()) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(committed, FindRequest(key));
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<StoredCase> found,
                                  ReadCase(decision.case_id));
    if (!found.has_value()) return NoCase(decision.case_id);
    hawiya::v1::Case& c = found->record;
    const std::string subject_id = c.person().subject_id();
    if (audit != nullptr) {
      audit->event.subject_id = subject_id;
      for (const hawiya::v1::CaseCandidate& candidate : c.candidates()) {
        audit->event.subject_ids.push_back(candidate.candidate().subject_id());
      }
    }
    DecideResult result;
    const int64_t now = NowMicros();
    if (c.decision() != hawiya::v1::DECISION_UNSPECIFIED) {
      // A replay: the same request committed (or, for a case decided
      // before decisions kept an idempotency row, the same request_id and
      // decision).
      if (committed.has_value() || (!decision.request_id.empty() &&
                                    found->request_id == decision.request_id &&
                                    c.decision() == decision.decision)) {
        result.replayed = true;
        HAWIYA_STORE_RETURN_IF_ERROR(FillCasePersons(&c, true));
        result.decided = std::move(c);
        if (audit != nullptr) {
          HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
        }
        return result;
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "case_id: case ", decision.case_id, " was already decided (",
          hawiya::v1::Decision_Name(c.decision()), " by ", c.adjudicator(),
          "); a decision is final"));
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> person,
                                  ReadPerson(subject_id));
    if (!person.has_value() ||
        person->state() != hawiya::v1::PENDING_ADJUDICATION) {
      return absl::FailedPreconditionError(absl::StrCat(
          "case_id: the person of case ", decision.case_id, " is ",
          person.has_value()
              ? std::string(hawiya::v1::PersonState_Name(person->state()))
              : std::string("erased"),
          ", no longer pending"));
    }
    std::string duplicate_of;
    bool merged = false;
    result.changed_subjects.push_back(subject_id);
    switch (decision.decision) {
      case hawiya::v1::DISTINCT:
        HAWIYA_STORE_RETURN_IF_ERROR(
            SetState(subject_id, hawiya::v1::ACTIVE, ""));
        // Remembered, so that deduplicating either of a pair again does
        // not raise it again.
        for (const hawiya::v1::CaseCandidate& candidate : c.candidates()) {
          const std::string& other = candidate.candidate().subject_id();
          HAWIYA_STORE_ASSIGN_OR_RETURN(
              Statement insert,
              connection_->Prepare(
                  "INSERT OR IGNORE INTO distinct_pairs (subject_a, "
                  "subject_b, case_id) VALUES (min(?1, ?2), max(?1, ?2), ?3)"));
          insert.BindText(1, subject_id)
              .BindText(2, other)
              .BindText(3, decision.case_id);
          HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
        }
        break;
      case hawiya::v1::DUPLICATE: {
        duplicate_of = decision.duplicate_of;
        if (duplicate_of.empty() && !c.candidates().empty()) {
          duplicate_of = c.candidates(0).candidate().subject_id();
        }
        const bool is_candidate = std::any_of(
            c.candidates().begin(), c.candidates().end(),
            [&duplicate_of](const hawiya::v1::CaseCandidate& candidate) {
              return candidate.candidate().subject_id() == duplicate_of;
            });
        if (!is_candidate) {
          return absl::InvalidArgumentError(
              absl::StrCat("duplicate_of: ", duplicate_of,
                           " is not a candidate of case ", decision.case_id));
        }
        HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> existing,
                                      ReadPerson(duplicate_of));
        if (!existing.has_value()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "duplicate_of: no person ", duplicate_of, " (erased)"));
        }
        // The new record is revoked in favour of duplicate_of, so that must
        // be a live record: else the person would be left with none.
        if (existing->state() != hawiya::v1::ACTIVE &&
            existing->state() != hawiya::v1::PENDING_ADJUDICATION) {
          return absl::FailedPreconditionError(absl::StrCat(
              "duplicate_of: ", duplicate_of, " is ",
              hawiya::v1::PersonState_Name(existing->state()),
              "; a person can only duplicate an ACTIVE or pending record"));
        }
        std::vector<Template> templates;
        if (decision.merge_templates) {
          std::vector<TemplateRecord> records;
          HAWIYA_STORE_RETURN_IF_ERROR(ReadTemplates(subject_id, &records));
          for (TemplateRecord& r : records) {
            templates.push_back(std::move(r.tmpl));
          }
          if (decision.check_merged) {
            std::vector<TemplateRecord> held;
            HAWIYA_STORE_RETURN_IF_ERROR(ReadTemplates(duplicate_of, &held));
            std::vector<Template> merged;
            for (TemplateRecord& r : held) merged.push_back(std::move(r.tmpl));
            merged.insert(merged.end(), templates.begin(), templates.end());
            HAWIYA_STORE_RETURN_IF_ERROR(decision.check_merged(merged));
          }
        }
        HAWIYA_STORE_RETURN_IF_ERROR(
            SetState(subject_id, hawiya::v1::REVOKED,
                     absl::StrCat("duplicate of ", duplicate_of, " (case ",
                                  decision.case_id, ")")));
        if (decision.merge_templates) {
          HAWIYA_STORE_RETURN_IF_ERROR(
              InsertTemplates(duplicate_of, templates).status());
          HAWIYA_STORE_RETURN_IF_ERROR(BumpVersion(duplicate_of, now));
          HAWIYA_STORE_RETURN_IF_ERROR(
              AppendChange(duplicate_of, "merge_templates", now));
          result.changed_subjects.push_back(duplicate_of);
          merged = true;
        }
        break;
      }
      case hawiya::v1::FRAUD: {
        HAWIYA_STORE_RETURN_IF_ERROR(
            SetState(subject_id, hawiya::v1::REVOKED,
                     absl::StrCat("fraud (case ", decision.case_id, ")")));
        const std::string flag = absl::StrCat("fraud:", decision.case_id);
        for (const hawiya::v1::CaseCandidate& candidate : c.candidates()) {
          HAWIYA_STORE_ASSIGN_OR_RETURN(
              Statement update,
              connection_->Prepare(
                  "UPDATE persons SET flags = CASE WHEN flags = '' THEN ?2 "
                  "ELSE flags || ',' || ?2 END, version = version + 1, "
                  "update_time_us = max(update_time_us, ?3) "
                  "WHERE subject_id = ?1"));
          update.BindText(1, candidate.candidate().subject_id())
              .BindText(2, flag)
              .BindInt(3, now);
          HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
          if (sqlite3_changes64(connection_->db()) > 0) {
            HAWIYA_STORE_RETURN_IF_ERROR(
                AppendChange(candidate.candidate().subject_id(), "flag", now));
          }
        }
        break;
      }
      default:
        // WITHDRAWN included: only revoke and erase set it (WithdrawCase).
        return absl::InvalidArgumentError(
            "decision: DISTINCT, DUPLICATE or FRAUD");
    }
    HAWIYA_STORE_RETURN_IF_ERROR(AppendChange(subject_id, "adjudicate", now));
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement update,
          connection_->Prepare(
              "UPDATE cases SET decision = ?2, adjudicator = ?3, comment = ?4, "
              "decide_time_us = ?5, duplicate_of = ?6, merged_templates = ?7, "
              "request_id = ?8 WHERE case_id = ?1"));
      update.BindText(1, decision.case_id)
          .BindInt(2, decision.decision)
          .BindText(3, decision.adjudicator)
          .BindText(4, decision.comment)
          .BindInt(5, now)
          .BindText(6, duplicate_of)
          .BindInt(7, merged ? 1 : 0)
          .BindText(8, decision.request_id);
      HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
    }
    if (!key.request_id.empty()) {
      HAWIYA_STORE_RETURN_IF_ERROR(RecordRequest(key, subject_id, now));
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(found, ReadCase(decision.case_id));
    HAWIYA_STORE_RETURN_IF_ERROR(FillCasePersons(&found->record, true));
    result.decided = std::move(found->record);
    HAWIYA_STORE_RETURN_IF_ERROR(CommitWithAudit(txn, audit, now));
    return result;
  }

  absl::StatusOr<RotateKeyResult> RotateDataKey(
      const RotateKeyOptions& options) override {
    if (options.batch_rows <= 0) {
      return absl::InvalidArgumentError("batch_rows: must be positive");
    }
    absl::MutexLock rotate_lock(&rotate_mu_);
    RotateKeyResult result;
    {
      absl::MutexLock lock(&mu_);
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          int64_t latest,
          connection_->QueryInt("SELECT COALESCE(MAX(version), 0) FROM "
                                "data_keys"));
      HAWIYA_STORE_ASSIGN_OR_RETURN(AeadKey key, InsertDataKey(latest + 1));
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      // Only once committed: a write sealed under an uncommitted key would
      // be unreadable after a crash.
      data_keys_.insert_or_assign(latest + 1, std::move(key));
      current_version_ = latest + 1;
      result.key_version = current_version_;
    }
    // Batches in template id order, each its own transaction, the store's
    // mutex released in between so that writes go on. Templates written
    // meanwhile are sealed under the new key already.
    int64_t after = 0;
    while (true) {
      int64_t done = 0;
      {
        absl::MutexLock lock(&mu_);
        Transaction txn(connection_.get());
        HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            done, ReencryptBatch(after, options.batch_rows,
                                 /*only_plaintext=*/false, &after));
        HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      }
      if (done == 0) break;
      result.templates_reencrypted += done;
      if (options.after_batch)
        options.after_batch(result.templates_reencrypted);
      if (options.cancelled && options.cancelled()) {
        return absl::CancelledError(
            absl::StrCat("rotation to data key version ", result.key_version,
                         " stopped after ", result.templates_reencrypted,
                         " templates; the next rotation finishes it"));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      {
        // Checked in the deleting transaction: a key still used stays.
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement select,
            connection_->Prepare(
                "SELECT version FROM data_keys WHERE version <> ?1 AND NOT "
                "EXISTS (SELECT 1 FROM templates WHERE key_version = "
                "data_keys.version) ORDER BY version"));
        select.BindInt(1, current_version_);
        while (true) {
          HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
          if (!row) break;
          result.retired_versions.push_back(select.Int(0));
        }
      }
      for (int64_t version : result.retired_versions) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement erase,
            connection_->Prepare("DELETE FROM data_keys WHERE version = ?1"));
        erase.BindInt(1, version);
        HAWIYA_STORE_RETURN_IF_ERROR(erase.Run());
      }
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      for (int64_t version : result.retired_versions) {
        data_keys_.erase(version);
      }
      // The WAL still holds the old ciphertexts and wrapped keys; best
      // effort, like ErasePerson's.
      CheckpointWal();
    }
    return result;
  }

  absl::StatusOr<DataKey> CurrentDataKey() override {
    absl::MutexLock lock(&mu_);
    HAWIYA_STORE_ASSIGN_OR_RETURN(const AeadKey* key,
                                  DataKeyOf(current_version_));
    return DataKey{current_version_, key->bytes()};
  }

  absl::StatusOr<RewrapKeysResult> RewrapDataKeys(
      const RewrapKeysOptions& options) override {
    absl::StatusOr<AeadKey> new_kek = LoadKeyFile(options.new_key_file);
    if (!new_kek.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("new_", new_kek.status().message()));
    }
    RewrapKeysResult result;
    result.key_check = KeyCheckValue(*new_kek);
    absl::MutexLock lock(&mu_);
    result.previous_key_check = KeyCheckValue(*kek_);
    if (result.key_check == result.previous_key_check) {
      return absl::FailedPreconditionError(
          absl::StrCat("new_key_file ", options.new_key_file,
                       ": is the key-encryption key in use already (key check ",
                       result.key_check, ")"));
    }
    {
      Transaction txn(connection_.get());
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
      // Read back from the table, not from data_keys_: every row the store
      // holds is re-wrapped, and one the old key does not open stops the
      // rotation before anything changes.
      std::vector<std::pair<int64_t, std::string>> rewrapped;
      HAWIYA_STORE_RETURN_IF_ERROR(ForEachDataKey(
          [&](int64_t version, const std::string& bytes) -> absl::Status {
            HAWIYA_STORE_ASSIGN_OR_RETURN(
                std::string wrapped, new_kek->Seal(DataKeyAad(version), bytes));
            rewrapped.emplace_back(version, std::move(wrapped));
            return absl::OkStatus();
          },
          [](int64_t version) {
            return absl::DataLossError(absl::StrCat(
                "store: data key version ", version,
                " does not unwrap under the current key-encryption key; "
                "nothing was re-wrapped"));
          }));
      for (const auto& [version, wrapped] : rewrapped) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement update,
            connection_->Prepare(
                "UPDATE data_keys SET wrapped = ?2 WHERE version = ?1"));
        update.BindInt(1, version).BindBlob(2, wrapped);
        HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
      }
      // The receipt signing keys are sealed by the same key-encryption
      // key: re-sealed in the same transaction.
      std::vector<std::pair<std::string, std::string>> resealed;
      {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement select,
            connection_->Prepare(
                "SELECT key_id, sealed_private_key FROM signing_keys WHERE "
                "length(sealed_private_key) > 0"));
        while (true) {
          HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
          if (!row) break;
          const std::string key_id = select.Text(0);
          absl::StatusOr<std::string> bytes =
              kek_->Open(SigningKeyAad(key_id), select.Blob(1));
          if (!bytes.ok()) {
            return absl::DataLossError(absl::StrCat(
                "store: signing key ", key_id,
                " does not open under the current key-encryption key; "
                "nothing was re-wrapped"));
          }
          absl::StatusOr<std::string> sealed =
              new_kek->Seal(SigningKeyAad(key_id), *bytes);
          OPENSSL_cleanse(bytes->data(), bytes->size());
          if (!sealed.ok()) return sealed.status();
          resealed.emplace_back(key_id, *std::move(sealed));
        }
      }
      for (const auto& [key_id, sealed] : resealed) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(
            Statement update,
            connection_->Prepare("UPDATE signing_keys SET sealed_private_key "
                                 "= ?2 WHERE key_id = ?1"));
        update.BindText(1, key_id).BindBlob(2, sealed);
        HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
      }
      HAWIYA_STORE_RETURN_IF_ERROR(SetMeta("kek_check", result.key_check));
      HAWIYA_STORE_RETURN_IF_ERROR(
          SetMeta("kek_previous_check", result.previous_key_check));
      HAWIYA_STORE_RETURN_IF_ERROR(
          SetMeta("kek_rotate_time_us", absl::StrCat(NowMicros())));
      if (options.before_commit) options.before_commit();
      HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
      result.data_keys = static_cast<int64_t>(rewrapped.size());
    }
    // Only once committed: a data key made from now on is wrapped by the
    // key the table is wrapped by.
    kek_ = *std::move(new_kek);
    key_report_.key_file = options.new_key_file;
    key_report_.key_check = result.key_check;
    // The WAL still holds the data keys wrapped by the old key; best effort.
    CheckpointWal();
    return result;
  }

  absl::StatusOr<DataKey> GetDataKey(int64_t version) override {
    absl::MutexLock lock(&mu_);
    auto it = data_keys_.find(version);
    if (it == data_keys_.end()) {
      return absl::NotFoundError(
          absl::StrCat("key_version: no data key ", version));
    }
    return DataKey{version, it->second.bytes()};
  }

  absl::StatusOr<std::vector<SigningKeyRecord>> SigningKeys() override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    std::vector<SigningKeyRecord> keys;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              "SELECT key_id, public_key, sealed_private_key, valid_from_us, "
              "valid_until_us FROM signing_keys ORDER BY valid_from_us, "
              "key_id"));
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        SigningKeyRecord key;
        key.key_id = select.Text(0);
        key.public_key = select.Blob(1);
        key.valid_from_us = select.Int(3);
        key.valid_until_us = select.Int(4);
        if (key.valid_until_us == 0) {
          absl::StatusOr<std::string> private_key =
              kek_->Open(SigningKeyAad(key.key_id), select.Blob(2));
          if (!private_key.ok()) {
            return absl::DataLossError(
                absl::StrCat("store: signing key ", key.key_id,
                             " does not open under the key-encryption key"));
          }
          key.private_key = *std::move(private_key);
        }
        keys.push_back(std::move(key));
      }
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return keys;
  }

  absl::Status AddSigningKey(const SigningKeyRecord& key) override {
    absl::MutexLock lock(&mu_);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        std::string sealed,
        kek_->Seal(SigningKeyAad(key.key_id), key.private_key));
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement retire,
          connection_->Prepare(
              "UPDATE signing_keys SET valid_until_us = ?1, "
              "sealed_private_key = x'' WHERE valid_until_us = 0"));
      retire.BindInt(1, key.valid_from_us);
      HAWIYA_STORE_RETURN_IF_ERROR(retire.Run());
    }
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement insert,
          connection_->Prepare(
              "INSERT INTO signing_keys (key_id, public_key, "
              "sealed_private_key, valid_from_us, valid_until_us) VALUES "
              "(?1, ?2, ?3, ?4, 0)"));
      insert.BindText(1, key.key_id)
          .BindBlob(2, key.public_key)
          .BindBlob(3, sealed)
          .BindInt(4, key.valid_from_us);
      absl::Status s = insert.Run();
      if (!s.ok()) {
        if (insert.error_code() == SQLITE_CONSTRAINT_PRIMARYKEY) {
          return absl::AlreadyExistsError(
              absl::StrCat("key_id: ", key.key_id, " exists"));
        }
        return s;
      }
    }
    return txn.Commit();
  }

  absl::StatusOr<int64_t> ChargeQuota(absl::string_view principal,
                                      absl::string_view day, int64_t count,
                                      int64_t limit) override {
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    int64_t used = 0;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare("SELECT used FROM partner_quota WHERE "
                               "principal = ?1 AND day = ?2"));
      select.BindText(1, principal).BindText(2, day);
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (row) used = select.Int(0);
    }
    if (limit > 0 && used + count > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "daily_quota: principal ", principal, " has used ", used, " of its ",
          limit, " verifications for ", day, " (UTC); ", count, " more asked"));
    }
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement upsert,
          connection_->Prepare(
              "INSERT INTO partner_quota (principal, day, used) VALUES (?1, "
              "?2, ?3) ON CONFLICT (principal, day) DO UPDATE SET used = "
              "?3"));
      upsert.BindText(1, principal).BindText(2, day).BindInt(3, used + count);
      HAWIYA_STORE_RETURN_IF_ERROR(upsert.Run());
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return used + count;
  }

  absl::Status AppendAudit(absl::Span<AuditEvent> events) override {
    if (events.empty()) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
    const int64_t now = NowMicros();
    for (AuditEvent& event : events) {
      HAWIYA_STORE_RETURN_IF_ERROR(InsertAudit(&event, now).status());
    }
    return txn.Commit();
  }

  absl::StatusOr<AuditPage> ListAudit(const AuditQuery& query) override {
    if (query.page_size <= 0) {
      return absl::InvalidArgumentError("page_size: must be positive");
    }
    absl::MutexLock lock(&mu_);
    Transaction txn(connection_.get());
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kRead));
    AuditPage page;
    bool more = false;
    {
      // Two statements, so that the principal filter can use its index.
      const std::string sql = absl::StrCat(
          "SELECT seq, time_us, principal, role, method, subject_id, "
          "national_id, request_id, outcome, subject_ids, prev_hash, hash, "
          "purpose, decision, disclosed "
          "FROM audit WHERE seq > ?1 AND time_us >= ?3 AND time_us < ?4",
          query.principal.empty() ? "" : " AND principal = ?2",
          " ORDER BY seq LIMIT ?5");
      HAWIYA_STORE_ASSIGN_OR_RETURN(Statement select,
                                    connection_->Prepare(sql));
      select.BindInt(1, query.after_sequence)
          .BindInt(3, query.start_time_us)
          .BindInt(4, query.end_time_us > 0
                          ? query.end_time_us
                          : std::numeric_limits<int64_t>::max())
          .BindInt(5, static_cast<int64_t>(query.page_size) + 1);
      if (!query.principal.empty()) select.BindText(2, query.principal);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        if (static_cast<int>(page.records.size()) == query.page_size) {
          more = true;
          break;
        }
        AuditRecord record;
        record.sequence = select.Int(0);
        record.event.time_us = select.Int(1);
        record.event.principal = select.Text(2);
        record.event.role = select.Text(3);
        record.event.method = select.Text(4);
        record.event.subject_id = select.Text(5);
        record.event.national_id = select.Text(6);
        record.event.request_id = select.Text(7);
        record.event.outcome = static_cast<int>(select.Int(8));
        record.event.subject_ids = SplitSubjectIds(select.Text(9));
        record.prev_hash = select.Blob(10);
        record.hash = select.Blob(11);
        record.event.purpose = select.Text(12);
        record.event.decision = select.Text(13);
        record.event.disclosed = SplitSubjectIds(select.Text(14));
        page.records.push_back(std::move(record));
      }
    }
    if (more) page.last_sequence = page.records.back().sequence;
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    return page;
  }

 private:
  absl::StatusOr<const AeadKey*> DataKeyOf(int64_t version) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = data_keys_.find(version);
    if (it == data_keys_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("store: no data key version ", version));
    }
    return &it->second;
  }

  // Makes a data key, stores it wrapped by the KEK as `version`, inside the
  // caller's write transaction.
  absl::StatusOr<AeadKey> InsertDataKey(int64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(AeadKey key, AeadKey::Random());
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::string wrapped,
                                  kek_->Seal(DataKeyAad(version), key.bytes()));
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare("INSERT INTO data_keys (version, wrapped, "
                             "create_time_us) VALUES (?1, ?2, ?3)"));
    insert.BindInt(1, version).BindBlob(2, wrapped).BindInt(3, NowMicros());
    HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
    return key;
  }

  // The value of a meta row, if there is one.
  absl::StatusOr<std::optional<std::string>> MetaValue(absl::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare("SELECT value FROM meta WHERE key = ?1"));
    select.BindText(1, key);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(select.Text(0));
  }

  absl::Status SetMeta(absl::string_view key, absl::string_view value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement upsert,
        connection_->Prepare(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)"));
    upsert.BindText(1, key).BindText(2, value);
    return upsert.Run();
  }

  // Refuses a key file whose key is not the key-encryption key the store
  // recorded (meta kek_check), before trying it on the data keys, so that
  // the message can say which key is expected, and plainly so when the file
  // holds the key a rotation replaced (meta kek_previous_check). A store
  // with no record yet (made before key check values) is judged by
  // ReadDataKeys alone.
  absl::Status CheckKeyCheck(const std::string& key_file)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<std::string> expected,
                                  MetaValue("kek_check"));
    if (!expected.has_value()) return absl::OkStatus();
    const std::string actual = KeyCheckValue(*kek_);
    if (actual == *expected) return absl::OkStatus();
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<std::string> previous,
                                  MetaValue("kek_previous_check"));
    if (previous.has_value() && *previous == actual) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key_file ", key_file,
          ": does not unwrap the store's data keys: it holds the "
          "key-encryption key (key check ",
          actual,
          ") that a key-encryption key rotation replaced; the data keys are "
          "now wrapped by another key-encryption key (key check ",
          *expected,
          "): set key_file to the new key file; the store stays closed"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "key_file ", key_file, " (key check ", actual,
        "): does not unwrap the store's data keys: they are wrapped by "
        "another key-encryption key (key check ",
        *expected, "); wrong key file?; the store stays closed"));
  }

  // Records the key check value of the key-encryption key that has just
  // unwrapped every data key, if none is recorded yet (a new store, or one
  // made before key check values).
  absl::Status RecordKeyCheck() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<std::string> recorded,
                                  MetaValue("kek_check"));
    if (recorded.has_value()) return absl::OkStatus();
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare("INSERT OR IGNORE INTO meta (key, value) VALUES "
                             "('kek_check', ?1)"));
    insert.BindText(1, KeyCheckValue(*kek_));
    return insert.Run();
  }

  // Calls fn(version, key) for every data key row in version order, the key
  // unwrapped by the current key-encryption key (and wiped once fn returns);
  // a row that key does not unwrap stops the walk with refused(version).
  absl::Status ForEachDataKey(
      const std::function<absl::Status(int64_t, const std::string&)>& fn,
      const std::function<absl::Status(int64_t)>& refused)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT version, wrapped FROM data_keys ORDER BY version"));
    while (true) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) return absl::OkStatus();
      const int64_t version = select.Int(0);
      absl::StatusOr<std::string> bytes =
          kek_->Open(DataKeyAad(version), select.Blob(1));
      if (!bytes.ok()) return refused(version);
      const absl::Status status = fn(version, *bytes);
      OPENSSL_cleanse(bytes->data(), bytes->size());
      if (!status.ok()) return status;
    }
  }

  // Unwraps every data key; the highest version is the current one.
  absl::Status ReadDataKeys(const std::string& key_file)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_RETURN_IF_ERROR(ForEachDataKey(
        [this](int64_t version, const std::string& bytes) -> absl::Status {
          mu_.AssertHeld();  // called within ReadDataKeys
          HAWIYA_STORE_ASSIGN_OR_RETURN(AeadKey key, AeadKey::FromBytes(bytes));
          data_keys_.insert_or_assign(version, std::move(key));
          current_version_ = version;
          return absl::OkStatus();
        },
        [&key_file](int64_t version) {
          return absl::FailedPreconditionError(absl::StrCat(
              "key_file ", key_file, ": does not unwrap the store's data key ",
              "version ", version,
              ": it is not the key this store's data keys were wrapped with "
              "(wrong key file?); the store stays closed"));
        }));
    if (data_keys_.empty()) {
      return absl::InternalError("store: no data key after making one");
    }
    return absl::OkStatus();
  }

  // Decrypts a stored vector into `out`. key_version 0 (plaintext) is read
  // only while Open encrypts what an older version wrote (allow_plaintext);
  // after that such a row can only have been put there behind the store's
  // back, and is refused rather than trusted.
  absl::Status OpenVector(int64_t template_id, absl::string_view subject_id,
                          int64_t modality, int64_t position,
                          int64_t key_version, absl::string_view stored,
                          google::protobuf::RepeatedField<float>* out,
                          bool allow_plaintext = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (key_version == 0) {
      if (allow_plaintext) return DecodeVector(stored, out);
      return absl::DataLossError(absl::StrCat(
          "store: template ", template_id, " of ", subject_id,
          " is stored unencrypted (key_version 0) after the store encrypted "
          "every template: refused"));
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(const AeadKey* key, DataKeyOf(key_version));
    absl::StatusOr<std::string> bytes = key->Open(
        TemplateAad(template_id, subject_id, modality, position, key_version),
        stored);
    if (!bytes.ok()) {
      return absl::DataLossError(
          absl::StrCat("store: template ", template_id, " of ", subject_id,
                       " does not decrypt: ", bytes.status().message()));
    }
    absl::Status decoded = DecodeVector(*bytes, out);
    OPENSSL_cleanse(bytes->data(), bytes->size());
    return decoded;
  }

  // Re-seals under the current key up to `limit` (-1: all) templates with
  // template_id > after_template_id stored under another key (only_plaintext:
  // under none), in template id order, inside the caller's write
  // transaction. Returns how many; *last_id (if given) gets the last id done.
  absl::StatusOr<int64_t> ReencryptBatch(int64_t after_template_id,
                                         int64_t limit, bool only_plaintext,
                                         int64_t* last_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<SealedTemplate> rows;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              only_plaintext
                  ? "SELECT template_id, subject_id, modality, position, "
                    "key_version, vector FROM templates WHERE template_id > "
                    "?1 AND key_version = 0 ORDER BY template_id LIMIT ?2"
                  : "SELECT template_id, subject_id, modality, position, "
                    "key_version, vector FROM templates WHERE template_id > "
                    "?1 AND key_version <> ?3 ORDER BY template_id LIMIT ?2"));
      select.BindInt(1, after_template_id).BindInt(2, limit);
      if (!only_plaintext) select.BindInt(3, current_version_);
      while (true) {
        HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
        if (!row) break;
        rows.push_back({select.Int(0), select.Text(1), select.Int(2),
                        select.Int(3), select.Int(4), select.Blob(5)});
      }
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(const AeadKey* key,
                                  DataKeyOf(current_version_));
    google::protobuf::RepeatedField<float> vector;
    std::string encoded;
    for (SealedTemplate& row : rows) {
      HAWIYA_STORE_RETURN_IF_ERROR(OpenVector(
          row.template_id, row.subject_id, row.modality, row.position,
          row.key_version, row.vector, &vector, only_plaintext));
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          std::string sealed,
          key->Seal(TemplateAad(row.template_id, row.subject_id, row.modality,
                                row.position, current_version_),
                    VectorBytes(vector, &encoded)));
      // The plaintext copies do not outlive the row.
      OPENSSL_cleanse(vector.mutable_data(), vector.size() * sizeof(float));
      if (!encoded.empty()) OPENSSL_cleanse(encoded.data(), encoded.size());
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement update,
          connection_->Prepare("UPDATE templates SET vector = ?2, "
                               "key_version = ?3 WHERE template_id = ?1"));
      update.BindInt(1, row.template_id)
          .BindBlobRef(2, sealed)
          .BindInt(3, current_version_);
      HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
      if (last_id != nullptr) *last_id = row.template_id;
    }
    return static_cast<int64_t>(rows.size());
  }

  // Copies the WAL into the database and truncates it, so that pages it
  // held (old ciphertexts, plaintext of a migration) leave every file.
  // Best effort: another reader may hold an old snapshot.
  void CheckpointWal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    connection_->Exec("PRAGMA wal_checkpoint(TRUNCATE)").IgnoreError();
  }

  static absl::Status CheckNewPerson(const IdempotencyKey& key,
                                     const Person& person) {
    if (key.request_id.empty()) {
      return absl::InvalidArgumentError("request_id: must not be empty");
    }
    if (person.subject_id().empty()) {
      return absl::InvalidArgumentError("subject_id: must not be empty");
    }
    return absl::OkStatus();
  }

  // Names the batch item an error is about; see Store::CreatePersons.
  static absl::Status ItemError(size_t index, const absl::Status& status) {
    if (status.ok()) return status;
    return absl::Status(status.code(),
                        absl::StrCat("[", index, "].", status.message()));
  }

  // The body of CreatePerson, inside the caller's write transaction. A replay
  // writes nothing and returns the person as it is now.
  absl::StatusOr<WriteResult> InsertPerson(
      const IdempotencyKey& key, const Person& person,
      absl::Span<const Template> templates, int64_t now,
      const hawiya::v1::Case* dedup_case = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<WriteResult> replay,
                                  Replay(key));
    if (replay.has_value()) return *std::move(replay);

    HAWIYA_STORE_ASSIGN_OR_RETURN(std::string record, SerializeRecord(person));
    {
      // The table's keys judge a taken subject id or national id (the
      // failed insert changes nothing): looking both up first cost two index
      // searches per person of a batch.
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement insert,
          connection_->Prepare(
              "INSERT INTO persons (subject_id, national_id, issuing_country, "
              "state, version, create_time_us, update_time_us, record, "
              "birth_date) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?6, ?7)"));
      insert.BindText(1, person.subject_id())
          .BindText(2, person.national_id())
          .BindText(3, person.issuing_country())
          .BindInt(4, person.state())
          .BindInt(5, now)
          .BindBlobRef(6, record)
          .BindInt(7, BirthDate(person));
      if (absl::Status inserted = insert.Run(); !inserted.ok()) {
        switch (insert.error_code()) {
          case SQLITE_CONSTRAINT_PRIMARYKEY:
            return absl::AlreadyExistsError(absl::StrCat(
                "subject_id: ", person.subject_id(), " already exists"));
          case SQLITE_CONSTRAINT_UNIQUE:  // (issuing_country, national_id)
            return NationalIdTaken(person);
          default:
            return inserted;
        }
      }
    }

    HAWIYA_STORE_RETURN_IF_ERROR(
        WriteNameKeys(*connection_, person.subject_id(), &person));
    WriteResult result;
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        result.templates, InsertTemplates(person.subject_id(), templates));
    HAWIYA_STORE_RETURN_IF_ERROR(
        AppendChange(person.subject_id(), "create", now));
    // Reading the row back would cost two queries per person of a batch.
    result.person = AsInserted(person, now, templates);
    if (dedup_case != nullptr && !dedup_case->case_id().empty()) {
      HAWIYA_STORE_RETURN_IF_ERROR(
          InsertCase(*dedup_case, person.subject_id(), now));
      result.person.set_case_id(dedup_case->case_id());
    }
    HAWIYA_STORE_RETURN_IF_ERROR(RecordRequest(key, person.subject_id(), now));
    return result;
  }

  // A request_id committed before, by any write method (Enroll,
  // BatchEnroll, ReplaceTemplates and DecideCase share one key space).
  struct CommittedRequest {
    std::string subject_id;
    // The person it wrote was erased since (its response was dropped).
    bool erased = false;
  };

  // The request committed under key.request_id; nullopt if none.
  // ALREADY_EXISTS naming "request_id" if it was committed by another
  // method or with another fingerprint.
  absl::StatusOr<std::optional<CommittedRequest>> FindRequest(
      const IdempotencyKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare("SELECT method, fingerprint, length(response), "
                             "subject_id FROM idempotency WHERE request_id = "
                             "?1"));
    select.BindText(1, key.request_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return std::optional<CommittedRequest>();
    if (select.Text(0) != key.method || select.Blob(1) != key.fingerprint) {
      return absl::AlreadyExistsError(
          "request_id: already used for a different request");
    }
    CommittedRequest committed;
    committed.erased = select.Int(2) == 0;
    committed.subject_id = select.Text(3);
    return std::optional<CommittedRequest>(std::move(committed));
  }

  // The replayed result for a request_id already committed with the same
  // method and fingerprint; nullopt for a new one. The person is read as it
  // is now: the stored response names only the subject, so that a later
  // UpdatePerson leaves no stale copy of the record behind.
  absl::StatusOr<std::optional<WriteResult>> Replay(const IdempotencyKey& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<CommittedRequest> committed,
                                  FindRequest(key));
    if (!committed.has_value()) return std::optional<WriteResult>();
    std::optional<Person> person;
    if (!committed->erased) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(person, ReadPerson(committed->subject_id));
    }
    if (!person.has_value()) {
      return absl::FailedPreconditionError(
          "request_id: the person this request wrote has been erased; "
          "a new enrollment needs a new request_id");
    }
    WriteResult result;
    result.replayed = true;
    result.person = *std::move(person);
    return std::optional<WriteResult>(std::move(result));
  }

  // Commits key for subject_id. The stored response is a hawiya.v1.Person
  // holding only the subject id (see Replay).
  absl::Status RecordRequest(const IdempotencyKey& key,
                             absl::string_view subject_id, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string bytes = ResponseStub(subject_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare(
            "INSERT INTO idempotency (request_id, method, fingerprint, "
            "subject_id, response, create_time_us) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
    insert.BindText(1, key.request_id)
        .BindText(2, key.method)
        .BindBlobRef(3, key.fingerprint)
        .BindText(4, subject_id)
        .BindBlobRef(5, bytes)
        .BindInt(6, now);
    return insert.Run();
  }

  // Appends one audit record after the current head, in the open write
  // transaction; returns its sequence.
  absl::StatusOr<int64_t> InsertAudit(AuditEvent* event, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (event->time_us == 0) event->time_us = now;
    // Empty ids would not survive the comma-joined column.
    event->subject_ids.erase(
        std::remove(event->subject_ids.begin(), event->subject_ids.end(), ""),
        event->subject_ids.end());
    int64_t sequence = 1;
    std::string prev_hash = AuditGenesisHash();
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement head,
          connection_->Prepare(
              "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, head.Step());
      if (row) {
        sequence = head.Int(0) + 1;
        prev_hash = head.Blob(1);
      }
    }
    const std::string hash = AuditHash(sequence, prev_hash, *event);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare(
            "INSERT INTO audit (seq, time_us, principal, role, method, "
            "subject_id, national_id, request_id, outcome, subject_ids, "
            "prev_hash, hash, purpose, decision, disclosed) VALUES (?1, ?2, "
            "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"));
    insert.BindInt(1, sequence)
        .BindInt(2, event->time_us)
        .BindText(3, event->principal)
        .BindText(4, event->role)
        .BindText(5, event->method)
        .BindText(6, event->subject_id)
        .BindText(7, event->national_id)
        .BindText(8, event->request_id)
        .BindInt(9, event->outcome)
        .BindText(10, JoinSubjectIds(event->subject_ids))
        .BindBlob(11, prev_hash)
        .BindBlob(12, hash)
        .BindText(13, event->purpose)
        .BindText(14, event->decision)
        .BindText(15, JoinSubjectIds(event->disclosed));
    HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
    return sequence;
  }

  // Appends the write's audit record (outcome OK) and commits; the record
  // failing to append fails the write, which then rolls back.
  absl::Status CommitWithAudit(Transaction& txn, AuditWrite* audit, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t sequence = 0;
    if (audit != nullptr) {
      audit->event.outcome = 0;
      HAWIYA_STORE_ASSIGN_OR_RETURN(sequence, InsertAudit(&audit->event, now));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(txn.Commit());
    if (audit != nullptr) {
      audit->sequence = sequence;
      audit->first_change = connection_->appended_changes().first;
      audit->last_change = connection_->appended_changes().last;
    }
    return absl::OkStatus();
  }

  absl::Status AppendChange(absl::string_view subject_id,
                            absl::string_view kind, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare("INSERT INTO changes (subject_id, kind, time_us) "
                             "VALUES (?1, ?2, ?3)"));
    insert.BindText(1, subject_id).BindText(2, kind).BindInt(3, now);
    HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
    // seq is the rowid; within one write transaction the numbers follow on.
    Connection::AppendedChanges& appended = connection_->appended_changes();
    appended.last = sqlite3_last_insert_rowid(connection_->db());
    if (appended.first == 0) appended.first = appended.last;
    return absl::OkStatus();
  }

  absl::Status BumpVersion(absl::string_view subject_id, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement update,
        connection_->Prepare("UPDATE persons SET version = version + 1, "
                             "update_time_us = max(update_time_us, ?2) "
                             "WHERE subject_id = ?1"));
    update.BindText(1, subject_id).BindInt(2, now);
    return update.Run();
  }

  absl::StatusOr<std::vector<TemplateRecord>> InsertTemplates(
      absl::string_view subject_id, absl::Span<const Template> templates)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<TemplateRecord> records;
    records.reserve(templates.size());
    if (templates.empty()) return records;
    // The id is part of the sealed vector's AAD, so it is chosen here rather
    // than by the insert: the one AUTOINCREMENT would pick (above any id
    // ever used), which the insert then records in sqlite_sequence.
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        int64_t last_id,
        connection_->QueryInt(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE "
            "name = 'templates'), 0), COALESCE((SELECT MAX(template_id) "
            "FROM templates), 0))"));
    HAWIYA_STORE_ASSIGN_OR_RETURN(const AeadKey* key,
                                  DataKeyOf(current_version_));
    std::string encoded;
    for (const Template& t : templates) {
      const int64_t template_id = ++last_id;
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          std::string sealed,
          key->Seal(TemplateAad(template_id, subject_id, t.modality(),
                                t.position(), current_version_),
                    VectorBytes(t.vector(), &encoded)));
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement insert,
          connection_->Prepare(
              "INSERT INTO templates (template_id, subject_id, modality, "
              "position, quality, algorithm, vector, key_version) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
      insert.BindInt(1, template_id)
          .BindText(2, subject_id)
          .BindInt(3, t.modality())
          .BindInt(4, t.position())
          .BindInt(5, t.quality())
          .BindText(6, t.algorithm())
          .BindBlobRef(7, sealed)
          .BindInt(8, current_version_);
      HAWIYA_STORE_RETURN_IF_ERROR(insert.Run());
      TemplateRecord record;
      record.template_id = template_id;
      record.subject_id = std::string(subject_id);
      record.tmpl = t;
      records.push_back(std::move(record));
    }
    return records;
  }

  // NOT_FOUND if there is no such person; FAILED_PRECONDITION naming
  // `field` if its state is not one of `allowed`.
  absl::Status RequireState(absl::string_view field,
                            absl::string_view subject_id,
                            std::initializer_list<PersonState> allowed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT state FROM persons WHERE subject_id = ?1"));
    select.BindText(1, subject_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return NoPerson(subject_id);
    const auto state = static_cast<PersonState>(select.Int(0));
    if (std::find(allowed.begin(), allowed.end(), state) == allowed.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          field, ": person is ", hawiya::v1::PersonState_Name(state)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<int64_t>> ReadVersion(
      absl::string_view subject_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT version FROM persons WHERE subject_id = ?1"));
    select.BindText(1, subject_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return std::optional<int64_t>();
    return std::optional<int64_t>(select.Int(0));
  }

  // The subject holding person's (issuing_country, national_id), if any.
  absl::StatusOr<std::optional<std::string>> NationalIdHolder(
      const Person& person) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare("SELECT subject_id FROM persons WHERE "
                             "issuing_country = ?1 AND national_id = ?2"));
    select.BindText(1, person.issuing_country())
        .BindText(2, person.national_id());
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(select.Text(0));
  }

  // A case row: its record (without persons) and its bookkeeping.
  struct StoredCase {
    int64_t sequence = 0;
    std::string request_id;
    hawiya::v1::Case record;
  };

  static absl::Status NoCase(absl::string_view case_id) {
    return absl::NotFoundError(absl::StrCat("case_id: no case ", case_id));
  }

  static constexpr char kCaseColumns[] =
      "seq, case_id, subject_id, raised_by, create_time_us, candidates, "
      "decision, adjudicator, comment, decide_time_us, duplicate_of, "
      "merged_templates, request_id";

  static absl::StatusOr<StoredCase> CaseFromRow(const Statement& row) {
    StoredCase stored;
    stored.sequence = row.Int(0);
    hawiya::v1::Case& c = stored.record;
    if (!c.ParseFromString(row.Blob(5))) {
      return absl::InternalError(
          absl::StrCat("store: corrupt candidates of case ", row.Text(1)));
    }
    c.set_case_id(row.Text(1));
    c.mutable_person()->set_subject_id(row.Text(2));
    c.set_raised_by(row.Text(3));
    SetTimestamp(row.Int(4), c.mutable_create_time());
    c.set_decision(static_cast<hawiya::v1::Decision>(row.Int(6)));
    c.set_adjudicator(row.Text(7));
    c.set_comment(row.Text(8));
    if (row.Int(9) != 0) SetTimestamp(row.Int(9), c.mutable_decide_time());
    c.set_duplicate_of(row.Text(10));
    c.set_merged_templates(row.Int(11) != 0);
    stored.request_id = row.Text(12);
    return stored;
  }

  absl::StatusOr<std::optional<StoredCase>> ReadCase(absl::string_view case_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(absl::StrCat("SELECT ", kCaseColumns,
                                          " FROM cases WHERE case_id = ?1")));
    select.BindText(1, case_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return std::optional<StoredCase>();
    HAWIYA_STORE_ASSIGN_OR_RETURN(StoredCase stored, CaseFromRow(select));
    return std::optional<StoredCase>(std::move(stored));
  }

  // The new person's record (kept as a bare subject id if erased), and with
  // `candidates` every candidate's.
  absl::Status FillCasePersons(hawiya::v1::Case* c, bool candidates)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<Person> person,
                                  ReadPerson(c->person().subject_id()));
    if (person.has_value()) *c->mutable_person() = *std::move(person);
    if (!candidates) return absl::OkStatus();
    for (hawiya::v1::CaseCandidate& candidate : *c->mutable_candidates()) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          std::optional<Person> record,
          ReadPerson(candidate.candidate().subject_id()));
      if (record.has_value()) *candidate.mutable_person() = *std::move(record);
    }
    return absl::OkStatus();
  }

  absl::Status InsertCase(const hawiya::v1::Case& c,
                          absl::string_view subject_id, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Only the candidates' subject ids, scores and reasons are kept.
    hawiya::v1::Case candidates;
    for (const hawiya::v1::CaseCandidate& candidate : c.candidates()) {
      *candidates.add_candidates()->mutable_candidate() = candidate.candidate();
    }
    std::string bytes;
    if (!candidates.SerializeToString(&bytes)) {
      return absl::InternalError("store: cannot serialize case candidates");
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement insert,
        connection_->Prepare("INSERT INTO cases (case_id, subject_id, "
                             "raised_by, create_time_us, candidates) VALUES "
                             "(?1, ?2, ?3, ?4, ?5)"));
    insert.BindText(1, c.case_id())
        .BindText(2, subject_id)
        .BindText(3, c.raised_by())
        .BindInt(4, now)
        .BindBlobRef(5, bytes);
    return insert.Run();
  }

  // Moves a person to `state` (reason: the revoke reason, REVOKED only).
  absl::Status SetState(absl::string_view subject_id, PersonState state,
                        absl::string_view reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement update,
        connection_->Prepare(
            "UPDATE persons SET state = ?2, revoke_reason = CASE WHEN ?2 = 3 "
            "THEN ?3 ELSE NULL END, version = version + 1, "
            "update_time_us = max(update_time_us, ?4) WHERE subject_id = ?1"));
    update.BindText(1, subject_id)
        .BindInt(2, state)
        .BindText(3, reason)
        .BindInt(4, NowMicros());
    return update.Run();
  }

  // The template of a row selected as (template_id, modality, position,
  // quality, algorithm, vector, key_version, ...), its vector opened.
  absl::StatusOr<TemplateRecord> TemplateOfRow(Statement& row,
                                               std::string subject_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    TemplateRecord record;
    record.template_id = row.Int(0);
    record.subject_id = std::move(subject_id);
    record.tmpl.set_modality(static_cast<hawiya::v1::Modality>(row.Int(1)));
    record.tmpl.set_position(static_cast<uint32_t>(row.Int(2)));
    record.tmpl.set_quality(static_cast<uint32_t>(row.Int(3)));
    record.tmpl.set_algorithm(row.Text(4));
    HAWIYA_STORE_RETURN_IF_ERROR(OpenVector(
        record.template_id, record.subject_id, row.Int(1), row.Int(2),
        row.Int(6), row.Blob(5), record.tmpl.mutable_vector()));
    return record;
  }

  // Appends the subject's templates (any state), opened, in template_id
  // order.
  absl::Status ReadTemplates(const std::string& subject_id,
                             std::vector<TemplateRecord>* records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT template_id, modality, position, quality, algorithm, "
            "vector, key_version FROM templates WHERE subject_id = ?1 "
            "ORDER BY template_id"));
    select.BindText(1, subject_id);
    while (true) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      HAWIYA_STORE_ASSIGN_OR_RETURN(TemplateRecord record,
                                    TemplateOfRow(select, subject_id));
      records->push_back(std::move(record));
    }
    return absl::OkStatus();
  }

  // Reads a row selected with kPersonColumns, template counts excluded.
  static absl::StatusOr<Person> PersonFromRow(const Statement& row) {
    Person person;
    if (!person.ParseFromString(row.Blob(5))) {
      return absl::InternalError(
          absl::StrCat("store: corrupt record for ", row.Text(0)));
    }
    person.set_subject_id(row.Text(0));
    person.set_state(static_cast<PersonState>(row.Int(1)));
    person.set_version(row.Int(2));
    SetTimestamp(row.Int(3), person.mutable_create_time());
    SetTimestamp(row.Int(4), person.mutable_update_time());
    for (absl::string_view flag :
         absl::StrSplit(row.Text(6), ',', absl::SkipEmpty())) {
      person.add_flags(std::string(flag));
    }
    return person;
  }

  absl::Status FillTemplateCounts(Person* person)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare(
            "SELECT modality, COUNT(*) FROM templates WHERE subject_id = ?1 "
            "GROUP BY modality ORDER BY modality"));
    select.BindText(1, person->subject_id());
    person->clear_template_counts();
    while (true) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      hawiya::v1::TemplateCount* count = person->add_template_counts();
      count->set_modality(static_cast<hawiya::v1::Modality>(select.Int(0)));
      count->set_count(static_cast<uint32_t>(select.Int(1)));
    }
    return absl::OkStatus();
  }

  // The person with every output-only field, or nullopt.
  absl::StatusOr<std::optional<Person>> ReadPerson(absl::string_view subject_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<Person> person;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(absl::StrCat("SELECT ", kPersonColumns,
                                            " FROM persons WHERE "
                                            "subject_id = ?1")));
      select.BindText(1, subject_id);
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) return person;
      HAWIYA_STORE_ASSIGN_OR_RETURN(person, PersonFromRow(select));
    }
    HAWIYA_STORE_RETURN_IF_ERROR(FillTemplateCounts(&*person));
    HAWIYA_STORE_RETURN_IF_ERROR(FillCaseId(&*person));
    return person;
  }

  // Closes the open case of `subject_id`, if any, as WITHDRAWN by the
  // acting principal (audit's; none without audit) with `comment`, inside
  // the caller's write transaction. The audit record, if any, says so in
  // its decision ("WITHDRAWN") and names the case's candidates.
  absl::Status WithdrawCase(absl::string_view subject_id,
                            absl::string_view comment, AuditWrite* audit,
                            int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string case_id;
    {
      HAWIYA_STORE_ASSIGN_OR_RETURN(
          Statement select,
          connection_->Prepare(
              "SELECT case_id FROM cases WHERE subject_id = "
              "?1 AND decision = 0 ORDER BY seq DESC LIMIT 1"));
      select.BindText(1, subject_id);
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) return absl::OkStatus();
      case_id = select.Text(0);
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(std::optional<StoredCase> found,
                                  ReadCase(case_id));
    if (!found.has_value()) return NoCase(case_id);
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement update,
        connection_->Prepare("UPDATE cases SET decision = ?2, adjudicator = "
                             "?3, comment = ?4, decide_time_us = ?5 WHERE "
                             "case_id = ?1"));
    update.BindText(1, case_id)
        .BindInt(2, hawiya::v1::WITHDRAWN)
        .BindText(3, audit != nullptr ? audit->event.principal : "")
        .BindText(4, comment)
        .BindInt(5, now);
    HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
    if (audit != nullptr) {
      audit->event.decision = absl::StrCat(
          hawiya::v1::Decision_Name(hawiya::v1::WITHDRAWN), " ", case_id);
      for (const hawiya::v1::CaseCandidate& c : found->record.candidates()) {
        audit->event.subject_ids.push_back(c.candidate().subject_id());
      }
    }
    return absl::OkStatus();
  }

  // The open case of a pending person.
  absl::Status FillCaseId(Person* person) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (person->state() != hawiya::v1::PENDING_ADJUDICATION) {
      return absl::OkStatus();
    }
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection_->Prepare("SELECT case_id FROM cases WHERE subject_id = ?1 "
                             "AND decision = 0 ORDER BY seq DESC LIMIT 1"));
    select.BindText(1, person->subject_id());
    HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
    if (row) person->set_case_id(select.Text(0));
    return absl::OkStatus();
  }

  mutable absl::Mutex mu_;
  std::unique_ptr<Connection> connection_ ABSL_GUARDED_BY(mu_);
  // Set by LoadKeys (Open).
  std::optional<AeadKey> kek_ ABSL_GUARDED_BY(mu_);
  KeyReport key_report_ ABSL_GUARDED_BY(mu_);
  // Every data key the store holds, unwrapped; writes seal under
  // current_version_, the highest.
  std::map<int64_t, AeadKey> data_keys_ ABSL_GUARDED_BY(mu_);
  int64_t current_version_ ABSL_GUARDED_BY(mu_) = 0;
  const std::string path_;
  // One rotation at a time; taken before mu_.
  absl::Mutex rotate_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

// Migration 7: the name_keys of the persons stored before it.
absl::Status FillNameKeys(Connection& connection) {
  std::vector<Person> persons;
  {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection.Prepare("SELECT subject_id, record FROM persons WHERE "
                           "birth_date != 0"));
    while (true) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      Person& person = persons.emplace_back();
      if (!person.ParseFromString(select.Blob(1))) {
        return absl::InternalError(
            absl::StrCat("store: corrupt record for ", select.Text(0)));
      }
      person.set_subject_id(select.Text(0));
    }
  }
  for (const Person& person : persons) {
    HAWIYA_STORE_RETURN_IF_ERROR(
        WriteNameKeys(connection, person.subject_id(), &person));
  }
  return absl::OkStatus();
}

// Migration 6: persons.birth_date of the persons stored before it.
absl::Status FillBirthDates(Connection& connection) {
  std::vector<std::pair<std::string, int64_t>> dates;
  {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement select,
        connection.Prepare("SELECT subject_id, record FROM persons"));
    while (true) {
      HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      Person person;
      if (!person.ParseFromString(select.Blob(1))) {
        return absl::InternalError(
            absl::StrCat("store: corrupt record for ", select.Text(0)));
      }
      if (int64_t date = BirthDate(person); date != 0) {
        dates.emplace_back(select.Text(0), date);
      }
    }
  }
  for (const auto& [subject_id, date] : dates) {
    HAWIYA_STORE_ASSIGN_OR_RETURN(
        Statement update,
        connection.Prepare(
            "UPDATE persons SET birth_date = ?2 WHERE subject_id = ?1"));
    update.BindText(1, subject_id).BindInt(2, date);
    HAWIYA_STORE_RETURN_IF_ERROR(update.Run());
  }
  return absl::OkStatus();
}

// Brings the schema to kSchemaVersion in one transaction, so a crash mid-way
// leaves the previous version intact.
absl::Status Migrate(Connection& connection) {
  Transaction txn(&connection);
  HAWIYA_STORE_RETURN_IF_ERROR(txn.Begin(Transaction::Mode::kWrite));
  // Re-read under the write lock: another process may have migrated since.
  HAWIYA_STORE_ASSIGN_OR_RETURN(int64_t version,
                                connection.QueryInt("PRAGMA user_version"));
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: database schema version ", version,
        " is newer than this binary supports (", kSchemaVersion, ")"));
  }
  if (version < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: invalid database schema version ", version));
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  for (int64_t i = version; i < kSchemaVersion; ++i) {
    HAWIYA_STORE_RETURN_IF_ERROR(connection.Exec(kMigrations[i]));
    if (i == 5) HAWIYA_STORE_RETURN_IF_ERROR(FillBirthDates(connection));
    if (i == 6) HAWIYA_STORE_RETURN_IF_ERROR(FillNameKeys(connection));
  }
  HAWIYA_STORE_RETURN_IF_ERROR(
      connection.Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion)));
  return txn.Commit();
}

// Runs a PRAGMA that answers with its new value and checks the answer, since
// sqlite ignores a PRAGMA it cannot apply instead of failing.
absl::Status SetPragma(Connection& connection, absl::string_view pragma,
                       absl::string_view expected) {
  HAWIYA_STORE_ASSIGN_OR_RETURN(
      Statement stmt, connection.Prepare(absl::StrCat("PRAGMA ", pragma)));
  HAWIYA_STORE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row || stmt.Text(0) != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: PRAGMA ", pragma, " answered \"", row ? stmt.Text(0) : "",
        "\", expected \"", expected, "\""));
  }
  return stmt.Run();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(
    const StoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("path: must not be empty");
  }
  HAWIYA_STORE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection,
                                Connection::Open(options.path));

  // Refuse a newer schema before touching the file in any way.
  HAWIYA_STORE_ASSIGN_OR_RETURN(int64_t version,
                                connection->QueryInt("PRAGMA user_version"));
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: database schema version ", version,
        " is newer than this binary supports (", kSchemaVersion, ")"));
  }

  // A 512-d face template row is ~2.1 KB: alone on a 4 KiB page (half of
  // it empty, and written twice per commit, to the WAL and back), three to
  // an 8 KiB page. Only takes effect on a new, empty database; existing ones
  // keep their page size.
  HAWIYA_STORE_RETURN_IF_ERROR(
      connection->Exec(absl::StrCat("PRAGMA page_size = ", kPageSize)));
  HAWIYA_STORE_RETURN_IF_ERROR(connection->Exec("PRAGMA foreign_keys = ON"));
  HAWIYA_STORE_RETURN_IF_ERROR(
      SetPragma(*connection, "secure_delete = ON", "1"));
  HAWIYA_STORE_RETURN_IF_ERROR(
      SetPragma(*connection, "journal_mode = WAL", "wal"));
  // FULL also syncs the WAL on every commit, which WAL mode's default
  // (NORMAL) does not: a commit must survive power loss.
  HAWIYA_STORE_RETURN_IF_ERROR(connection->Exec("PRAGMA synchronous = FULL"));
  // sqlite's default cache (2 MiB) is smaller than one BatchEnroll of 1000
  // persons dirties (~5 MiB, a page per template): it spilled pages to the
  // WAL mid-transaction, wrote them again at commit and read index pages
  // back. A bound, not an allocation: pages are cached as they are used.
  HAWIYA_STORE_RETURN_IF_ERROR(
      connection->Exec(absl::StrCat("PRAGMA cache_size = -", kCacheKiB)));
  HAWIYA_STORE_ASSIGN_OR_RETURN(int64_t synchronous,
                                connection->QueryInt("PRAGMA synchronous"));
  HAWIYA_STORE_ASSIGN_OR_RETURN(int64_t foreign_keys,
                                connection->QueryInt("PRAGMA foreign_keys"));
  if (synchronous != 2 || foreign_keys != 1) {
    return absl::FailedPreconditionError(
        "store: cannot enable synchronous=FULL and foreign_keys");
  }

  HAWIYA_STORE_RETURN_IF_ERROR(Migrate(*connection));
  auto store =
      std::make_unique<SqliteStore>(std::move(connection), options.path);
  HAWIYA_STORE_RETURN_IF_ERROR(store->LoadKeys(options));
  HAWIYA_STORE_RETURN_IF_ERROR(store->ScrubStoredResponses());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace hawiya::enroll

#undef HAWIYA_STORE_ASSIGN_OR_RETURN_IMPL
#undef HAWIYA_STORE_ASSIGN_OR_RETURN
#undef HAWIYA_STORE_CONCAT
#undef HAWIYA_STORE_CONCAT_INNER
#undef HAWIYA_STORE_RETURN_IF_ERROR
