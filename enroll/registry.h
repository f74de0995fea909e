// Registry: the domain service behind every v1 RPC. It validates requests,
// writes the store (one transaction per request) and keeps the galleries in
// step with it. Requests and responses are the v1 API messages, so the gRPC
// layer only moves them across the wire.
//
// Consistency: writes are serialised, and a write's gallery change is applied
// before the next write starts, so the galleries always equal what the store
// says is ACTIVE. Reads and matches run concurrently with each other.
//
// Audit: every request method takes the AuditActor of the call (who, with
// which role, which method) and appends one audit record (audit.h) before
// it returns. A successful write's record is committed in the write's own
// transaction; a read's, a match's and a failed request's through the
// AuditLog (group commit). A request whose record cannot be written fails
// (a successful write then writes nothing).
//
// Snapshots: the galleries are derived data, so instead of rebuilding them
// from every template in the store at each start, Open loads the newest
// usable snapshot under data_dir/snapshots (enroll/snapshots.h) and replays
// the store changes made after it; WriteSnapshot writes one. A snapshot is
// labelled with the change sequence its galleries hold, and recorded in the
// store; Open loads only a snapshot the store recorded.
//
// One process at a time: Open takes the data folder's lock
// (enroll/data_dir_lock.h), held until the registry closes. Should the
// store still be written by another writer (a tool on hawiya.db), the
// registry notices at its next write or snapshot (the change sequence does
// not follow on from its own) and brings the galleries up to the store.
#ifndef HAWIYA_ENROLL_REGISTRY_H_
#define HAWIYA_ENROLL_REGISTRY_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "enroll/audit_log.h"
#include "enroll/data_dir_lock.h"
#include "enroll/partner.h"
#include "enroll/store.h"
#include "enroll/validation.h"
#include "hawiya/v1/adjudication.pb.h"
#include "hawiya/v1/admin.pb.h"
#include "hawiya/v1/audit.pb.h"
#include "hawiya/v1/enrollment.pb.h"
#include "hawiya/v1/match.pb.h"
#include "hawiya/v1/partner.pb.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {

// Deduplication at enrollment (adjudication.proto; ServerConfig.dedup).
struct DedupOptions {
  bool enabled = true;
  // A biometric candidate is raised at a fused score >= threshold; 0: the
  // matcher's fused threshold of the modalities scored (Match::threshold).
  float threshold = 0.0f;
  // Candidates kept per case, best first.
  size_t max_candidates = 10;
  // Also raise the same national id under another issuing country, and the
  // same date of birth with a matching name (enroll/names.h).
  bool demographic_check = true;
};

struct RegistryOptions {
  // Folder of the embedded store (hawiya.db); created if absent.
  std::string data_dir;
  // The lock on data_dir, if the caller already holds it (a server takes it
  // before it writes anything in the folder, its development PKI included).
  // Null: Open takes it.
  std::shared_ptr<const DataDirLock> data_dir_lock;
  // StoreOptions::key_file: the key-encryption key file. Empty:
  // data_dir/keys/kek.key, created on first start (a development key).
  std::string key_file;
  std::vector<matcher::ModalitySpec> modalities = matcher::DefaultModalities();
  // How the matcher fuses per-modality scores (matcher/matcher.h).
  matcher::FusionOptions fusion;
  // Whether Open seeds the galleries from a snapshot in data_dir/snapshots
  // (else it rebuilds them from the store) and WriteSnapshot may write one.
  bool snapshots = true;
  // WriteSnapshot copies the galleries to memory while writes wait, and
  // writes the file after, if they take at most this many bytes; else it
  // writes the file while writes wait. Negative: half of the memory
  // available (/proc/meminfo) at the time.
  int64_t snapshot_buffer_bytes = -1;
  // Test seam: SnapshotFileWriter::Options::on_write of every snapshot.
  std::function<void(uint64_t)> snapshot_on_write;
  // The audit log to attach to the store as soon as it is open (before the
  // galleries load), so that a server can audit calls from its start; the
  // registry detaches it when it closes. Null: the registry makes its own.
  std::shared_ptr<AuditLog> audit_log;
  // The partners' data-sharing policies (PartnerService); none by default,
  // so every partner call is PERMISSION_DENIED until they are configured.
  PartnerPolicies partner_policies;
  // Test seam: the clock of partner answers (receipt times, the UTC day of
  // daily quotas) and of signing key validity.
  std::function<absl::Time()> clock = absl::Now;
  DedupOptions dedup;
  // What one person may hold (ServerConfig.limits).
  InputLimits limits;
};

