#include "matcher/snapshot.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hawiya::matcher {
namespace {

static_assert(
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
    "snapshots store host-order numbers, which must be little-endian");

template <typename T>
absl::Status WriteArray(SnapshotWriter* out, absl::Span<const T> values) {
  if (absl::Status s = out->WriteU64(values.size()); !s.ok()) return s;
  return out->Write(values.data(), values.size() * sizeof(T));
}

template <typename T>
absl::Status ReadArray(SnapshotReader* in, size_t max_count,
                       std::vector<T>* out) {
  absl::StatusOr<uint64_t> count = in->ReadU64();
  if (!count.ok()) return count.status();
  if (*count > max_count) {
    return absl::DataLossError(absl::StrCat("snapshot: array of ", *count,
                                            " elements, at most ", max_count,
                                            " expected"));
  }
  // Checked before resize: a corrupt count must not allocate what the
  // stream cannot hold.
  if (*count > in->Remaining() / sizeof(T)) {
    return absl::DataLossError(
        absl::StrCat("snapshot: array of ", *count, " elements of ", sizeof(T),
                     " bytes, only ", in->Remaining(), " bytes left"));
  }
  out->resize(*count);
  return in->Read(out->data(), *count * sizeof(T));
}

template <typename T>
absl::StatusOr<T> ReadValue(SnapshotReader* in) {
  T value;
  if (absl::Status s = in->Read(&value, sizeof(value)); !s.ok()) return s;
  return value;
}

}  // namespace

absl::Status SnapshotWriter::WriteU32(uint32_t value) {
  return Write(&value, sizeof(value));
}
absl::Status SnapshotWriter::WriteU64(uint64_t value) {
  return Write(&value, sizeof(value));
}
absl::Status SnapshotWriter::WriteI64(int64_t value) {
  return Write(&value, sizeof(value));
}
absl::Status SnapshotWriter::WriteFloat(float value) {
  return Write(&value, sizeof(value));
}
absl::Status SnapshotWriter::WriteString(absl::string_view value) {
  if (absl::Status s = WriteU64(value.size()); !s.ok()) return s;
  return Write(value.data(), value.size());
}
absl::Status SnapshotWriter::WriteFloats(absl::Span<const float> values) {
  return WriteArray(this, values);
}
absl::Status SnapshotWriter::WriteI64s(absl::Span<const int64_t> values) {
  return WriteArray(this, values);
}
absl::Status SnapshotWriter::WriteI32s(absl::Span<const int32_t> values) {
  return WriteArray(this, values);
}
absl::Status SnapshotWriter::WriteBytes(absl::Span<const uint8_t> values) {
  return WriteArray(this, values);
}

absl::StatusOr<uint32_t> SnapshotReader::ReadU32() {
  return ReadValue<uint32_t>(this);
}
absl::StatusOr<uint64_t> SnapshotReader::ReadU64() {
  return ReadValue<uint64_t>(this);
}
absl::StatusOr<int64_t> SnapshotReader::ReadI64() {
  return ReadValue<int64_t>(this);
}
absl::StatusOr<float> SnapshotReader::ReadFloat() {
  return ReadValue<float>(this);
}
absl::StatusOr<std::string> SnapshotReader::ReadString(size_t max_size) {
  std::vector<char> bytes;
  if (absl::Status s = ReadArray(this, max_size, &bytes); !s.ok()) return s;
  return std::string(bytes.begin(), bytes.end());
}
absl::Status SnapshotReader::ReadFloats(size_t max_count,
                                        std::vector<float>* out) {
  return ReadArray(this, max_count, out);
}
absl::Status SnapshotReader::ReadI64s(size_t max_count,
                                      std::vector<int64_t>* out) {
  return ReadArray(this, max_count, out);
}
absl::Status SnapshotReader::ReadI32s(size_t max_count,
                                      std::vector<int32_t>* out) {
  return ReadArray(this, max_count, out);
}
absl::Status SnapshotReader::ReadBytes(size_t max_count,
                                       std::vector<uint8_t>* out) {
  return ReadArray(this, max_count, out);
}

absl::Status StringSnapshotWriter::Write(const void* data, size_t n) {
  bytes_.append(static_cast<const char*>(data), n);
  return absl::OkStatus();
}

absl::Status ChunkedSnapshotWriter::AddChunk() {
  // Default-initialised: no page is touched here.
  std::unique_ptr<char[]> chunk(new (std::nothrow) char[kChunkBytes]);
  if (chunk == nullptr) {
    return absl::InternalError(absl::StrCat("snapshot: out of memory after ",
                                            size_, " bytes in memory"));
  }
  chunks_.push_back(std::move(chunk));
  return absl::OkStatus();
}

absl::Status ChunkedSnapshotWriter::Reserve(uint64_t bytes) {
  const size_t in_use = size_ == 0 ? 0 : current_ + 1;
  const uint64_t free_bytes =
      (chunks_.size() - in_use) * uint64_t{kChunkBytes} +
      (size_ == 0 ? 0 : kChunkBytes - last_used_);
  for (uint64_t more = free_bytes; more < bytes; more += kChunkBytes) {
    if (absl::Status s = AddChunk(); !s.ok()) return s;
    std::memset(chunks_.back().get(), 0, kChunkBytes);
  }
  return absl::OkStatus();
}

absl::Status ChunkedSnapshotWriter::Write(const void* data, size_t n) {
  const char* bytes = static_cast<const char*>(data);
  while (n > 0) {
    if (last_used_ == kChunkBytes) {
      const size_t next = size_ == 0 ? 0 : current_ + 1;
      if (next == chunks_.size()) {
        if (absl::Status s = AddChunk(); !s.ok()) return s;
      }
      current_ = next;
      last_used_ = 0;
    }
    const size_t take = std::min(n, kChunkBytes - last_used_);
    std::memcpy(chunks_[current_].get() + last_used_, bytes, take);
    last_used_ += take;
    size_ += take;
    bytes += take;
    n -= take;
  }
  return absl::OkStatus();
}

absl::Status ChunkedSnapshotWriter::MoveTo(SnapshotWriter* out) {
  absl::Status status;
  const size_t used = size_ == 0 ? 0 : current_ + 1;
  for (size_t i = 0; i < used; ++i) {
    const size_t n = i == current_ ? last_used_ : kChunkBytes;
    if (status.ok()) status = out->Write(chunks_[i].get(), n);
    chunks_[i].reset();
  }
  chunks_.clear();
  current_ = 0;
  last_used_ = kChunkBytes;
  size_ = 0;
  return status;
}

absl::Status StringSnapshotReader::Read(void* data, size_t n) {
  if (n > bytes_.size() - position_) {
    return absl::DataLossError(absl::StrCat("snapshot: truncated, ", n,
                                            " bytes wanted at offset ",
                                            position_, " of ", bytes_.size()));
  }
  std::memcpy(data, bytes_.data() + position_, n);
  position_ += n;
  return absl::OkStatus();
}

}  // namespace hawiya::matcher
