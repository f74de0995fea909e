#include "enroll/snapshots.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "matcher/gallery.h"
#include "matcher/matcher.h"
#include "matcher/snapshot.h"
#include "matcher/snapshot_file.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kPrefix = "snapshot-";
constexpr absl::string_view kSuffix = ".hws";
// Bounds for the header's strings and lists: far above any real value,
// far below anything that could hurt.
constexpr size_t kMaxIdBytes = 256;
constexpr uint32_t kMaxModalities = 16;

// The sequence in a snapshot file name, or -1 if `name` is not one.
int64_t SequenceOf(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kPrefix) ||
      !absl::ConsumeSuffix(&name, kSuffix) || name.size() != 20) {
    return -1;
  }
  int64_t sequence = 0;
  if (!absl::SimpleAtoi(name, &sequence) || sequence < 0) return -1;
  return sequence;
}

void SyncFolder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

#define HAWIYA_SNAPSHOT_RETURN_IF_ERROR(expr)                        \
  do {                                                               \
    absl::Status hawiya_snapshot_status = (expr);                    \
    if (!hawiya_snapshot_status.ok()) return hawiya_snapshot_status; \
  } while (false)

template <typename T>
absl::Status Assign(absl::StatusOr<T> value, T* out) {
  if (!value.ok()) return value.status();
  *out = *std::move(value);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSnapshotHeader(const SnapshotHeader& header,
                                 matcher::SnapshotWriter* out) {
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteString(header.store_id));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteI64(header.sequence));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteI64(header.change_time_us));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteString(header.change_subject_id));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteI64(header.create_time_us));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
      out->WriteU32(static_cast<uint32_t>(header.modalities.size())));
  for (const matcher::ModalitySpec& spec : header.modalities) {
    const matcher::IndexOptions& index = spec.index;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(spec.modality)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(spec.dimension)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteFloat(spec.threshold));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteString(matcher::IndexKindName(index.kind)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(index.hnsw.m)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(index.hnsw.ef_construction)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(index.hnsw.ef_search)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(out->WriteU32(index.hnsw.sq8_storage));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU32(static_cast<uint32_t>(index.rerank_factor)));
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
        out->WriteU64(index.auto_hnsw_min_templates));
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotHeader> ReadSnapshotHeader(matcher::SnapshotReader* in) {
  SnapshotHeader header;
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
      Assign(in->ReadString(kMaxIdBytes), &header.store_id));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadI64(), &header.sequence));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
      Assign(in->ReadI64(), &header.change_time_us));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
      Assign(in->ReadString(kMaxIdBytes), &header.change_subject_id));
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(
      Assign(in->ReadI64(), &header.create_time_us));
  uint32_t count = 0;
  HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &count));
  if (count > kMaxModalities) {
    return absl::DataLossError(
        absl::StrCat("snapshot header: ", count, " modalities"));
  }
  for (uint32_t i = 0; i < count; ++i) {
    matcher::ModalitySpec spec;
    uint32_t value = 0;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.modality = static_cast<matcher::Modality>(value);
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.dimension = static_cast<int>(value);
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadFloat(), &spec.threshold));
    std::string kind;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadString(kMaxIdBytes), &kind));
    absl::StatusOr<matcher::IndexKind> parsed = matcher::ParseIndexKind(kind);
    if (!parsed.ok()) {
      return absl::DataLossError(absl::StrCat("snapshot header: modality ", i,
                                              ": ", parsed.status().message()));
    }
    spec.index.kind = *parsed;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.index.hnsw.m = static_cast<int>(value);
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.index.hnsw.ef_construction = static_cast<int>(value);
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.index.hnsw.ef_search = static_cast<int>(value);
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.index.hnsw.sq8_storage = value != 0;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU32(), &value));
    spec.index.rerank_factor = static_cast<int>(value);
    uint64_t min_templates = 0;
    HAWIYA_SNAPSHOT_RETURN_IF_ERROR(Assign(in->ReadU64(), &min_templates));
    spec.index.auto_hnsw_min_templates = min_templates;
    header.modalities.push_back(spec);
  }
  return header;
}

