#include "enroll/backup.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "enroll/audit.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;

constexpr char kStoreFile[] = "hawiya.db";
constexpr char kManifestFile[] = "BACKUP";
constexpr char kManifestFormat[] = "hawiya-backup 1";

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

absl::StatusOr<Db> OpenReadOnly(const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", raw ? sqlite3_errmsg(raw) : "cannot open"));
  }
  // A live server's checkpoints hold the file briefly.
  sqlite3_busy_timeout(db.get(), 10000);
  return db;
}

// Runs `sql` with `text_argument` bound to ?1.
absl::Status Exec(sqlite3* db, const std::string& sql,
                  const std::string& text_argument) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw);
  sqlite3_bind_text(stmt.get(), 1, text_argument.c_str(), -1, SQLITE_TRANSIENT);
  int step;
  while ((step = sqlite3_step(stmt.get())) == SQLITE_ROW) {
  }
  if (step != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  return absl::OkStatus();
}

// The first column of the first row as text ("" if no row).
absl::StatusOr<std::string> QueryText(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw);
  const int step = sqlite3_step(stmt.get());
  if (step == SQLITE_DONE) return std::string();
  if (step != SQLITE_ROW) {
    return absl::InternalError(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  const unsigned char* text = sqlite3_column_text(stmt.get(), 0);
  return text == nullptr ? std::string()
                         : std::string(reinterpret_cast<const char*>(text));
}

absl::StatusOr<int64_t> QueryInt(sqlite3* db, const std::string& sql) {
  absl::StatusOr<std::string> text = QueryText(db, sql);
  if (!text.ok()) return text.status();
  int64_t value = 0;
  if (!text->empty() && !absl::SimpleAtoi(*text, &value)) {
    return absl::InternalError(absl::StrCat(sql, ": not a number: ", *text));
  }
  return value;
}

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), buffer.size());
    EVP_DigestUpdate(ctx.get(), buffer.data(), in.gcount());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  return HashHex(absl::string_view(reinterpret_cast<char*>(digest), length));
}

// fsync of a file or folder: a backup reported done survives a crash.
absl::Status Sync(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) close(fd);
    return absl::InternalError(
        absl::StrCat(path, ": fsync: ", std::strerror(error)));
  }
  close(fd);
  return absl::OkStatus();
}

// What the manifest records of a store copy, read from the copy itself:
// its integrity is checked and its audit chain walked first.
absl::Status Describe(const std::string& db_path, const AuditAnchor& anchor,
                      BackupManifest* manifest) {
  absl::StatusOr<Db> db = OpenReadOnly(db_path);
  if (!db.ok()) return db.status();
  absl::StatusOr<std::string> integrity =
      QueryText(db->get(), "PRAGMA integrity_check");
  if (!integrity.ok()) return integrity.status();
  if (*integrity != "ok") {
    return absl::DataLossError(
        absl::StrCat(db_path, ": integrity check failed: ", *integrity));
  }
  absl::StatusOr<int64_t> schema = QueryInt(db->get(), "PRAGMA user_version");
  absl::StatusOr<int64_t> persons =
      QueryInt(db->get(), "SELECT count(*) FROM persons");
  absl::StatusOr<int64_t> templates =
      QueryInt(db->get(), "SELECT count(*) FROM templates");
  absl::StatusOr<std::string> kek_check =
      QueryText(db->get(), "SELECT value FROM meta WHERE key = 'kek_check'");
  for (const absl::Status& s : {schema.status(), persons.status(),
                                templates.status(), kek_check.status()}) {
    if (!s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(db_path, ": not a Hawiya store: ", s.message()));
    }
  }
  db->reset();
  absl::StatusOr<AuditVerification> audit =
      VerifyAuditDatabase(db_path, anchor);
  if (!audit.ok()) return audit.status();
  if (!audit->intact) {
    return absl::DataLossError(
        absl::StrCat(db_path, ": audit chain broken at record ",
                     audit->first_broken_sequence, ": ", audit->reason));
  }
  manifest->schema_version = *schema;
  manifest->persons = *persons;
  manifest->templates = *templates;
  manifest->kek_check = *kek_check;
  manifest->audit_head_sequence = audit->head_sequence;
  manifest->audit_head_hash = HashHex(audit->head_hash);
  std::error_code error;
  manifest->bytes = static_cast<int64_t>(fs::file_size(db_path, error));
  return absl::OkStatus();
}

std::string ManifestText(const BackupManifest& m) {
  return absl::StrCat(kManifestFormat, "\n",                       //
                      "created: ", m.created, "\n",                //
                      "source: ", m.source, "\n",                  //
                      "schema_version: ", m.schema_version, "\n",  //
                      "bytes: ", m.bytes, "\n",                    //
                      "sha256: ", m.sha256, "\n",                  //
                      "persons: ", m.persons, "\n",                //
                      "templates: ", m.templates, "\n",            //
                      "audit_head_sequence: ", m.audit_head_sequence, "\n",
                      "audit_head_hash: ", m.audit_head_hash, "\n",  //
                      "kek_check: ", m.kek_check, "\n");
}

