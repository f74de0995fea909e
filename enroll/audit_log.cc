#include "enroll/audit_log.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "enroll/store.h"

namespace hawiya::enroll {

absl::Status AuditLog::Attach(Store* store) {
  absl::MutexLock lock(&mu_);
  if (!pending_.empty()) {
    // Nothing commits before Attach, so holding mu_ over the write blocks
    // only other appends, which must come after these records anyway.
    if (absl::Status s = store->AppendAudit(absl::MakeSpan(pending_));
        !s.ok()) {
      return s;
    }
    pending_.clear();
  }
  store_ = store;
  detached_ = false;
  return absl::OkStatus();
}

void AuditLog::Detach() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* committing) { return !*committing; }, &committing_));
  store_ = nullptr;
  detached_ = true;
}

absl::Status AuditLog::Append(AuditEvent event) {
  absl::MutexLock lock(&mu_);
  if (store_ == nullptr) {
    if (detached_) {
      return absl::UnavailableError("audit: the audit log is closed");
    }
    if (pending_.size() >= kMaxPending) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "audit: ", kMaxPending, " records wait for the store to open"));
    }
    pending_.push_back(std::move(event));
    return absl::OkStatus();
  }
  // Group commit: join the batch being collected; whoever finds no commit
  // running writes the whole batch while the others wait for it.
  if (open_ == nullptr) open_ = std::make_shared<Batch>();
  std::shared_ptr<Batch> mine = open_;
  mine->events.push_back(std::move(event));
  auto ready = [this, &mine]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return mine->done || !committing_;
  };
  mu_.Await(absl::Condition(&ready));
  if (mine->done) return mine->status;
  // Leading: `mine` is still the open batch (a batch is only taken by its
  // leader, and is done before the next commit may start).
  open_.reset();
  absl::Status status;
  if (store_ == nullptr) {
    status = absl::UnavailableError("audit: the audit log is closed");
  } else {
    committing_ = true;
    Store* store = store_;
    mu_.Unlock();
    const absl::Time start = absl::Now();
    status = store->AppendAudit(absl::MakeSpan(mine->events));
    const absl::Duration took = absl::Now() - start;
    mu_.Lock();
    committing_ = false;
    ++stats_.commits;
    stats_.records += static_cast<int64_t>(mine->events.size());
    stats_.total += took;
  }
  mine->done = true;
  mine->status = status;
  return status;
}

AuditLog::CommitStats AuditLog::commit_stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace hawiya::enroll
