// Store: the durable system of record for persons, templates and
// idempotency keys. Every method is one transaction: it commits whole or
// leaves nothing behind, and once it returns OK its effect survives a crash
// (kill -9, power loss) of the process.
//
// The store does not validate records (see validation.h); it enforces
// uniqueness, versions and idempotency, and reports conflicts with canonical
// codes whose message names the field.
//
// Encryption at rest: template vectors are stored sealed with AES-256-GCM
// under a data key (see crypto.h); data keys are stored wrapped by the
// key-encryption key in StoreOptions::key_file. No plaintext vector is
// written to the database or its WAL.
//
// Audit: the store keeps the hash-chained audit log (audit.h). Each write
// method takes the AuditWrite of the call it serves (null: none, for tools
// and tests) and appends its event, with outcome OK, in the write's own
// transaction: the change and its record commit together or not at all, and
// a write whose record cannot be appended fails having written nothing. A
// replay (which changes nothing) still commits its record. The store sets
// the event's time_us (CreatePerson also its subject_id, CreatePersons its
// subject_ids: the subjects written or replayed); once the record is
// committed it sets the AuditWrite's `sequence`.
//
// Thread safety: all methods may be called concurrently.
#ifndef HAWIYA_ENROLL_STORE_H_
#define HAWIYA_ENROLL_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "enroll/audit.h"
#include "hawiya/v1/adjudication.pb.h"
#include "hawiya/v1/types.pb.h"

