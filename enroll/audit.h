// The audit log: one record per RPC (allowed or denied), hash-chained so
// that editing, deleting or reordering any stored record is detected.
//
// Record n (sequence numbers start at 1 and have no gaps) stores
//   hash_n = SHA-256(CanonicalAuditBytes(n, hash_{n-1}, event_n))
// with hash_0 = 32 zero bytes. The canonical encoding covers the sequence
// number, the predecessor's hash and every field of the event, so a walk
// from record 1 that recomputes each hash finds the first record that was
// changed (edit), whose predecessor is gone (delete, truncate in the middle)
// or that sits at another position (reorder). Removing records from the end
// (or rewriting the whole chain) leaves a valid shorter chain: only a head
// (sequence, hash) kept outside the database detects that (VerifyOptions).
//
// Records never carry template vectors or person records: who called what,
// about which subject, with which outcome, and the subject ids a match
// returned.
#ifndef HAWIYA_ENROLL_AUDIT_H_
#define HAWIYA_ENROLL_AUDIT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hawiya::enroll {

// Who makes a call, as the access check decided it.
struct AuditActor {
  // The caller's principal (certificate URI SAN or CN); empty for calls made
  // in-process (tests, tools).
  std::string principal;
  // The caller's role that allowed the call; empty if none did.
  std::string role;
  // Full gRPC method name, "/hawiya.v1.MatchService/Identify".
  std::string method;
};

// What one call did.
struct AuditEvent {
  // Microseconds since the Unix epoch; set by the store when it appends
  // the record, if left 0.
  int64_t time_us = 0;
  std::string principal;
  std::string role;
  std::string method;
  // The resource the call named (either or both may be empty): a subject
  // id, and "COUNTRY/national_id".
  std::string subject_id;
  std::string national_id;
  // The request's idempotency key, if it has one.
  std::string request_id;
  // Canonical status code (absl and gRPC share the numbering); 0 = OK.
  int outcome = 0;
  // Subject ids the call returned or wrote beyond subject_id: Identify's
  // candidates best first, Verify's subject, BatchEnroll's enrolled persons.
  std::vector<std::string> subject_ids;
  // PartnerService answers only (empty for every other call): the stated
  // purpose ("BORDER_CROSSING: case 42"), the decision ("MATCH", ...) and
  // the attribute names disclosed to the partner.
  std::string purpose;
  std::string decision;
  std::vector<std::string> disclosed;

  // Whether any of purpose, decision, disclosed is set (the canonical
  // encoding then carries them).
  bool has_partner_fields() const {
    return !purpose.empty() || !decision.empty() || !disclosed.empty();
  }

  static AuditEvent For(const AuditActor& actor) {
    AuditEvent event;
    event.principal = actor.principal;
    event.role = actor.role;
    event.method = actor.method;
    return event;
  }
};

// A stored record.
struct AuditRecord {
  int64_t sequence = 0;
  AuditEvent event;
  std::string prev_hash;  // 32 bytes
  std::string hash;       // 32 bytes
};

inline constexpr size_t kAuditHashBytes = 32;

// The hash before record 1: 32 zero bytes.
std::string AuditGenesisHash();

// The bytes record `sequence` hashes, so that no two distinct records share
// an encoding (all integers big-endian; str = u32 length, then the bytes):
//   str "hawiya.audit.v1", u64 sequence, str prev_hash, u64 time_us,
//   str principal, str role, str method, str subject_id, str national_id,
//   str request_id, u32 outcome, u32 number of subject_ids, str each;
// then, only if purpose, decision or disclosed is set (PartnerService
// answers):
//   str purpose, str decision, u32 number of disclosed, str each.
// A record without them ends after the subject ids, so records written
// before those fields existed hash exactly as they did; and since every
// field is length-prefixed, no record with them shares an encoding with
// one without.
// Stable: an auditor may re-implement it to check a copy independently.
std::string CanonicalAuditBytes(int64_t sequence, absl::string_view prev_hash,
                                const AuditEvent& event);

// SHA-256 of CanonicalAuditBytes.
std::string AuditHash(int64_t sequence, absl::string_view prev_hash,
                      const AuditEvent& event);

// Subject ids as stored in one column: comma-separated (subject ids are
// hex and never contain one).
std::string JoinSubjectIds(const std::vector<std::string>& ids);
std::vector<std::string> SplitSubjectIds(absl::string_view joined);

// A head kept outside the database (VerifyAuditLog's head_sequence and
// head_hash, written down by an operator), checked by a walk: the record
// with that sequence must exist and have that hash. Detects truncating the
// tail and rewriting the chain up to the anchor.
struct AuditAnchor {
  int64_t sequence = 0;  // 0: no anchor
  std::string hash;      // 32 bytes
};

struct AuditVerification {
  // Records whose hash checked out, from sequence 1 on.
  int64_t records_checked = 0;
  // The last record checked (0 and the genesis hash if none).
  int64_t head_sequence = 0;
  std::string head_hash;
  bool intact = true;
  // If not intact: the first record that does not check out (for a missing
  // anchor record, the anchor's sequence), and why.
  int64_t first_broken_sequence = 0;
  std::string reason;
};

// Walks records in stored order and reports the first that breaks the
// chain. Feed every record with Add (it returns false once the chain is
// broken: the rest need not be read), then call Finish.
class AuditChainVerifier {
 public:
  explicit AuditChainVerifier(AuditAnchor anchor = {});

  bool Add(const AuditRecord& record);
  // Breaks the chain at record `sequence`, which the caller found stored
  // otherwise than the store writes it (`reason`); returns false.
  bool Reject(int64_t sequence, std::string reason);
  AuditVerification Finish();

 private:
  void Break(int64_t sequence, std::string reason);

  AuditAnchor anchor_;
  bool anchor_seen_ = false;
  AuditVerification result_;
};

// Verifies the audit table of a Hawiya database (hawiya.db) on a read-only
// connection of its own: needs no key, and while a server runs it reads
// one consistent snapshot without holding up its writes. Each value must
// also have the storage class the store writes (INTEGER, TEXT, BLOB): the
// hash covers a value's bytes, not its type, and a principal cast to a
// BLOB would hash the same yet match no ListAuditRecords filter. NOT_FOUND
// if the file does not exist; FAILED_PRECONDITION if it has no audit table.
absl::StatusOr<AuditVerification> VerifyAuditDatabase(
    const std::string& db_path, const AuditAnchor& anchor = {});

// Lower-case hex, and back (INVALID_ARGUMENT naming `field`).
std::string HashHex(absl::string_view hash);
absl::StatusOr<std::string> HashFromHex(absl::string_view field,
                                        absl::string_view hex);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_AUDIT_H_