absl::Status CheckSnapshotHeader(
    const SnapshotHeader& header, Store& store, absl::string_view store_id,
    int64_t store_sequence,
    absl::Span<const matcher::ModalitySpec> modalities) {
  if (header.store_id != store_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("made from another store (", header.store_id,
                     ", this data dir's is ", store_id, ")"));
  }
  if (header.sequence > store_sequence) {
    return absl::FailedPreconditionError(absl::StrCat(
        "taken at change ", header.sequence, ", after the store's latest (",
        store_sequence, "): the store was restored from an older copy"));
  }
  if (header.sequence > 0) {
    absl::StatusOr<Change> change = store.GetChange(header.sequence);
    if (absl::IsNotFound(change.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the store has no change ", header.sequence, " any more"));
    }
    if (!change.ok()) return change.status();
    if (change->time_us != header.change_time_us ||
        change->subject_id != header.change_subject_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "change ", header.sequence,
          " differs from the store's: the store was restored from an older "
          "copy and written since"));
    }
  }
  // Modalities in a canonical order: the configuration lists them in any.
  auto sorted = [](absl::Span<const matcher::ModalitySpec> specs) {
    std::vector<matcher::ModalitySpec> out(specs.begin(), specs.end());
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return a.modality < b.modality;
    });
    return out;
  };
  const std::vector<matcher::ModalitySpec> saved = sorted(header.modalities);
  const std::vector<matcher::ModalitySpec> wanted = sorted(modalities);
  std::string saved_names;
  std::string wanted_names;
  for (const auto& spec : saved) {
    absl::StrAppend(&saved_names, saved_names.empty() ? "" : ",",
                    matcher::ModalityName(spec.modality));
  }
  for (const auto& spec : wanted) {
    absl::StrAppend(&wanted_names, wanted_names.empty() ? "" : ",",
                    matcher::ModalityName(spec.modality));
  }
  if (saved_names != wanted_names) {
    return absl::FailedPreconditionError(absl::StrCat(
        "modalities changed: ", saved_names, " then, ", wanted_names, " now"));
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    const absl::string_view name = matcher::ModalityName(saved[i].modality);
    if (saved[i].dimension != wanted[i].dimension) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " dimension changed: ", saved[i].dimension,
                       " then, ", wanted[i].dimension, " now"));
    }
    if (saved[i].index.kind != wanted[i].index.kind) {
      return absl::FailedPreconditionError(absl::StrCat(
          name,
          " index kind changed: ", matcher::IndexKindName(saved[i].index.kind),
          " then, ", matcher::IndexKindName(wanted[i].index.kind), " now"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSnapshotRecorded(const SnapshotHeader& header,
                                   absl::string_view file_id, Store& store) {
  absl::StatusOr<SnapshotRecord> recorded = store.GetSnapshot(header.sequence);
  if (absl::IsNotFound(recorded.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the store has no record of a snapshot at change ", header.sequence,
        ": not written by this store's server, or before the store recorded "
        "its snapshots"));
  }
  if (!recorded.ok()) return recorded.status();
  if (recorded->file_id != file_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "file ", file_id, " is not the snapshot the store recorded at change ",
        header.sequence, " (", recorded->file_id,
        "): written by another process"));
  }
  return absl::OkStatus();
}

std::string SnapshotFileName(int64_t sequence) {
  return absl::StrFormat("%s%020d%s", kPrefix, sequence, kSuffix);
}

std::vector<SnapshotFileInfo> ListSnapshots(const std::string& dir) {
  std::vector<SnapshotFileInfo> out;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const int64_t sequence = SequenceOf(entry.path().filename().string());
    if (sequence < 0) continue;
    out.push_back({entry.path().string(), sequence});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.sequence > b.sequence;
  });
  return out;
}

int RemoveTemporarySnapshots(const std::string& dir) {
  int removed = 0;
  std::error_code error;
  std::vector<fs::path> temporary;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, kPrefix) && absl::EndsWith(name, ".tmp")) {
      temporary.push_back(entry.path());
    }
  }
  for (const fs::path& path : temporary) {
    if (fs::remove(path, error)) ++removed;
  }
  if (removed > 0) SyncFolder(dir);
  return removed;
}

void PruneSnapshots(const std::string& dir, const SnapshotFileInfo& keep,
                    const std::set<std::string>& refused) {
  bool kept_older = false;
  bool removed = false;
  std::error_code error;
  for (const SnapshotFileInfo& file : ListSnapshots(dir)) {
    if (file.path == keep.path) continue;
    if (!kept_older && file.sequence < keep.sequence &&
        refused.count(file.path) == 0) {
      kept_older = true;
      continue;
    }
    removed |= fs::remove(file.path, error);
  }
  if (removed) SyncFolder(dir);
}

}  // namespace hawiya::enroll

#undef HAWIYA_SNAPSHOT_RETURN_IF_ERROR
