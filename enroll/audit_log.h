// AuditLog: appends the audit records of calls that change nothing in the
// store (reads, matches, denied calls) and of failed writes, durably, with
// group commit: concurrent callers' records go into one store transaction
// (one fsync), and each Append returns once its record is committed.
// Successful writes do not come here: their record is appended inside the
// write's own transaction (Store write methods take an AuditEvent).
//
// The log exists before the store is open (the server authenticates calls
// from its first moment): records appended before Attach are held in memory
// (at most kMaxPending) and are the first written at Attach. After Detach
// (the store closing) Append fails.
//
// Thread safety: all methods may be called concurrently.
#ifndef HAWIYA_ENROLL_AUDIT_LOG_H_
#define HAWIYA_ENROLL_AUDIT_LOG_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "enroll/audit.h"

namespace hawiya::enroll {

class Store;

class AuditLog {
 public:
  // Records held before Attach; beyond it Append fails (RESOURCE_EXHAUSTED).
  static constexpr size_t kMaxPending = 10000;

  AuditLog() = default;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Starts writing to `store` (which must outlive Detach), first the records
  // held so far. An error (they could not be written) leaves them held.
  absl::Status Attach(Store* store);
  // Waits for a commit in progress, then stops writing to the store: later
  // appends fail with UNAVAILABLE.
  void Detach();

  // Appends one record and returns once it is committed (or, before Attach,
  // held). An error means the record is not in the log: the call it
  // describes must fail.
  absl::Status Append(AuditEvent event);

  // Group commits written so far (the store transactions Append ran), the
  // records in them, and their total wall time: for the metrics endpoint.
  struct CommitStats {
    int64_t commits = 0;
    int64_t records = 0;
    absl::Duration total;
  };
  CommitStats commit_stats() const;

 private:
  // The records one commit writes, and its outcome.
  struct Batch {
    std::vector<AuditEvent> events;
    bool done = false;
    absl::Status status;
  };

  mutable absl::Mutex mu_;
  Store* store_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool detached_ ABSL_GUARDED_BY(mu_) = false;
  // A commit runs (its leader has released mu_ while the store writes).
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  // Collecting the next commit's records; null when none waits.
  std::shared_ptr<Batch> open_ ABSL_GUARDED_BY(mu_);
  // Before Attach.
  std::vector<AuditEvent> pending_ ABSL_GUARDED_BY(mu_);
  CommitStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_AUDIT_LOG_H_