namespace hawiya::enroll {

struct StoreOptions {
  // SQLite database file; created (with its schema) if absent. Its folder
  // must exist.
  std::string path;
  // The key-encryption key file (32 raw bytes, no group/other permissions;
  // crypto.h) that wraps the store's data keys. Given, it must exist. Empty:
  // keys/kek.key in the database's folder, created on the first open of a
  // store without data keys: a development key, as readable as the data it
  // protects; production points key_file elsewhere.
  std::string key_file;
};

// What Open did about keys, for the start-up log.
struct KeyReport {
  std::string key_file;
  // Open created key_file (the development default).
  bool key_file_created = false;
  // Templates stored in plaintext by an older version that Open encrypted.
  int64_t templates_encrypted = 0;
  // KeyCheckValue (crypto.h) of the key in key_file: what start-up errors
  // and RotateKey quote, so an operator can tell key files apart.
  std::string key_check;
};

// A data key, for sealing what the store's data derive (gallery snapshots).
struct DataKey {
  int64_t version = 0;
  std::string key;  // 32 bytes; never log it
};

struct RotateKeyOptions {
  // Templates re-encrypted per transaction: writes wait at most one batch.
  int batch_rows = 500;
  // Checked between batches: true stops the rotation with CANCELLED (the
  // templates done so far stay done; the next rotation finishes the rest).
  std::function<bool()> cancelled;
  // Test seam: called after each committed batch with the templates
  // re-encrypted so far.
  std::function<void(int64_t)> after_batch;
};

struct RotateKeyResult {
  // The new current data key version.
  int64_t key_version = 0;
  int64_t templates_reencrypted = 0;
  // Data key versions deleted because no template uses them any more.
  std::vector<int64_t> retired_versions;
};

struct RewrapKeysOptions {
  // The new key-encryption key file: checked like StoreOptions::key_file
  // (32 raw bytes, no group/other permissions).
  std::string new_key_file;
  // Test seam: runs inside the transaction once every data key is
  // re-wrapped, just before it commits.
  std::function<void()> before_commit;
};

struct RewrapKeysResult {
  // Data keys re-wrapped under the new key-encryption key.
  int64_t data_keys = 0;
  // Key check values (crypto.h KeyCheckValue) of the new and the replaced
  // key-encryption keys.
  std::string key_check;
  std::string previous_key_check;
};

// An idempotency key: a write carrying a request_id already committed with
// the same fingerprint returns the committed result and writes nothing; with
// another fingerprint (or method) it is ALREADY_EXISTS naming "request_id".
// One key space for every write method, DecideCase included. The committed
// result is the subject it wrote, read as it is now: the store keeps no
// copy of the person record with the key.
struct IdempotencyKey {
  std::string request_id;   // REQUIRES: non-empty
  std::string method;       // e.g. "Enroll"
  std::string fingerprint;  // digest of the whole request
};

// A stored template, vector included (never leaves the server).
struct TemplateRecord {
  int64_t template_id = 0;  // unique forever; the gallery label
  std::string subject_id;
  hawiya::v1::Template tmpl;
};

// The result of a write that may have been a replay.
struct WriteResult {
  hawiya::v1::Person person;
  // Templates written by this call (empty on replay).
  std::vector<TemplateRecord> templates;
  bool replayed = false;
};

// One person of a CreatePersons batch.
struct NewPerson {
  IdempotencyKey key;
  // Carries subject_id and state, as for CreatePerson.
  hawiya::v1::Person person;
  std::vector<hawiya::v1::Template> templates;
  // Deduplication raised a case (case_id set): person.state must be
  // PENDING_ADJUDICATION and the case row (case_id, raised_by, candidates)
  // is written in the same transaction. Unused if the item replays.
  hawiya::v1::Case dedup_case;
};

// An adjudicator's decision on a case (Store::DecideCase).
struct CaseDecision {
  std::string case_id;
  hawiya::v1::Decision decision = hawiya::v1::DECISION_UNSPECIFIED;
  std::string adjudicator;  // the principal
  std::string comment;
  std::string request_id;
  // Digest of the whole request (as IdempotencyKey::fingerprint): the
  // request_id is committed with it, in the key space of every write.
  std::string fingerprint;
  // DUPLICATE: a candidate of the case; empty: the best one.
  std::string duplicate_of;
  bool merge_templates = false;
  // With merge_templates: checks the templates duplicate_of would hold
  // after the merge (its own, then the merged ones); an error refuses the
  // decision, which then writes nothing. Null: no check.
  std::function<absl::Status(absl::Span<const hawiya::v1::Template>)>
      check_merged;
};

struct DecideResult {
  // As GetCase returns it, after the decision.
  hawiya::v1::Case decided;
  // The same request_id and decision were already committed: nothing was
  // written (but the audit record).
  bool replayed = false;
  // Subjects whose state or templates the decision changed (galleries to
  // bring up to date).
  std::vector<std::string> changed_subjects;
};

struct CasePage {
  std::vector<hawiya::v1::Case> cases;  // oldest first
  // sequences[i]: the position of cases[i] (what a page token continues
  // after).
  std::vector<int64_t> sequences;
  // The last case's position when more may follow, else 0.
  int64_t last_sequence = 0;
};

// One row of the change log: every committed write that changes a person
// appends one, numbered by a sequence that only grows and is never reused.
struct Change {
  int64_t sequence = 0;
  std::string subject_id;
  std::string kind;  // "create", "update", "replace_templates", ...
  int64_t time_us = 0;
};

// The subjects changed after a sequence number, as of one read.
struct ChangedSubjects {
  // The sequence the list runs up to: ChangeSequence() at the read.
  int64_t sequence = 0;
  // Each subject once, in the order of its first change.
  std::vector<std::string> subject_ids;
};

struct PersonPage {
  std::vector<hawiya::v1::Person> persons;
  // Subject id of the last person when more may follow, else empty.
  std::string last_subject_id;
};

// Which audit records ListAudit returns: sequence > after_sequence, and if
// set, principal equal and time_us in [start_time_us, end_time_us).
struct AuditQuery {
  int64_t after_sequence = 0;
  std::string principal;
  int64_t start_time_us = 0;  // 0: no lower bound
  int64_t end_time_us = 0;    // 0: no upper bound
  int page_size = 100;        // REQUIRES: positive
};

struct AuditPage {
  std::vector<AuditRecord> records;  // by sequence
  // The last record's sequence when more may follow, else 0.
  int64_t last_sequence = 0;
};

// A write's audit record: the event to append in the write's transaction,
// and the sequence it got once committed (0 if it was not).
struct AuditWrite {
  AuditEvent event;
  int64_t sequence = 0;
  // Once committed, the change-log sequences of the first and the last
  // change the write appended (both 0 if none, as for a replay): a caller
  // that keeps derived data in step with the store (the registry's
  // galleries) tells from them whether another writer's changes came in
  // between.
  int64_t first_change = 0;
  int64_t last_change = 0;
};

// A gallery snapshot the registry wrote from this store (snapshots.h),
// recorded so that a snapshot file is only trusted if the store knows it.
struct SnapshotRecord {
  // The change sequence the snapshot's galleries hold, which names its file.
  int64_t sequence = 0;
  // matcher::SnapshotFileWriter::file_id(): random per file.
  std::string file_id;
  int64_t create_time_us = 0;
};

// A receipt signing key (enroll/receipts.h): Ed25519, raw 32-byte halves.
// The private half is stored sealed (AES-256-GCM) by the key-encryption
// key, and re-sealed by RewrapDataKeys with the data keys.
struct SigningKeyRecord {
  // "ed25519:" + hex of the first 8 bytes of SHA-256(public_key).
  std::string key_id;
  std::string public_key;
  // Only for the current key (valid_until_us 0), as read; never log it.
  std::string private_key;
  int64_t valid_from_us = 0;
  int64_t valid_until_us = 0;  // 0: current
};

class Store {
 public:
  // Opens (creating or migrating) the database. FAILED_PRECONDITION if its
  // schema is newer than this binary knows, or if the key file is missing,
  // unsafe (permissions, size) or not the one that wrapped the store's data
  // keys: the store never opens with templates it cannot read. The store
  // records its key-encryption key's check value (crypto.h), so the message
  // for another key file names both keys' check values, and says so if the
  // file holds a key that RewrapDataKeys replaced. Templates an
  // older version stored in plaintext are encrypted, in one transaction.
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const StoreOptions& options);

