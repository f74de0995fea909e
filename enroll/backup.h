// Online backup and restore of a data folder's store (DATA_DIR/hawiya.db).
//
// A backup is a folder holding
//   hawiya.db  a consistent copy of the store, taken in one read
//              transaction (SQLite's VACUUM INTO) while a server may keep
//              writing: it holds every write committed before the copy
//              began and none after;
//   BACKUP     a manifest (text, "key: value" lines): when and from where,
//              the copy's SHA-256, person and template counts, the audit
//              chain's head, and the key check of the key-encryption key
//              (KEK) that wraps its data keys.
// The KEK itself is never in a backup (it is not in the store): a restored
// folder is served only with the same key_file. Gallery snapshots are not
// copied either (they are derived; the first start after a restore rebuilds
// the galleries from the store), nor the development PKI.
#ifndef HAWIYA_ENROLL_BACKUP_H_
#define HAWIYA_ENROLL_BACKUP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace hawiya::enroll {

struct BackupManifest {
  std::string created;  // RFC 3339, UTC
  std::string source;   // absolute path of the store copied
  int64_t schema_version = 0;
  int64_t bytes = 0;
  std::string sha256;  // of hawiya.db, lower-case hex
  int64_t persons = 0;
  int64_t templates = 0;
  int64_t audit_head_sequence = 0;
  std::string audit_head_hash;  // lower-case hex; empty for an empty log
  std::string kek_check;        // crypto.h KeyCheckValue; empty if none yet
};

// Copies data_dir's store into out_dir, which must not exist (it is
// created; its parent must exist), and writes the manifest. Does not take
// the data folder's lock and never writes to it: runs beside a live server.
// The copy is checked before it is reported: its integrity, and its audit
// chain, whose head the manifest records. NOT_FOUND if data_dir has no
// store; FAILED_PRECONDITION if out_dir exists.
absl::StatusOr<BackupManifest> BackupDataDir(const std::string& data_dir,
                                             const std::string& out_dir);

// Checks the backup in backup_dir (manifest, SHA-256, integrity, audit
// chain up to the recorded head) and installs its store as
// data_dir/hawiya.db. data_dir must not exist or be empty: a restore never
// overwrites a store. Returns the backup's manifest.
absl::StatusOr<BackupManifest> RestoreDataDir(const std::string& backup_dir,
                                              const std::string& data_dir);

// "persons P, templates T, audit head S, 1.2 MiB, sha256 ..." for the CLI.
std::string BackupSummary(const BackupManifest& manifest);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_BACKUP_H_