// What the registry holds now, for monitoring.
struct RegistryGauges {
  std::vector<matcher::GalleryInfo> galleries;
  // Dedup cases opened (persons held for adjudication) since Open.
  int64_t cases_opened = 0;
};

// How Open got its galleries, for the start-up log.
struct GalleryLoadReport {
  // The snapshot file the galleries were loaded from; empty if they were
  // rebuilt from the store.
  std::string snapshot;
  // The snapshot's sequence, and the subjects changed after it that were
  // replayed from the store.
  int64_t snapshot_sequence = 0;
  int64_t replayed_subjects = 0;
  // The store change sequence the galleries hold.
  int64_t sequence = 0;
  size_t templates = 0;
  // Snapshots not used, newest first, each "file: why"; or why none was
  // tried ("no snapshot", "snapshots disabled").
  std::vector<std::string> refused;
  absl::Duration elapsed;
  // Of which, for the snapshot used: its checksum, reading its galleries,
  // and the replay.
  absl::Duration verify;
  absl::Duration load;
  absl::Duration replay;

  // One line: where the galleries came from, and why.
  std::string ToString() const;
};

// What WriteSnapshot did.
struct SnapshotReport {
  // False if nothing changed since the last snapshot written or loaded.
  bool written = false;
  std::string path;
  int64_t sequence = 0;
  uint64_t bytes = 0;
  // Whether the galleries were copied to memory while writes waited and
  // written to disk after (else written to disk while writes waited).
  bool buffered = false;
  // How long writes waited for the snapshot (the galleries being copied or
  // written), and the whole call (the file's fsync included).
  absl::Duration writers_waited;
  absl::Duration elapsed;
  // Change-log rows deleted because no snapshot left needs them.
  int64_t changes_pruned = 0;

  std::string ToString() const;
};

class Registry {
 public:
  // Takes the data folder's lock (unless options.data_dir_lock is given:
  // INVALID_ARGUMENT if that is another folder's), opens the store and
  // loads the galleries. FAILED_PRECONDITION naming the folder and the
  // holder's process id if another process (or registry) holds the lock.
  // Serving may start when this returns.
  static absl::StatusOr<std::unique_ptr<Registry>> Open(
      const RegistryOptions& options);

  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  // Detaches the audit log from the store.
  ~Registry();

  // The most requests one BatchEnroll takes: bounds a call's memory and the
  // time it holds the write lock.
  static constexpr size_t kMaxBatchEnrollRequests = 10000;
  // The most bytes of records one page of ListPersons, ListCases or
  // ListAuditRecords carries: a page ends early, with a next_page_token,
  // before the record that would cross it (but always holds one record),
  // so that a client with gRPC's default 4 MiB receive limit can list.
  static constexpr size_t kMaxPageBytes = 3 << 20;