  virtual ~Store() = default;

  // What Open did about keys.
  virtual KeyReport key_report() const = 0;

  // Inserts a new person with its templates. `person` carries subject_id
  // and state; the store sets version = 1 and the create/update times.
  // ALREADY_EXISTS ("person.national_id: ...") if the national id is taken
  // in that issuing country.
  // With dedup_case (case_id set), person.state must be
  // PENDING_ADJUDICATION and the case is opened in the same transaction (a
  // replay writes no case). The returned person carries case_id.
  virtual absl::StatusOr<WriteResult> CreatePerson(
      const IdempotencyKey& key, const hawiya::v1::Person& person,
      absl::Span<const hawiya::v1::Template> templates,
      AuditWrite* audit = nullptr,
      const hawiya::v1::Case* dedup_case = nullptr) = 0;

  // CreatePerson for each item in order, all in one transaction: either
  // every item is written (or replayed) or nothing is. Replays, conflicts
  // and uniqueness are judged as if the items were created one after the
  // other, so an item may replay or collide with an earlier one. Errors about
  // one item start with its index, "[i].", so a caller can prefix the name
  // of its list ("requests" + "[3].person.national_id: ...").
  virtual absl::StatusOr<std::vector<WriteResult>> CreatePersons(
      absl::Span<const NewPerson> persons, AuditWrite* audit = nullptr) = 0;

  // Person reads fill the output-only fields, template_counts included.
  // NOT_FOUND naming "subject_id".
  virtual absl::StatusOr<hawiya::v1::Person> GetPerson(
      absl::string_view subject_id) = 0;
  // NOT_FOUND naming "national_id".
  virtual absl::StatusOr<hawiya::v1::Person> FindPerson(
      absl::string_view national_id, absl::string_view issuing_country) = 0;

  // Writes `person` (the full new record, subject_id naming it) if the stored
  // version equals expected_version; bumps version and update_time.
  // NOT_FOUND, FAILED_PRECONDITION ("person.subject_id: person is
  // REVOKED": a withdrawn record is kept as it was withdrawn), ABORTED
  // ("expected_version: ..."), ALREADY_EXISTS ("person.national_id: ...").
  virtual absl::StatusOr<hawiya::v1::Person> UpdatePerson(
      const hawiya::v1::Person& person, int64_t expected_version,
      AuditWrite* audit = nullptr) = 0;

  // Replaces every template of the subject; bumps version. NOT_FOUND;
  // FAILED_PRECONDITION ("subject_id: person is REVOKED") unless the person
  // is ACTIVE or PENDING_ADJUDICATION (a replay still answers, with the
  // person as it is now).
  // With dedup_case (case_id set) the person also becomes
  // PENDING_ADJUDICATION and the case is opened, in the same transaction.
  virtual absl::StatusOr<WriteResult> ReplaceTemplates(
      const IdempotencyKey& key, absl::string_view subject_id,
      absl::Span<const hawiya::v1::Template> templates,
      AuditWrite* audit = nullptr,
      const hawiya::v1::Case* dedup_case = nullptr) = 0;

  // Marks the person REVOKED with the reason; templates stay on disk. Its
  // open case, if any, is closed in the same transaction: decision
  // WITHDRAWN, adjudicator the audit's principal, comment "person revoked:
  // <reason>"; the audit event's decision becomes "WITHDRAWN <case_id>" and
  // its subject_ids the case's candidates. NOT_FOUND.
  virtual absl::Status RevokePerson(absl::string_view subject_id,
                                    absl::string_view reason,
                                    AuditWrite* audit = nullptr) = 0;

