// Snapshot files (matcher/snapshot_file.h): framing, checksum, encryption,
// atomic replacement, and that no damaged or altered file ever passes as a
// good one.
#include "matcher/snapshot_file.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/xxh64.h"

namespace hawiya::matcher {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kKey(32, 'k');
constexpr uint64_t kKeyVersion = 7;

SnapshotFileWriter::Options KeyedWriter() {
  SnapshotFileWriter::Options options;
  options.key = kKey;
  options.key_version = kKeyVersion;
  return options;
}

// Knows kKeyVersion only.
SnapshotFileReader::Options KeyedReader(const std::string& key = kKey) {
  SnapshotFileReader::Options options;
  options.key = [key](uint64_t version) -> absl::StatusOr<std::string> {
    if (version != kKeyVersion) {
      return absl::NotFoundError(absl::StrCat("no key ", version));
    }
    return key;
  };
  return options;
}

// Reference outputs of libxxhash 0.8.1's XXH64 for bytes b[i] = i * 7 + 3.
TEST(Xxh64Test, MatchesTheReferenceImplementation) {
  std::vector<unsigned char> bytes(5000);
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<unsigned char>(i * 7 + 3);
  }
  EXPECT_EQ(Xxh64Hash(bytes.data(), 0, 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(Xxh64Hash(bytes.data(), 31, 0), 0xa2aa5f33cc4a6119ULL);
  EXPECT_EQ(Xxh64Hash(bytes.data(), 100, 0), 0xa61f8d4c170fe531ULL);
  EXPECT_EQ(Xxh64Hash(bytes.data(), 1000, 0x9E3779B97F4A7C15ULL),
            0x442acd0a822e86f6ULL);
  EXPECT_EQ(Xxh64Hash(bytes.data(), 5000, 1), 0x7764b1b68e71afa6ULL);
}

TEST(Xxh64Test, StreamingEqualsOneShotWhateverTheChunks) {
  std::vector<unsigned char> bytes(3000);
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<unsigned char>(i * 131 + 17);
  }
  for (size_t n : {0u, 1u, 31u, 32u, 33u, 64u, 100u, 3000u}) {
    for (size_t chunk : {1u, 3u, 8u, 31u, 32u, 33u, 1000u}) {
      Xxh64 hash(5);
      for (size_t done = 0; done < n; done += chunk) {
        hash.Update(bytes.data() + done, std::min(chunk, n - done));
      }
      EXPECT_EQ(hash.Digest(), Xxh64Hash(bytes.data(), n, 5))
          << "n=" << n << " chunk=" << chunk;
    }
  }
}

class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern =
        absl::StrCat(base != nullptr ? base : "/tmp", "/snapfile-XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (fs::path(dir_) / "snapshot.hws").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A small snapshot: a string, numbers and an array.
  void WriteSmall(const std::string& path) {
    absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
        SnapshotFileWriter::Create(path, KeyedWriter());
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->WriteString("store-1").ok());
    ASSERT_TRUE((*writer)->WriteI64(-42).ok());
    ASSERT_TRUE((*writer)->WriteFloats({1.5f, -2.0f, 3.25f}).ok());
    ASSERT_TRUE((*writer)->Commit().ok());
  }

