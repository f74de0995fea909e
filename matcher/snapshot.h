// Snapshot streams: the byte sink and source galleries save to and load
// from (Gallery::Save / Gallery::Load). Framing, checksums and files live
// behind these interfaces, so a gallery only writes its own fields.
//
// Numbers are written little-endian as fixed-width fields; every variable
// length is written before its data, and readers refuse lengths beyond the
// bounds they are given or beyond what is left of the stream (Remaining), so
// a corrupt stream fails with DATA_LOSS instead of allocating without limit.
#ifndef HAWIYA_MATCHER_SNAPSHOT_H_
#define HAWIYA_MATCHER_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hawiya::matcher {

class SnapshotWriter {
 public:
  virtual ~SnapshotWriter() = default;

  // Appends n bytes.
  virtual absl::Status Write(const void* data, size_t n) = 0;

  absl::Status WriteU32(uint32_t value);
  absl::Status WriteU64(uint64_t value);
  absl::Status WriteI64(int64_t value);
  absl::Status WriteFloat(float value);
  // Length (u64) then bytes.
  absl::Status WriteString(absl::string_view value);
  // Count (u64) then the raw elements.
  absl::Status WriteFloats(absl::Span<const float> values);
  absl::Status WriteI64s(absl::Span<const int64_t> values);
  absl::Status WriteI32s(absl::Span<const int32_t> values);
  absl::Status WriteBytes(absl::Span<const uint8_t> values);
};

class SnapshotReader {
 public:
  virtual ~SnapshotReader() = default;

  // Reads exactly n bytes; DATA_LOSS if the stream ends first.
  virtual absl::Status Read(void* data, size_t n) = 0;

  // Bytes left to read, or UINT64_MAX if the stream does not know. The array
  // readers below refuse a count whose bytes exceed it before allocating.
  virtual uint64_t Remaining() const { return UINT64_MAX; }

  absl::StatusOr<uint32_t> ReadU32();
  absl::StatusOr<uint64_t> ReadU64();
  absl::StatusOr<int64_t> ReadI64();
  absl::StatusOr<float> ReadFloat();
  // DATA_LOSS if the stored length exceeds max_size.
  absl::StatusOr<std::string> ReadString(size_t max_size);
  absl::Status ReadFloats(size_t max_count, std::vector<float>* out);
  absl::Status ReadI64s(size_t max_count, std::vector<int64_t>* out);
  absl::Status ReadI32s(size_t max_count, std::vector<int32_t>* out);
  absl::Status ReadBytes(size_t max_count, std::vector<uint8_t>* out);
};

// In memory, for tests and small galleries.
class StringSnapshotWriter final : public SnapshotWriter {
 public:
  absl::Status Write(const void* data, size_t n) override;
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// In memory, in fixed-size chunks (no reallocation as it grows), for a
// snapshot taken under a lock and written to disk after the lock is
// released. Not thread-safe.
class ChunkedSnapshotWriter final : public SnapshotWriter {
 public:
  static constexpr size_t kChunkBytes = size_t{64} << 20;

  // Allocates room for `bytes` more and touches every page of it, so that
  // writing them later costs a copy, not page faults too: a caller holding
  // a lock while it writes calls this before taking the lock. INTERNAL if
  // memory runs out.
  absl::Status Reserve(uint64_t bytes);

  // INTERNAL (not an exception) if memory runs out.
  absl::Status Write(const void* data, size_t n) override;
  uint64_t size() const { return size_; }

  // Writes everything to `out`, in order, freeing each chunk once written;
  // leaves this writer empty.
  absl::Status MoveTo(SnapshotWriter* out);

 private:
  absl::Status AddChunk();

  // Chunks [0, current_] hold data; later ones were reserved.
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t current_ = 0;
  // Bytes used in chunks_[current_] (kChunkBytes when none is in use).
  size_t last_used_ = kChunkBytes;
  uint64_t size_ = 0;
};

// Reads `bytes`, which must outlive the reader.
class StringSnapshotReader final : public SnapshotReader {
 public:
  explicit StringSnapshotReader(absl::string_view bytes) : bytes_(bytes) {}
  absl::Status Read(void* data, size_t n) override;
  uint64_t Remaining() const override { return bytes_.size() - position_; }
  // Whether every byte has been read.
  bool at_end() const { return position_ == bytes_.size(); }

 private:
  absl::string_view bytes_;
  size_t position_ = 0;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_SNAPSHOT_H_