  // Deletes the person and its templates with secure delete, then
  // checkpoints the WAL so no template bytes remain in any file. Its
  // idempotency records stay as tombstones without their responses: replaying
  // one is FAILED_PRECONDITION naming "request_id". Its open case is
  // withdrawn as by RevokePerson (comment "person erased"; the case keeps
  // the subject id, GetCase shows it without a record) and its name keys
  // and DISTINCT pairs are deleted. NOT_FOUND.
  virtual absl::Status ErasePerson(absl::string_view subject_id,
                                   AuditWrite* audit = nullptr) = 0;

  // Persons with subject_id > after_subject_id in subject_id order, at most
  // page_size of them; state UNSPECIFIED means every state.
  virtual absl::StatusOr<PersonPage> ListPersons(
      hawiya::v1::PersonState state, int page_size,
      absl::string_view after_subject_id) = 0;

  // Calls fn for every template of every ACTIVE person, in template_id
  // order; stops at and returns the first error fn returns.
  virtual absl::Status ForEachActiveTemplate(
      const std::function<absl::Status(TemplateRecord&&)>& fn) = 0;

  // Person counts per state (states with no person are absent).
  virtual absl::StatusOr<std::map<hawiya::v1::PersonState, int64_t>>
  CountPersons() = 0;

  // What gallery snapshots are checked and replayed against.

  // A random id made when the database was created (or migrated to schema
  // 2), so that a snapshot made from another data dir is recognised. A copy
  // of the file (a backup) keeps it.
  virtual absl::StatusOr<std::string> StoreId() = 0;

  // The sequence of the latest change, 0 if there is none.
  virtual absl::StatusOr<int64_t> ChangeSequence() = 0;

  // The change with this sequence; NOT_FOUND naming "sequence" if there is
  // none.
  virtual absl::StatusOr<Change> GetChange(int64_t sequence) = 0;

  // The subjects with a change whose sequence is greater than `after`.
  virtual absl::StatusOr<ChangedSubjects> SubjectsChangedAfter(
      int64_t after) = 0;

  // Records a snapshot written (replacing the record of an earlier one at
  // its sequence), in one transaction.
  virtual absl::Status RecordSnapshot(const SnapshotRecord& snapshot) = 0;
  // The snapshot recorded at this sequence; NOT_FOUND naming "sequence" if
  // there is none.
  virtual absl::StatusOr<SnapshotRecord> GetSnapshot(int64_t sequence) = 0;
  // Deletes the records of every snapshot whose sequence is not in `kept`
  // (the files left). Returns how many were deleted.
  virtual absl::StatusOr<int64_t> ForgetSnapshots(
      absl::Span<const int64_t> kept) = 0;

  // Deletes the change rows with a sequence below `sequence`, the oldest a
  // kept snapshot still needs (GetChange(sequence) and SubjectsChangedAfter
  // of it and later keep working; ChangeSequence and the numbering of later
  // changes are unaffected). Deletes in short transactions so that writes
  // are not held up behind a long one. Returns how many rows were deleted.
  virtual absl::StatusOr<int64_t> PruneChangesBefore(int64_t sequence) = 0;

  // The current templates of those of `subject_ids` that are ACTIVE (a
  // subject in another state, or gone, has none here), grouped by subject in
  // template_id order; one read transaction.
  virtual absl::StatusOr<std::vector<TemplateRecord>> ActiveTemplatesOf(
      absl::Span<const std::string> subject_ids) = 0;

  // Deduplication and adjudication (proto/hawiya/v1/adjudication.proto).

  // ACTIVE or PENDING_ADJUDICATION persons other than person.subject_id
  // that hold person's national_id under another issuing country, or
  // person's date of birth and a name blocking key of one of its names
  // (names::NameBlockingKeys): every person of that date whose name
  // names::CompareNames could match, and few others, however many share the
  // date. Indexed; the caller compares names.
  virtual absl::StatusOr<std::vector<hawiya::v1::Person>> DemographicCandidates(
      const hawiya::v1::Person& person) = 0;

  // The subjects an adjudicator decided are not the same person as
  // `subject_id` (DISTINCT: the new person against each candidate of its
  // case, remembered both ways), erased subjects excepted.
  virtual absl::StatusOr<std::vector<std::string>> AdjudicatedDistinct(
      absl::string_view subject_id) = 0;

  // The templates of every PENDING_ADJUDICATION person, grouped by subject.
  virtual absl::StatusOr<std::vector<TemplateRecord>> PendingTemplates() = 0;

  // A case with the new person and every candidate's record (a candidate
  // erased since has none). NOT_FOUND naming "case_id".
  virtual absl::StatusOr<hawiya::v1::Case> GetCase(
      absl::string_view case_id) = 0;