  // Opens, verifies and reads back what WriteSmall wrote.
  absl::Status ReadSmall(const std::string& path) {
    absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
        SnapshotFileReader::Open(path, KeyedReader());
    if (!reader.ok()) return reader.status();
    if (absl::Status s = (*reader)->Verify(); !s.ok()) return s;
    absl::StatusOr<std::string> id = (*reader)->ReadString(100);
    if (!id.ok()) return id.status();
    absl::StatusOr<int64_t> number = (*reader)->ReadI64();
    if (!number.ok()) return number.status();
    std::vector<float> floats;
    if (absl::Status s = (*reader)->ReadFloats(100, &floats); !s.ok()) return s;
    EXPECT_EQ(*id, "store-1");
    EXPECT_EQ(*number, -42);
    EXPECT_EQ(floats, (std::vector<float>{1.5f, -2.0f, 3.25f}));
    return (*reader)->CheckAtEnd();
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void Spit(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SnapshotFileTest, RoundTripsSmallAndLargeWrites) {
  // Larger than the writer's buffer and the reader's, so both the buffered
  // and the direct paths run.
  std::vector<float> large(3 << 20);
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<float>(i);
  std::vector<uint64_t> progress;
  {
    SnapshotFileWriter::Options options = KeyedWriter();
    options.on_write = [&progress](uint64_t n) { progress.push_back(n); };
    absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
        SnapshotFileWriter::Create(path_, options);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->WriteU32(7).ok());
    ASSERT_TRUE((*writer)->WriteFloats(large).ok());
    ASSERT_TRUE((*writer)->WriteString("tail").ok());
    // Nothing under the final name until Commit.
    EXPECT_FALSE(fs::exists(path_));
    EXPECT_TRUE(fs::exists(SnapshotFileWriter::TemporaryPath(path_)));
    ASSERT_TRUE((*writer)->Commit().ok());
    EXPECT_EQ((*writer)->bytes(), fs::file_size(path_));
  }
  EXPECT_FALSE(fs::exists(SnapshotFileWriter::TemporaryPath(path_)));
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), fs::file_size(path_));
  // Owner-only, like the store, although the payload is encrypted.
  EXPECT_EQ(fs::status(path_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
      SnapshotFileReader::Open(path_, KeyedReader());
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE((*reader)->Verify().ok());
  EXPECT_EQ(*(*reader)->ReadU32(), 7u);
  std::vector<float> back;
  ASSERT_TRUE((*reader)->ReadFloats(large.size(), &back).ok());
  EXPECT_EQ(back, large);
  EXPECT_EQ((*reader)->key_version(), kKeyVersion);
  EXPECT_EQ((*reader)->Remaining(), 8u + 4u);
  EXPECT_THAT((*reader)->CheckAtEnd().message(), HasSubstr("left unread"));
  EXPECT_EQ(*(*reader)->ReadString(10), "tail");
  EXPECT_TRUE((*reader)->CheckAtEnd().ok());
  // Past the payload: the trailer is not payload.
  uint8_t byte;
  EXPECT_EQ((*reader)->Read(&byte, 1).code(), absl::StatusCode::kDataLoss);
}

TEST_F(SnapshotFileTest, EverySingleByteCorruptionIsDetected) {
  WriteSmall(path_);
  ASSERT_TRUE(ReadSmall(path_).ok());
  const std::string good = Slurp(path_);
  const std::string bad_path = path_ + ".bad";
  // Every byte, flipped three ways: magic, version, payload, length, end
  // magic and the checksum itself.
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xFF}) {
      std::string bytes = good;
      bytes[i] = static_cast<char>(bytes[i] ^ flip);
      Spit(bad_path, bytes);
      absl::Status status = ReadSmall(bad_path);
      EXPECT_FALSE(status.ok()) << "byte " << i << " ^ " << int{flip};
      EXPECT_THAT(status.code(),
                  ::testing::AnyOf(absl::StatusCode::kDataLoss,
                                   absl::StatusCode::kFailedPrecondition))
          << "byte " << i << ": " << status;
    }
  }
  // Every truncation, including the empty file.
  for (size_t n = 0; n < good.size(); ++n) {
    Spit(bad_path, good.substr(0, n));
    EXPECT_EQ(ReadSmall(bad_path).code(), absl::StatusCode::kDataLoss)
        << "truncated to " << n;
  }
  // Appended bytes.
  Spit(bad_path, good + "x");
  EXPECT_EQ(ReadSmall(bad_path).code(), absl::StatusCode::kDataLoss);
  Spit(bad_path, good + good);
  EXPECT_EQ(ReadSmall(bad_path).code(), absl::StatusCode::kDataLoss);
}

TEST_F(SnapshotFileTest, ReportsWhatIsWrong) {
  WriteSmall(path_);
  const std::string good = Slurp(path_);
  std::string bytes = good;
  bytes[0] = 'X';
  Spit(path_, bytes);
  EXPECT_THAT(ReadSmall(path_).message(), HasSubstr("bad magic"));
  bytes = good;
  bytes[8] = 1;  // format version 1: a plaintext payload, refused
  Spit(path_, bytes);
  absl::Status status = ReadSmall(path_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("format version 1"));
  bytes = good;
  bytes[50] ^= 1;  // inside the payload (the head is 40 bytes)
  Spit(path_, bytes);
  EXPECT_THAT(ReadSmall(path_).message(), HasSubstr("checksum mismatch"));
  Spit(path_, good.substr(0, good.size() - 1));
  EXPECT_THAT(ReadSmall(path_).message(), HasSubstr("truncated"));
  EXPECT_EQ(SnapshotFileReader::Open(path_ + ".missing", KeyedReader())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SnapshotFileTest, AbandonedWriteLeavesThePreviousFile) {
  WriteSmall(path_);
  const std::string before = Slurp(path_);
  {
    absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
        SnapshotFileWriter::Create(path_, KeyedWriter());
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->WriteString("something else").ok());
    // Destroyed without Commit, as on an error.
  }
  EXPECT_EQ(Slurp(path_), before);
  EXPECT_FALSE(fs::exists(SnapshotFileWriter::TemporaryPath(path_)));
  EXPECT_TRUE(ReadSmall(path_).ok());
}

