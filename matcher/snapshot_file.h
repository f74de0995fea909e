// Snapshot files: SnapshotWriter / SnapshotReader over a file, with framing
// and a checksum over every byte, written so that a crash at any point leaves
// the previous file usable.
//
// Layout (numbers little-endian, see snapshot.h):
//   magic       8 bytes  "HAWIYASN"
//   version     u32      kSnapshotFormatVersion
//   payload     ...      whatever the caller writes (its header, galleries)
//   length      u64      bytes before this field
//   end magic   8 bytes  "HAWIYEND"
//   checksum    u64      XXH64 (seed 0) of every byte before it
//
// The length makes truncation and appended bytes detectable without reading
// the payload; the checksum covers magic, version, payload, length and end
// magic. See xxh64.h for why XXH64 and what it does not protect against.
//
// Templates are written in plaintext: the file is created 0600, like the
// store. Issue 4 (template encryption) must encrypt the payload here, and
// replace the checksum with an AEAD tag, before templates are encrypted in
// the store; until then a snapshot is as sensitive as hawiya.db.
#ifndef HAWIYA_MATCHER_SNAPSHOT_FILE_H_
#define HAWIYA_MATCHER_SNAPSHOT_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "matcher/snapshot.h"
#include "matcher/xxh64.h"

namespace hawiya::matcher {

inline constexpr uint32_t kSnapshotFormatVersion = 1;

// Writes `path` atomically: bytes go to a temporary file beside it
// (path + ".tmp"); Commit appends the trailer, fsyncs the file, renames it
// over `path` and fsyncs the folder. Until Commit returns OK, `path` is
// untouched (whatever it held before stays), and a crash leaves at most the
// temporary file behind. Not thread-safe.
class SnapshotFileWriter final : public SnapshotWriter {
 public:
  struct Options {
    // Test seam: called after each write to the file with the number of
    // bytes written so far (a crash test kills the process from here).
    std::function<void(uint64_t)> on_write;
  };

  // The temporary file Create writes for `path`.
  static std::string TemporaryPath(const std::string& path);

  // Creates the temporary file (replacing one a crashed writer left) and
  // writes magic and version. REQUIRES: the folder of `path` exists.
  static absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Create(
      const std::string& path, Options options);
  static absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Create(
      const std::string& path) {
    return Create(path, Options());
  }

  // Removes the temporary file unless Commit succeeded.
  ~SnapshotFileWriter() override;

  SnapshotFileWriter(const SnapshotFileWriter&) = delete;
  SnapshotFileWriter& operator=(const SnapshotFileWriter&) = delete;

  absl::Status Write(const void* data, size_t n) override;

  // Trailer, fsync, rename, fsync of the folder. After an error the file is
  // abandoned (the destructor removes it) and `path` is as before.
  absl::Status Commit();

  // Bytes handed to Write so far, framing included.
  uint64_t bytes() const { return bytes_; }

 private:
  SnapshotFileWriter(std::string path, std::string temp_path, int fd,
                     Options options);

  // Hashes and writes straight to the file.
  absl::Status WriteThrough(const char* data, size_t n);
  absl::Status Flush();

  const std::string path_;
  const std::string temp_path_;
  int fd_;
  const Options options_;
  Xxh64 hash_;
  std::vector<char> buffer_;
  uint64_t bytes_ = 0;
  uint64_t written_ = 0;  // to the file
  absl::Status status_;   // the first error; every later call returns it
  bool committed_ = false;
};

// Reads a file written by SnapshotFileWriter. Open checks the framing, which
// is cheap; Verify reads the whole file and checks the checksum. Until Verify
// has returned OK, what Read returns is unverified: a caller may refuse the
// snapshot on it (wrong store, other options) but must not act on it. Not
// thread-safe.
class SnapshotFileReader final : public SnapshotReader {
 public:
  // DATA_LOSS if the file is not a whole snapshot (magic, size, length,
  // end magic); FAILED_PRECONDITION for another format version; NOT_FOUND or
  // INTERNAL if it cannot be read.
  static absl::StatusOr<std::unique_ptr<SnapshotFileReader>> Open(
      const std::string& path);

  ~SnapshotFileReader() override;

  SnapshotFileReader(const SnapshotFileReader&) = delete;
  SnapshotFileReader& operator=(const SnapshotFileReader&) = delete;

  // Hashes every byte before the checksum and compares; DATA_LOSS if they
  // differ. Does not move the read position.
  absl::Status Verify();

  // Reads payload bytes; DATA_LOSS past the end of the payload.
  absl::Status Read(void* data, size_t n) override;
  uint64_t Remaining() const override { return payload_end_ - position_; }

  // DATA_LOSS unless every payload byte has been read: a writer and reader
  // that disagree on the layout must not pass as a good snapshot.
  absl::Status CheckAtEnd() const;

  uint64_t file_size() const { return file_size_; }

 private:
  SnapshotFileReader(std::string path, int fd, uint64_t file_size,
                     uint64_t payload_end, uint64_t checksum);

  absl::Status Fill();

  const std::string path_;
  const int fd_;
  const uint64_t file_size_;
  // Offset of the trailer: the payload is [12, payload_end_).
  const uint64_t payload_end_;
  const uint64_t checksum_;
  uint64_t position_;
  // buffer_[begin_, end_) holds the file bytes from position_ on.
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_SNAPSHOT_FILE_H_
