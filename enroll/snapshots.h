// Gallery snapshots of a data dir: the files under DATA_DIR/snapshots, the
// header that ties a snapshot to its store, and the checks made before one
// seeds the galleries. The Registry writes and loads them (registry.h).
//
// A snapshot file (framing and checksum: matcher/snapshot_file.h) holds
//   SnapshotHeader  (WriteSnapshotHeader)
//   the galleries   (matcher::Matcher::Save)
// and is named SnapshotFileName(header.sequence).
#ifndef HAWIYA_ENROLL_SNAPSHOTS_H_
#define HAWIYA_ENROLL_SNAPSHOTS_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "enroll/store.h"
#include "matcher/matcher.h"
#include "matcher/snapshot.h"

namespace hawiya::enroll {

struct SnapshotHeader {
  // Store::StoreId of the store the galleries were taken from.
  std::string store_id;
  // The galleries hold every store change up to this sequence and none
  // after it (Store::ChangeSequence when the snapshot was taken).
  int64_t sequence = 0;
  // The change `sequence` itself (zero and empty when sequence is 0). A
  // store restored from an older backup can reach the same sequence again
  // with other changes; these tell the two histories apart.
  int64_t change_time_us = 0;
  std::string change_subject_id;
  int64_t create_time_us = 0;
  // The modalities the galleries were made with (thresholds included, for
  // the record: they shape no index).
  std::vector<matcher::ModalitySpec> modalities;
};

absl::Status WriteSnapshotHeader(const SnapshotHeader& header,
                                 matcher::SnapshotWriter* out);
// DATA_LOSS if malformed.
absl::StatusOr<SnapshotHeader> ReadSnapshotHeader(matcher::SnapshotReader* in);

// Whether a snapshot with this header can seed galleries for `store` and
// `modalities`: FAILED_PRECONDITION saying why not (another store, a
// sequence the store has not reached or a change it does not have, other
// modalities, dimensions or index kinds). Index options beyond the kind are
// checked by Gallery::Load, which knows which of them shape its index.
absl::Status CheckSnapshotHeader(
    const SnapshotHeader& header, Store& store, absl::string_view store_id,
    int64_t store_sequence, absl::Span<const matcher::ModalitySpec> modalities);

// Whether the store recorded this snapshot file (Store::RecordSnapshot) at
// header.sequence, `file_id` being the file's (SnapshotFileReader::file_id):
// FAILED_PRECONDITION if it recorded none there (a file this store's
// registry did not write, or wrote before the store recorded snapshots) or
// another file (one another process wrote under that name).
absl::Status CheckSnapshotRecorded(const SnapshotHeader& header,
                                   absl::string_view file_id, Store& store);

// "snapshot-<sequence, 20 digits>.hws": names sort by sequence.
std::string SnapshotFileName(int64_t sequence);

struct SnapshotFileInfo {
  std::string path;
  int64_t sequence = 0;
};

// The snapshot files in `dir`, highest sequence first. Temporary files and
// other names are not listed.
std::vector<SnapshotFileInfo> ListSnapshots(const std::string& dir);

// Removes the temporary files that writers killed mid-write left in `dir`;
// returns how many. REQUIRES: no snapshot is being written to `dir`.
int RemoveTemporarySnapshots(const std::string& dir);

// After `keep` was written: keeps it and the newest other snapshot with a
// lower sequence that is not in `refused`, removes every other snapshot
// (older ones, refused ones, and any with a higher sequence, which cannot
// belong to the store's history), then syncs the folder. Best effort.
void PruneSnapshots(const std::string& dir, const SnapshotFileInfo& keep,
                    const std::set<std::string>& refused);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_SNAPSHOTS_H_