TEST_F(SnapshotFileTest, CrashedWriterLeavesThePreviousFileAndIsReplaced) {
  WriteSmall(path_);
  const std::string before = Slurp(path_);
  // What kill -9 mid-write leaves: a partial temporary file.
  const std::string temp = SnapshotFileWriter::TemporaryPath(path_);
  Spit(temp, before.substr(0, before.size() / 2));
  EXPECT_TRUE(ReadSmall(path_).ok());
  EXPECT_FALSE(ReadSmall(temp).ok());
  // The next writer truncates it and replaces the file whole.
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
      SnapshotFileWriter::Create(path_, KeyedWriter());
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->WriteString("v2").ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_FALSE(fs::exists(temp));
  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
      SnapshotFileReader::Open(path_, KeyedReader());
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE((*reader)->Verify().ok());
  EXPECT_EQ(*(*reader)->ReadString(10), "v2");
}

TEST_F(SnapshotFileTest, CreateInAMissingFolderFails) {
  EXPECT_FALSE(SnapshotFileWriter::Create(
                   (fs::path(dir_) / "no" / "x.hws").string(), KeyedWriter())
                   .ok());
}

TEST_F(SnapshotFileTest, RefusesToWriteWithoutAKey) {
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
      SnapshotFileWriter::Create(path_, SnapshotFileWriter::Options());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(SnapshotFileWriter::TemporaryPath(path_)));
}

TEST_F(SnapshotFileTest, PayloadIsEncrypted) {
  // Distinctive floats, written whole and in pieces: neither they nor any
  // 64-byte run of them is in the file.
  std::vector<float> secret(4096);
  for (size_t i = 0; i < secret.size(); ++i) {
    secret[i] = 0.123456f + static_cast<float>(i) * 1e-4f;
  }
  {
    absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
        SnapshotFileWriter::Create(path_, KeyedWriter());
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->WriteFloats(secret).ok());
    ASSERT_TRUE((*writer)->WriteString("store-secret-id").ok());
    ASSERT_TRUE((*writer)->Commit().ok());
  }
  const std::string file = Slurp(path_);
  const std::string raw(reinterpret_cast<const char*>(secret.data()),
                        secret.size() * sizeof(float));
  for (size_t offset = 0; offset + 64 <= raw.size(); offset += 64) {
    ASSERT_EQ(file.find(raw.substr(offset, 64)), std::string::npos)
        << "plaintext at vector byte " << offset;
  }
  EXPECT_EQ(file.find("store-secret-id"), std::string::npos);
  // And it reads back.
  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
      SnapshotFileReader::Open(path_, KeyedReader());
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<float> back;
  ASSERT_TRUE((*reader)->ReadFloats(secret.size(), &back).ok());
  EXPECT_EQ(back, secret);
  EXPECT_EQ(*(*reader)->ReadString(100), "store-secret-id");
  EXPECT_TRUE((*reader)->CheckAtEnd().ok());
}

TEST_F(SnapshotFileTest, AnotherKeyOrVersionIsRefused) {
  WriteSmall(path_);
  // Another key under the same version: refused on the key check.
  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
      SnapshotFileReader::Open(path_, KeyedReader(std::string(32, 'x')));
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reader.status().message(), HasSubstr("another key"));
  // Past the key check (rewritten to match), the GCM tag still refuses it;
  // the checksum, of the ciphertext, is recomputed too.
  {
    std::string bytes = Slurp(path_);
    const std::string other(32, 'x');
    const std::string input = "hawiya.snapshot.key-check.v1:" + other;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    ASSERT_EQ(EVP_Digest(input.data(), input.size(), digest, &size,
                         EVP_sha256(), nullptr),
              1);
    std::memcpy(bytes.data() + 20, digest, 8);
    const uint64_t checksum = Xxh64Hash(bytes.data(), bytes.size() - 8, 0);
    std::memcpy(bytes.data() + bytes.size() - 8, &checksum, 8);
    Spit(path_, bytes);
    reader = SnapshotFileReader::Open(path_, KeyedReader(other));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE((*reader)->Verify().ok());
    std::string rest((*reader)->Remaining(), '\0');
    ASSERT_TRUE((*reader)->Read(rest.data(), rest.size()).ok());
    absl::Status status = (*reader)->CheckAtEnd();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr("authentication failed"));
  }
  // A key version the reader has no key for.
  SnapshotFileWriter::Options options = KeyedWriter();
  options.key_version = 8;
  absl::StatusOr<std::unique_ptr<SnapshotFileWriter>> writer =
      SnapshotFileWriter::Create(path_, options);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  absl::StatusOr<std::unique_ptr<SnapshotFileReader>> refused =
      SnapshotFileReader::Open(path_, KeyedReader());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("data key version 8"));
}

