#include "matcher/snapshot.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
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