  // Each appends the call's audit record, as `actor` (default: an
  // in-process caller with no principal).
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request,
                                            const AuditActor& actor = {});
  // Enroll of every request in one transaction, all or nothing; responses[i]
  // answers requests[i]. Errors name the item: "requests[3].person...".
  // `cancelled` (if given) is checked once the requests are validated and
  // once the write lock is held: true returns CANCELLED and writes nothing.
  // Once the transaction starts it is not interrupted.
  absl::StatusOr<v1::BatchEnrollResponse> BatchEnroll(
      absl::Span<const v1::EnrollRequest> requests,
      const std::function<bool()>& cancelled = nullptr,
      const AuditActor& actor = {});
  absl::StatusOr<v1::Person> GetPerson(const v1::GetPersonRequest& request,
                                       const AuditActor& actor = {});
  absl::StatusOr<v1::Person> UpdatePerson(
      const v1::UpdatePersonRequest& request, const AuditActor& actor = {});
  absl::StatusOr<v1::Person> ReplaceTemplates(
      const v1::ReplaceTemplatesRequest& request, const AuditActor& actor = {});
  absl::Status DeletePerson(const v1::DeletePersonRequest& request,
                            const AuditActor& actor = {});
  absl::StatusOr<v1::ListPersonsResponse> ListPersons(
      const v1::ListPersonsRequest& request, const AuditActor& actor = {});

  absl::StatusOr<v1::VerifyResponse> Verify(const v1::VerifyRequest& request,
                                            const AuditActor& actor = {});
  absl::StatusOr<v1::IdentifyResponse> Identify(
      const v1::IdentifyRequest& request, const AuditActor& actor = {});

  absl::StatusOr<v1::GetStatsResponse> GetStats(const AuditActor& actor = {});

  // Store::RotateDataKey, then a snapshot under the new key (the old
  // snapshots are under a key that may be gone). `cancelled` is checked
  // between batches. With request.new_key_file (an absolute path on the
  // server) instead Store::RewrapDataKeys: the key-encryption key rotation,
  // one short transaction; no data key changes and no snapshot is written.
  // Its audit record is appended once the rotation ends (a data key
  // rotation spans many transactions).
  absl::StatusOr<v1::RotateKeyResponse> RotateKey(
      const v1::RotateKeyRequest& request, std::function<bool()> cancelled,
      const AuditActor& actor = {});

  // PartnerService (enroll/partner.h, proto/hawiya/v1/partner.proto). The
  // caller's policy is actor.principal's. One audit record per answer (a
  // batch: one per item, or one for the whole call if it is refused as a
  // whole), with the purpose, decision and disclosed attributes. Each
  // answered item takes one from the daily quota, before it is answered;
  // RESOURCE_EXHAUSTED naming "daily_quota" once it is spent.
  absl::StatusOr<v1::VerifyCivilStatusResponse> VerifyCivilStatus(
      const v1::VerifyCivilStatusRequest& request,
      const AuditActor& actor = {});
  absl::StatusOr<v1::VerifyCivilStatusBatchResponse> VerifyCivilStatusBatch(
      const v1::VerifyCivilStatusBatchRequest& request,
      const AuditActor& actor = {});

  // AdjudicationService (proto/hawiya/v1/adjudication.proto). DecideCase
  // records actor.principal as the adjudicator, and commits its audit record
  // (decision, the new subject and the candidates) with the decision.
  absl::StatusOr<v1::ListCasesResponse> ListCases(
      const v1::ListCasesRequest& request, const AuditActor& actor = {});
  absl::StatusOr<v1::Case> GetCase(const v1::GetCaseRequest& request,
                                   const AuditActor& actor = {});
  absl::StatusOr<v1::Case> DecideCase(const v1::DecideCaseRequest& request,
                                      const AuditActor& actor = {});

  // Receipt signing keys: every public key, current and retired
  // (AdminService.GetSigningKeys); and a rotation (the previous key is
  // retired now and stays published).
  absl::StatusOr<v1::GetSigningKeysResponse> GetSigningKeys(
      const AuditActor& actor = {});
  absl::StatusOr<v1::RotateSigningKeyResponse> RotateSigningKey(
      const AuditActor& actor = {});

  // AuditService: a page of audit records; and a walk of the whole chain
  // (on a read connection of its own: writes go on meanwhile).
  absl::StatusOr<v1::ListAuditRecordsResponse> ListAuditRecords(
      const v1::ListAuditRecordsRequest& request, const AuditActor& actor = {});
  absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditLog(
      const v1::VerifyAuditLogRequest& request, const AuditActor& actor = {});

  const GalleryLoadReport& load_report() const { return load_report_; }
  // What the store's Open did about keys (a created development key file,
  // plaintext templates encrypted).
  const KeyReport& key_report() const { return key_report_; }

  // Writes a snapshot of the galleries to data_dir/snapshots, labelled with
  // the change sequence they hold (after bringing them up to any change
  // another writer made to the store) and recorded in the store, then keeps
  // it and the newest older usable one and removes the rest. Writes wait while
  // the galleries are copied to memory (or, if memory is short, written to
  // the file); reads and matches go on. Writes nothing if nothing changed since
  // the last snapshot written or loaded. An error never affects a request, and
  // leaves the previous snapshots as they were. FAILED_PRECONDITION if
  // snapshots are disabled, or if the galleries may differ from the store (a
  // gallery change failed after its store commit: only a restart, which
  // rebuilds them, makes them worth saving again).
  absl::StatusOr<SnapshotReport> WriteSnapshot() {
    return WriteSnapshot(false);
  }

  // Store changes made since the last snapshot written or loaded (all of
  // them if the galleries were rebuilt from the store).
  absl::StatusOr<int64_t> ChangesSinceSnapshot();

  // For the metrics endpoint, read at every scrape: no store query and no
  // audit record (unlike GetStats, a call on the registry's data).
  RegistryGauges Gauges() const;

 private:
  Registry(std::shared_ptr<const DataDirLock> data_dir_lock,
           std::unique_ptr<Store> store,
           std::unique_ptr<matcher::Matcher> matcher, RegistryOptions options);

  // write_mu_ for one write: held across its store commit and its gallery
  // change; on release, FollowWrite of the write's audit record.
  class ABSL_SCOPED_LOCKABLE WriteLock {
   public:
    WriteLock(Registry* registry, const AuditWrite* audit)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(registry->write_mu_)
        : registry_(registry), audit_(audit) {
      registry_->write_mu_.Lock();
    }
    ~WriteLock() ABSL_UNLOCK_FUNCTION() {
      registry_->FollowWrite(*audit_);
      registry_->write_mu_.Unlock();
    }
    WriteLock(const WriteLock&) = delete;
    WriteLock& operator=(const WriteLock&) = delete;

   private:
    Registry* const registry_;
    const AuditWrite* const audit_;
  };
  // After a write (its changes committed and applied to the galleries):
  // advances galleries_sequence_ over its changes if they follow on from
  // it, else (another writer's changes came in between) CatchUp.
  void FollowWrite(const AuditWrite& audit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Brings the galleries up to the store's changes after
  // galleries_sequence_, subject by subject, as a replay does.
  absl::Status CatchUp() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  // The request methods, without their audit: `audit` is the call's
  // record, which they fill in (resource, subjects) and, for a write, pass
  // to the store.
  absl::StatusOr<v1::EnrollResponse> DoEnroll(const v1::EnrollRequest& request,
                                              AuditWrite* audit);
  absl::StatusOr<v1::BatchEnrollResponse> DoBatchEnroll(
      absl::Span<const v1::EnrollRequest> requests,
      const std::function<bool()>& cancelled, AuditWrite* audit);
  absl::StatusOr<v1::Person> DoUpdatePerson(
      const v1::UpdatePersonRequest& request, AuditWrite* audit);
  absl::StatusOr<v1::Person> DoReplaceTemplates(
      const v1::ReplaceTemplatesRequest& request, AuditWrite* audit);
  absl::Status DoDeletePerson(const v1::DeletePersonRequest& request,
                              AuditWrite* audit);
  absl::StatusOr<v1::ListPersonsResponse> DoListPersons(
      const v1::ListPersonsRequest& request);
  absl::StatusOr<v1::VerifyResponse> DoVerify(const v1::VerifyRequest& request);
  absl::StatusOr<v1::IdentifyResponse> DoIdentify(
      const v1::IdentifyRequest& request);
  absl::StatusOr<v1::GetStatsResponse> DoGetStats();
  absl::StatusOr<v1::RotateKeyResponse> DoRotateKey(
      const v1::RotateKeyRequest& request, std::function<bool()> cancelled);
  absl::StatusOr<v1::ListAuditRecordsResponse> DoListAuditRecords(
      const v1::ListAuditRecordsRequest& request);
  absl::StatusOr<v1::VerifyAuditLogResponse> DoVerifyAuditLog(
      const v1::VerifyAuditLogRequest& request);

  // Finishes a call's audit: unless the store already committed its record
  // with the write, appends it with the call's outcome through the audit
  // log. A request whose record cannot be written fails.
  absl::Status Audit(const absl::Status& outcome, AuditWrite& audit);
  // Audit(response.status(), audit), then `response`, or the audit's error
  // if the record could not be written.
  template <typename T>
  absl::StatusOr<T> Audited(absl::StatusOr<T> response, AuditWrite& audit) {
    if (absl::Status s = Audit(response.status(), audit); !s.ok()) return s;
    return response;
  }

  absl::Status LoadGalleries();
  // Loads the current receipt signing key, creating the first one if the
  // store has none.
  absl::Status LoadSigningKey();
  // The answer to one checked, quota-charged partner request, with its
  // receipt; fills the audit event's subject, decision and disclosed
  // attributes.
  absl::StatusOr<v1::VerifyCivilStatusResponse> AnswerPartner(
      const v1::VerifyCivilStatusRequest& request, const PartnerPolicy& policy,
      const std::string& principal, AuditEvent* event);
  // CheckPartnerRequest plus the probes' validity.
  absl::Status CheckPartner(const v1::VerifyCivilStatusRequest& request,
                            const PartnerPolicy& policy) const;
  // force: even if nothing changed since the last snapshot (a new key).
  absl::StatusOr<SnapshotReport> WriteSnapshot(bool force);
  // Remembers that a write's store commit succeeded but its gallery change
  // did not (see WriteSnapshot).
  void GalleriesDiverged() { galleries_diverged_ = true; }
  // Validates an Enroll request and builds the record the store writes.
  absl::StatusOr<NewPerson> PrepareEnroll(const v1::EnrollRequest& request,
                                          absl::Time now) const;
  // Resolves subject_id, or national_id + issuing_country.
  absl::StatusOr<v1::Person> Resolve(const std::string& subject_id,
                                     const std::string& national_id,
                                     const std::string& issuing_country);
  // Deduplication: the candidates for `person` (excluding itself) with
  // these stored (normalised) templates, best first, ranked, with their
  // reasons, at most dedup.max_candidates. Searches the galleries (ACTIVE
  // persons) and the pending gallery, or, for an item of a BatchEnroll,
  // takes `batch`'s matches (the batch's searches of those galleries and of
  // its earlier items, see BatchDedupMatches); demographic checks against
  // the store (and the batch's earlier records) if configured and
  // `demographic`. Subjects an adjudicator decided DISTINCT from `person`
  // (Store::AdjudicatedDistinct) are not candidates. Called under
  // write_mu_, so that what it searches is what the write commits against.
  struct BatchSoFar {
    // This item's matches from each gallery searched, in the order the
    // per-item path searches them: galleries, pending gallery, earlier items.
    std::vector<absl::Span<const matcher::Match>> matches;
    std::vector<const v1::Person*> persons;
  };
  // The search options of every deduplication search.
  matcher::IdentifyOptions DedupSearch() const;
  // For each item of a BatchEnroll with templates (`probe_sets[i]` its
  // probes, `subject_ids[i]` its new subject id, in batch order): its
  // matches in the galleries, in the pending gallery, and among the earlier
  // items, as BatchSoFar::matches holds them, with one batched search per
  // gallery and one all-pairs pass over the batch instead of three
  // Identify calls per item. result[g][i]: gallery g, item i.
  absl::StatusOr<std::array<std::vector<std::vector<matcher::Match>>, 3>>
  BatchDedupMatches(absl::Span<const std::string> subject_ids,
                    absl::Span<const std::vector<matcher::Probe>> probe_sets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<std::vector<v1::Candidate>> FindDuplicates(
      const v1::Person& person, absl::Span<const v1::Template> templates,
      bool demographic, const BatchSoFar* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Brings the galleries and the pending gallery in line with the store for
  // one subject (after an adjudication decision).
  absl::Status SyncGalleries(const std::string& subject_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<v1::ListCasesResponse> DoListCases(
      const v1::ListCasesRequest& request);
  absl::StatusOr<v1::Case> DoDecideCase(const v1::DecideCaseRequest& request,
                                        AuditWrite* audit);

  // Adds freshly written templates of an ACTIVE person to the galleries.
  absl::Status AddToGalleries(const std::string& subject_id,
                              const std::vector<TemplateRecord>& templates);

  // Declared first: released after the store has closed.
  const std::shared_ptr<const DataDirLock> data_dir_lock_;
  const std::unique_ptr<Store> store_;
  const std::unique_ptr<matcher::Matcher> matcher_;
  const RegistryOptions options_;
  // Attached to store_ from Open to the destructor.
  const std::shared_ptr<AuditLog> audit_log_;
  // Held across a write's store transaction and its gallery change.
  absl::Mutex write_mu_;
  // The templates of PENDING_ADJUDICATION persons, which Verify and Identify
  // never search but deduplication does (so two enrollments of one face
  // while the first is pending are caught). Exact index; rebuilt from the
  // store at Open (pending persons are few), not part of snapshots.
  std::unique_ptr<matcher::Matcher> pending_ ABSL_GUARDED_BY(write_mu_);

  // Set by Open, then only read.
  GalleryLoadReport load_report_;
  KeyReport key_report_;
  std::string store_id_;
  std::string snapshot_dir_;
  // One snapshot at a time.
  absl::Mutex snapshot_mu_;
  // Snapshot files Open refused: never kept as the older snapshot.
  std::set<std::string> refused_snapshots_ ABSL_GUARDED_BY(snapshot_mu_);
  // The galleries hold every store change up to this sequence: what a
  // snapshot of them is labelled with.
  int64_t galleries_sequence_ ABSL_GUARDED_BY(write_mu_) = 0;
  // The sequence of the last snapshot written or loaded (0 after a rebuild:
  // every change is then "since the snapshot").
  std::atomic<int64_t> snapshot_sequence_{0};
  std::atomic<bool> galleries_diverged_{false};
  // Dedup cases opened by committed writes since Open.
  std::atomic<int64_t> cases_opened_{0};
  // The current receipt signing key (with its private half). Receipts are
  // signed under a reader lock, a rotation holds it exclusively, so no
  // receipt is dated after its key was retired.
  absl::Mutex signing_mu_;
  SigningKeyRecord signing_key_ ABSL_GUARDED_BY(signing_mu_);
  // The latest receipt time (Unix microseconds) signed so far.
  std::atomic<int64_t> last_receipt_us_{0};
  // The store id, named in receipts as their issuer.
  std::string issuer_;
};

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_REGISTRY_H_