TEST_F(SnapshotFileTest, ChangesWithARecomputedChecksumFailAuthentication) {
  // Someone who can write the file can recompute XXH64; not the GCM tag.
  WriteSmall(path_);
  const std::string good = Slurp(path_);
  // A payload byte, then the nonce in the head (the AAD).
  for (size_t i : {size_t{50}, size_t{30}}) {
    std::string bytes = good;
    bytes[i] ^= 1;
    const uint64_t checksum = Xxh64Hash(bytes.data(), bytes.size() - 8, 0);
    std::memcpy(bytes.data() + bytes.size() - 8, &checksum, 8);
    Spit(path_, bytes);
    absl::StatusOr<std::unique_ptr<SnapshotFileReader>> reader =
        SnapshotFileReader::Open(path_, KeyedReader());
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_TRUE((*reader)->Verify().ok()) << "byte " << i;
    // Read decrypts into garbage; only CheckAtEnd says so.
    std::string rest((*reader)->Remaining(), '\0');
    ASSERT_TRUE((*reader)->Read(rest.data(), rest.size()).ok());
    absl::Status status = (*reader)->CheckAtEnd();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << "byte " << i;
    EXPECT_THAT(status.message(), HasSubstr("authentication failed"));
  }
}

TEST(ChunkedSnapshotWriterTest, MovesEveryByteInOrderAcrossChunks) {
  // Writes of awkward sizes that straddle the 64 MiB chunk boundary.
  std::vector<uint32_t> values((ChunkedSnapshotWriter::kChunkBytes / 4) + 999);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<uint32_t>(i * 2654435761u);
  }
  ChunkedSnapshotWriter chunked;
  StringSnapshotWriter direct;
  const char* bytes = reinterpret_cast<const char*>(values.data());
  const size_t total = values.size() * 4;
  for (size_t done = 0, step = 1; done < total; step = step * 7 + 3) {
    const size_t n = std::min(step % (3 << 20) + 1, total - done);
    ASSERT_TRUE(chunked.Write(bytes + done, n).ok());
    ASSERT_TRUE(direct.Write(bytes + done, n).ok());
    done += n;
  }
  EXPECT_EQ(chunked.size(), total);
  StringSnapshotWriter moved;
  ASSERT_TRUE(chunked.MoveTo(&moved).ok());
  EXPECT_TRUE(moved.bytes() == direct.bytes());
  EXPECT_EQ(chunked.size(), 0u);
  // Empty, and usable again, with room reserved before and during writes.
  ASSERT_TRUE(chunked.Reserve(10).ok());
  ASSERT_TRUE(chunked.WriteU32(7).ok());
  ASSERT_TRUE(chunked.Reserve(ChunkedSnapshotWriter::kChunkBytes).ok());
  const std::string tail(ChunkedSnapshotWriter::kChunkBytes, 'x');
  ASSERT_TRUE(chunked.Write(tail.data(), tail.size()).ok());
  ASSERT_TRUE(chunked.WriteU32(9).ok());
  StringSnapshotWriter again;
  ASSERT_TRUE(chunked.MoveTo(&again).ok());
  ASSERT_EQ(again.bytes().size(), tail.size() + 8);
  StringSnapshotReader in(again.bytes());
  EXPECT_EQ(*in.ReadU32(), 7u);
  std::string middle(tail.size(), '\0');
  ASSERT_TRUE(in.Read(middle.data(), middle.size()).ok());
  EXPECT_TRUE(middle == tail);
  EXPECT_EQ(*in.ReadU32(), 9u);
}

TEST_F(SnapshotFileTest, CorruptCountsDoNotAllocate) {
  // An unchecksummed stream whose array count is absurd: refused on the
  // stream's length, before any allocation.
  StringSnapshotWriter out;
  ASSERT_TRUE(out.WriteU64(uint64_t{1} << 60).ok());
  ASSERT_TRUE(out.WriteFloat(1.0f).ok());
  StringSnapshotReader in(out.bytes());
  std::vector<float> floats;
  absl::Status status =
      in.ReadFloats(std::numeric_limits<size_t>::max(), &floats);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("bytes left"));
}

}  // namespace
}  // namespace hawiya::matcher