  // Cases after position `after_sequence`, oldest first, with the new
  // person's record but not the candidates'; open ones only unless
  // include_decided. REQUIRES: page_size > 0.
  virtual absl::StatusOr<CasePage> ListCases(bool include_decided,
                                             int page_size,
                                             int64_t after_sequence) = 0;

  // Decides an open case and applies it, in one transaction with the audit
  // record: DISTINCT makes the person ACTIVE and records it distinct from
  // every candidate (AdjudicatedDistinct); DUPLICATE revokes it ("duplicate
  // of S (case C)") and, with merge_templates, copies its templates to S
  // (re-sealed for S); FRAUD revokes it and flags every candidate
  // "fraud:<case_id>". The request_id is committed as the writes'
  // IdempotencyKeys are (method "DecideCase"): ALREADY_EXISTS naming
  // "request_id" if any write committed it for another request; the same
  // request again is a replay (the case as decided, nothing written but
  // the audit record). NOT_FOUND ("case_id"); FAILED_PRECONDITION naming
  // "case_id" if it is decided or withdrawn (unless a replay, or, for a
  // decision committed before request ids were shared, the same request_id
  // and decision) or its person is no longer pending, naming
  // "duplicate_of" if that was erased or is neither ACTIVE nor pending;
  // INVALID_ARGUMENT naming "duplicate_of" if that is not a candidate,
  // naming "decision" unless DISTINCT, DUPLICATE or FRAUD.
  virtual absl::StatusOr<DecideResult> DecideCase(
      const CaseDecision& decision, AuditWrite* audit = nullptr) = 0;

  // Key rotation, online: makes a new data key the current one (writes use
  // it from then on), re-encrypts every template under an older key in
  // batches of options.batch_rows (each batch one transaction, so a crash at
  // any point leaves every template readable under the version stored with
  // it), then deletes the data keys no template uses. An interrupted
  // rotation is finished by the next one. One rotation at a time.
  virtual absl::StatusOr<RotateKeyResult> RotateDataKey(
      const RotateKeyOptions& options) = 0;

  // Key-encryption key rotation: re-wraps every data key under the key in
  // options.new_key_file and records that key's check value, in one
  // transaction (a crash leaves the data keys all wrapped by the old key or
  // all by the new one). The data keys themselves, and so every template
  // and snapshot, are unchanged. From then on new data keys are wrapped by
  // the new key, and Open accepts only the new key file: the old one is
  // refused with a message saying it is the key a rotation replaced.
  // FAILED_PRECONDITION naming new_key_file if it is unusable (missing,
  // unsafe permissions, not 32 bytes) or is the current key.
  virtual absl::StatusOr<RewrapKeysResult> RewrapDataKeys(
      const RewrapKeysOptions& options) = 0;

  // The current data key; and the one of a version, NOT_FOUND naming
  // "key_version" if it does not exist (any more).
  virtual absl::StatusOr<DataKey> CurrentDataKey() = 0;
  virtual absl::StatusOr<DataKey> GetDataKey(int64_t version) = 0;

  // Receipt signing keys, oldest first; the current one (valid_until_us
  // 0) with its private key. DATA_LOSS if that does not open under the
  // key-encryption key.
  virtual absl::StatusOr<std::vector<SigningKeyRecord>> SigningKeys() = 0;
  // Makes `key` (valid_from_us set, valid_until_us ignored) the current
  // signing key and retires the previous one (valid_until_us = the new
  // key's valid_from_us; its private key is deleted, only the public one
  // stays), in one transaction. ALREADY_EXISTS naming
  // "key_id" if that id is taken.
  virtual absl::Status AddSigningKey(const SigningKeyRecord& key) = 0;

  // Partner daily quotas: adds `count` to the principal's counter for
  // `day` (UTC, YYYY-MM-DD) and returns the new total, in one transaction;
  // RESOURCE_EXHAUSTED naming "daily_quota" (and changing nothing) if the
  // total would exceed `limit` (> 0; 0 = no limit, only counted).
  virtual absl::StatusOr<int64_t> ChargeQuota(absl::string_view principal,
                                              absl::string_view day,
                                              int64_t count, int64_t limit) = 0;

  // The audit log.

  // Appends the records in order, in one transaction (one fsync); sets the
  // time_us of those without one.
  virtual absl::Status AppendAudit(absl::Span<AuditEvent> events) = 0;

  // A page of records matching the query, in sequence order.
  virtual absl::StatusOr<AuditPage> ListAudit(const AuditQuery& query) = 0;

  // The database file (for VerifyAuditDatabase, which reads it on a
  // connection of its own).
  virtual const std::string& path() const = 0;
};

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_STORE_H_
