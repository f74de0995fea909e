// Snapshot files: SnapshotWriter / SnapshotReader over a file, with framing,
// a checksum over every byte and the payload encrypted, written so that a
// crash at any point leaves the previous file usable.
//
// Layout (numbers little-endian, see snapshot.h):
//   magic       8 bytes  "HAWIYASN"
//   version     u32      kSnapshotFormatVersion
//   key version u64      the data key the payload is encrypted under
//   key check   8 bytes  SHA-256 of the key, truncated: names it, so a file
//                        sealed under another key is refused as such
//   nonce       12 bytes random, one per file
//   payload     ...      AES-256-GCM ciphertext of what the caller writes
//                        (its header, galleries); AAD: the 40 bytes above
//   tag         16 bytes GCM tag of the payload
//   length      u64      bytes before this field
//   end magic   8 bytes  "HAWIYEND"
//   checksum    u64      XXH64 (seed 0) of every byte before it
//
// The length makes truncation and appended bytes detectable without reading
// the payload; the checksum (Verify) catches accidental damage cheaply and
// says so clearly. The GCM tag authenticates the payload and the key version
// against deliberate change: it is checked by CheckAtEnd, once every payload
// byte has been read (and decrypted). See xxh64.h for what XXH64 does not
// protect against. The file is created 0600 as well. Format version 1 (a
// plaintext payload) is refused.
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

// Version 3: the matcher payload also holds each gallery's impostor
// statistics (matcher.cc). A version 2 file is refused like any other
// version, and the registry rebuilds the galleries (and so the statistics)
// from the store, then writes a version 3 snapshot.
inline constexpr uint32_t kSnapshotFormatVersion = 3;

// Forward declared so that this header does not pull in OpenSSL.
struct SnapshotCipher;

// Writes `path` atomically: bytes go to a temporary file beside it
// (path + ".tmp"); Commit appends the trailer, fsyncs the file, renames it
// over `path` and fsyncs the folder. Until Commit returns OK, `path` is
// untouched (whatever it held before stays), and a crash leaves at most the
// temporary file behind. Not thread-safe.
class SnapshotFileWriter final : public SnapshotWriter {
 public:
  struct Options {
    // The payload's AES-256-GCM key (32 bytes; required) and its version,
    // stored in the header for the reader to find the key by.
    std::string key;
    uint64_t key_version = 0;
    // Test seam: called after each write to the file with the number of
    // bytes written so far (a crash test kills the process from here).
    std::function<void(uint64_t)> on_write;
  };

  // The temporary file Create writes for `path`.
  static std::string TemporaryPath(const std::string& path);

  // Creates the temporary file (replacing one a crashed writer left) and
  // writes the head (magic to nonce). INVALID_ARGUMENT without a 32-byte
  // key. REQUIRES: the folder of `path` exists.
  static absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> Create(
      const std::string& path, Options options);

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
  // Names this file among all snapshot files: the hex of its nonce, random
  // per file and authenticated with the payload. SnapshotFileReader::file_id
  // reads it back.
  const std::string& file_id() const { return file_id_; }

 private:
  SnapshotFileWriter(std::string path, std::string temp_path, int fd,
                     Options options);

  // Encrypts payload bytes and writes the ciphertext.
  absl::Status WriteThrough(const char* data, size_t n);
  // Hashes and writes straight to the file (framing, ciphertext).
  absl::Status WriteFile(const char* data, size_t n);
  absl::Status Flush();

  const std::string path_;
  const std::string temp_path_;
  int fd_;
  const Options options_;
  std::unique_ptr<SnapshotCipher> cipher_;
  Xxh64 hash_;
  std::vector<char> buffer_;      // plaintext payload not yet encrypted
  std::vector<char> ciphertext_;  // one chunk of it encrypted
  uint64_t bytes_ = 0;
  uint64_t written_ = 0;  // to the file
  absl::Status status_;   // the first error; every later call returns it
  bool committed_ = false;
  std::string file_id_;
};

// Whether `path` is a snapshot of format version 1, which held templates in
// plaintext: such files are never read, and are deleted on sight.
bool IsPlaintextSnapshot(const std::string& path);

// Reads a file written by SnapshotFileWriter. Open checks the framing, which
// is cheap; Verify reads the whole file and checks the checksum. Until Verify
// has returned OK, what Read returns is unverified: a caller may refuse the
// snapshot on it (wrong store, other options) but must not act on it. Not
// thread-safe.
class SnapshotFileReader final : public SnapshotReader {
 public:
  struct Options {
    // The 32-byte key of a key version (the file's); an error refuses the
    // file with FAILED_PRECONDITION. Required.
    std::function<absl::StatusOr<std::string>(uint64_t key_version)> key;
  };

  // DATA_LOSS if the file is not a whole snapshot (magic, size, length,
  // end magic); FAILED_PRECONDITION for another format version, a key
  // version options.key has no key for, or a file sealed under another key;
  // NOT_FOUND or INTERNAL if it cannot be read.
  static absl::StatusOr<std::unique_ptr<SnapshotFileReader>> Open(
      const std::string& path, const Options& options);

  ~SnapshotFileReader() override;

  SnapshotFileReader(const SnapshotFileReader&) = delete;
  SnapshotFileReader& operator=(const SnapshotFileReader&) = delete;

  // Hashes every byte before the checksum and compares; DATA_LOSS if they
  // differ. Does not move the read position.
  absl::Status Verify();

  // Reads (decrypted) payload bytes, in order; DATA_LOSS past the end of
  // the payload. Unauthenticated until CheckAtEnd returns OK.
  absl::Status Read(void* data, size_t n) override;
  uint64_t Remaining() const override { return payload_end_ - position_; }

  // DATA_LOSS unless every payload byte has been read (a writer and reader
  // that disagree on the layout must not pass as a good snapshot) and the
  // GCM tag matches (the payload and key version are as written, under that
  // key). Only then may a caller act on what Read returned.
  absl::Status CheckAtEnd();

  uint64_t file_size() const { return file_size_; }
  uint64_t key_version() const { return key_version_; }
  // SnapshotFileWriter::file_id of the writer; authenticated by CheckAtEnd.
  const std::string& file_id() const { return file_id_; }

 private:
  SnapshotFileReader(std::string path, int fd, uint64_t file_size,
                     uint64_t payload_end, uint64_t checksum,
                     uint64_t key_version,
                     std::unique_ptr<SnapshotCipher> cipher);

  absl::Status Fill();

  const std::string path_;
  const int fd_;
  const uint64_t file_size_;
  // Offset of the trailer: the payload is [12, payload_end_).
  const uint64_t payload_end_;
  const uint64_t checksum_;
  const uint64_t key_version_;
  std::unique_ptr<SnapshotCipher> cipher_;
  uint64_t position_;
  // buffer_[begin_, end_) holds the file bytes from position_ on.
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  std::string file_id_;
};

}  // namespace hawiya::matcher

#endif  // HAWIYA_MATCHER_SNAPSHOT_FILE_H_