absl::StatusOr<BackupManifest> ReadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": no backup manifest (is this a backup folder?)"));
  }
  std::string line;
  std::getline(in, line);
  if (line != kManifestFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     ": not a backup manifest of this version (first "
                     "line \"",
                     line.substr(0, 40), "\")"));
  }
  std::map<std::string, std::string> fields;
  while (std::getline(in, line)) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(line, absl::MaxSplits(": ", 1));
    fields[kv.first] = kv.second;
  }
  BackupManifest m;
  m.created = fields["created"];
  m.source = fields["source"];
  m.sha256 = fields["sha256"];
  m.audit_head_hash = fields["audit_head_hash"];
  m.kek_check = fields["kek_check"];
  for (auto [name, value] : std::vector<std::pair<const char*, int64_t*>>{
           {"schema_version", &m.schema_version},
           {"bytes", &m.bytes},
           {"persons", &m.persons},
           {"templates", &m.templates},
           {"audit_head_sequence", &m.audit_head_sequence}}) {
    if (!absl::SimpleAtoi(fields[name], value)) {
      return absl::DataLossError(
          absl::StrCat(path, ": ", name, ": not a number"));
    }
  }
  if (m.sha256.size() != 64) {
    return absl::DataLossError(absl::StrCat(path, ": sha256: missing"));
  }
  return m;
}

}  // namespace

absl::StatusOr<BackupManifest> BackupDataDir(const std::string& data_dir,
                                             const std::string& out_dir) {
  std::error_code error;
  const std::string source =
      fs::absolute(fs::path(data_dir) / kStoreFile, error)
          .lexically_normal()
          .string();
  if (!fs::exists(source, error)) {
    return absl::NotFoundError(absl::StrCat("data_dir: no store at ", source));
  }
  if (fs::exists(out_dir, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("out: ", out_dir,
                     " exists; a backup goes to a new "
                     "folder"));
  }
  if (!fs::create_directory(out_dir, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("out: cannot create ", out_dir, ": ", error.message()));
  }
  // The copy holds every identity record in clear (only templates are
  // sealed): the owner alone may read it.
  fs::permissions(out_dir, fs::perms::owner_all, error);
  const std::string copy = (fs::path(out_dir) / kStoreFile).string();
  const std::string partial = copy + ".partial";
  BackupManifest manifest;
  manifest.created =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  manifest.source = source;
  {
    absl::StatusOr<Db> db = OpenReadOnly(source);
    if (!db.ok()) return db.status();
    // One statement, one read transaction: a consistent copy that does not
    // hold up the server's writes (WAL readers never block writers).
    if (absl::Status s = Exec(db->get(), "VACUUM INTO ?1", partial); !s.ok()) {
      fs::remove(partial, error);
      return s;
    }
  }
  fs::permissions(partial, fs::perms::owner_read | fs::perms::owner_write,
                  error);
  if (absl::Status s = Sync(partial); !s.ok()) return s;
  if (absl::Status s = Describe(partial, AuditAnchor(), &manifest); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> sha256 = FileSha256(partial);
  if (!sha256.ok()) return sha256.status();
  manifest.sha256 = *sha256;
  fs::rename(partial, copy, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat(copy, ": rename: ", error.message()));
  }
  // The manifest last: a folder with one is a finished backup.
  const std::string manifest_path =
      (fs::path(out_dir) / kManifestFile).string();
  {
    std::ofstream out(manifest_path, std::ios::trunc);
    out << ManifestText(manifest);
    if (!out.flush()) {
      return absl::InternalError(absl::StrCat(manifest_path, ": cannot write"));
    }
  }
  if (absl::Status s = Sync(manifest_path); !s.ok()) return s;
  if (absl::Status s = Sync(out_dir); !s.ok()) return s;
  return manifest;
}

absl::StatusOr<BackupManifest> RestoreDataDir(const std::string& backup_dir,
                                              const std::string& data_dir) {
  std::error_code error;
  if (fs::exists(data_dir, error) && !fs::is_empty(data_dir, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: ", data_dir,
                     " is not empty; a restore never overwrites a store: "
                     "restore into a new folder"));
  }
  absl::StatusOr<BackupManifest> manifest =
      ReadManifest((fs::path(backup_dir) / kManifestFile).string());
  if (!manifest.ok()) return manifest.status();
  const std::string copy = (fs::path(backup_dir) / kStoreFile).string();
  absl::StatusOr<std::string> sha256 = FileSha256(copy);
  if (!sha256.ok()) return sha256.status();
  if (*sha256 != manifest->sha256) {
    return absl::DataLossError(absl::StrCat(copy, ": SHA-256 ", *sha256,
                                            " differs from the manifest's ",
                                            manifest->sha256));
  }
  // The chain must still reach the head the backup recorded: a copy cut
  // short (or edited and re-hashed) is refused.
  AuditAnchor anchor;
  if (manifest->audit_head_sequence > 0) {
    absl::StatusOr<std::string> head =
        HashFromHex("audit_head_hash", manifest->audit_head_hash);
    if (!head.ok()) return head.status();
    anchor = {manifest->audit_head_sequence, *std::move(head)};
  }
  BackupManifest found;
  if (absl::Status s = Describe(copy, anchor, &found); !s.ok()) return s;
  fs::create_directories(data_dir, error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data_dir: cannot create ", data_dir, ": ", error.message()));
  }
  fs::permissions(data_dir, fs::perms::owner_all, error);
  const std::string target = (fs::path(data_dir) / kStoreFile).string();
  const std::string partial = target + ".partial";
  fs::copy_file(copy, partial, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat(partial, ": copy: ", error.message()));
  }
  if (absl::Status s = Sync(partial); !s.ok()) return s;
  fs::rename(partial, target, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat(target, ": rename: ", error.message()));
  }
  if (absl::Status s = Sync(data_dir); !s.ok()) return s;
  return manifest;
}

std::string BackupSummary(const BackupManifest& m) {
  return absl::StrFormat(
      "persons %d, templates %d, audit head %d, %.1f MiB, sha256 %s, key "
      "check %s",
      m.persons, m.templates, m.audit_head_sequence,
      static_cast<double>(m.bytes) / (1 << 20), m.sha256,
      m.kek_check.empty() ? "(none)" : m.kek_check);
}

}  // namespace hawiya::enroll
