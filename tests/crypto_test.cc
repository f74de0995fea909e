// Templates encrypted at rest: AES-256-GCM (enroll/crypto.h), the key file,
// and the store's use of them: sealed rows bound to their identity, refusal
// to open with a wrong or missing key, migration of plaintext rows, online
// key rotation (also under kill -9), and no plaintext vector in any file.
#include "enroll/crypto.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "enroll/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hawiya/v1/types.pb.h"
#include "tests/testing/raw_db.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::hawiya::v1::Person;
using ::hawiya::v1::Template;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

fs::path UniqueDir() {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  static std::atomic<int> counter{0};
  std::string name =
      absl::StrCat("hawiya_crypto_", getpid(), "_", info->test_suite_name(),
                   "_", info->name(), "_", counter++);
  std::replace(name.begin(), name.end(), '/', '_');
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

Person MakePerson(const std::string& subject_id,
                  const std::string& national_id) {
  Person p;
  p.set_subject_id(subject_id);
  p.set_state(hawiya::v1::ACTIVE);
  p.set_national_id(national_id);
  p.set_issuing_country("KWT");
  p.mutable_name_latin()->set_given("Given");
  p.mutable_name_latin()->set_family("Family");
  return p;
}

// Distinctive components, so their bytes can be searched for.
Template Face(float seed) {
  Template t;
  t.set_modality(hawiya::v1::FACE);
  t.set_position(0);
  t.set_quality(80);
  t.set_algorithm("test/1");
  for (int i = 0; i < 512; ++i) {
    t.add_vector(seed + 0.000917f * static_cast<float>(i) +
                 3e-7f * static_cast<float>(i * i));
  }
  return t;
}

std::string VectorBytes(const Template& t) {
  return std::string(reinterpret_cast<const char*>(t.vector().data()),
                     t.vector_size() * sizeof(float));
}

IdempotencyKey Key(const std::string& id) {
  return IdempotencyKey{id, "Enroll", "digest-" + id};
}

// Persons s-0 .. s-(count-1), each with one face seeded step * i; true if
// every write succeeded.
bool CreatePersons(Store& store, int count, float step) {
  for (int i = 0; i < count; ++i) {
    if (!store
             .CreatePerson(Key(absl::StrCat("r", i)),
                           MakePerson(absl::StrCat("s-", i), absl::StrCat(i)),
                           {Face(step * static_cast<float>(i))})
             .ok()) {
      return false;
    }
  }
  return true;
}

using ::hawiya::testing::RawDb;

// Chunks of `needle` (64 bytes every 64) found in `haystack`: a page
// boundary could split the whole.
int FoundChunks(const std::string& haystack, const std::string& needle) {
  int found = 0;
  for (size_t offset = 0; offset + 64 <= needle.size(); offset += 64) {
    if (haystack.find(needle.substr(offset, 64)) != std::string::npos) ++found;
  }
  return found;
}

// Every byte of every file under `dir`, recursively.
std::string AllBytesUnder(const fs::path& dir) {
  std::string all;
  for (const fs::directory_entry& entry :
       fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) all += ReadFile(entry.path());
  }
  return all;
}

TEST(AeadKeyTest, RoundTripsAndRefusesAnythingElse) {
  absl::StatusOr<AeadKey> key = AeadKey::Random();
  ASSERT_TRUE(key.ok());
  absl::StatusOr<std::string> sealed = key->Seal("aad-1", "hello template");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), 14 + kAeadOverheadBytes);
  EXPECT_EQ(sealed->find("hello"), std::string::npos);
  EXPECT_EQ(*key->Open("aad-1", *sealed), "hello template");
  // A fresh nonce each time: the same input never seals alike.
  EXPECT_NE(*key->Seal("aad-1", "hello template"), *sealed);
  EXPECT_EQ(key->Open("aad-2", *sealed).status().code(),
            absl::StatusCode::kDataLoss);
  for (size_t i = 0; i < sealed->size(); ++i) {
    std::string bad = *sealed;
    bad[i] ^= 0x01;
    EXPECT_EQ(key->Open("aad-1", bad).status().code(),
              absl::StatusCode::kDataLoss)
        << "byte " << i;
  }
  EXPECT_FALSE(key->Open("aad-1", sealed->substr(0, 20)).ok());
  absl::StatusOr<AeadKey> other = AeadKey::Random();
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->Open("aad-1", *sealed).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(AeadKey::FromBytes("short").ok());
}

TEST(KeyFileTest, CreatesOwnerOnlyAndRefusesUnsafeFiles) {
  const fs::path dir = UniqueDir();
  const std::string path = (dir / "keys" / "kek.key").string();
  ASSERT_TRUE(CreateKeyFile(path).ok());
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(dir / "keys").permissions() & fs::perms::all,
            fs::perms::owner_all);
  EXPECT_EQ(fs::file_size(path), kAeadKeyBytes);
  const std::string key = ReadFile(path);
  // Never overwritten.
  EXPECT_EQ(CreateKeyFile(path).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFile(path), key);
  ASSERT_TRUE(LoadKeyFile(path).ok());

  ::chmod(path.c_str(), 0644);
  absl::StatusOr<AeadKey> loaded = LoadKeyFile(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr("0644"));
  EXPECT_THAT(loaded.status().message(), HasSubstr(path));
  ::chmod(path.c_str(), 0400);
  EXPECT_TRUE(LoadKeyFile(path).ok());
  ::chmod(path.c_str(), 0600);
  WriteFile(path, key + "\n");
  EXPECT_THAT(LoadKeyFile(path).status().message(), HasSubstr("33 bytes"));
  EXPECT_THAT(LoadKeyFile((dir / "none").string()).status().message(),
              HasSubstr("no such file"));
  fs::remove_all(dir);
}

class StoreCryptoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = UniqueDir();
    path_ = dir_ / "hawiya.db";
    key_file_ = dir_ / "keys" / "kek.key";
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<std::unique_ptr<Store>> Open(std::string key_file = "") {
    return Store::Open(StoreOptions{path_.string(), std::move(key_file)});
  }

  std::unique_ptr<Store> MustOpen() {
    absl::StatusOr<std::unique_ptr<Store>> store = Open();
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static std::vector<TemplateRecord> Active(Store& store) {
    std::vector<TemplateRecord> out;
    absl::Status status = store.ForEachActiveTemplate([&](TemplateRecord&& r) {
      out.push_back(std::move(r));
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  fs::path dir_;
  fs::path path_;
  fs::path key_file_;
};

TEST_F(StoreCryptoTest, TemplatesRoundTripSealed) {
  const Template a = Face(0.3131f);
  const Template b = Face(-0.2727f);
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(store->key_report().key_file_created);
    EXPECT_EQ(store->key_report().key_file, key_file_.string());
    ASSERT_TRUE(
        store->CreatePerson(Key("r1"), MakePerson("s-1", "1"), {a, b}).ok());
  }
  EXPECT_EQ(fs::status(key_file_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->key_report().key_file_created);
  std::vector<TemplateRecord> active = Active(*store);
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(VectorBytes(active[0].tmpl), VectorBytes(a));
  EXPECT_EQ(VectorBytes(active[1].tmpl), VectorBytes(b));
  absl::StatusOr<std::vector<TemplateRecord>> of =
      store->ActiveTemplatesOf({"s-1"});
  ASSERT_TRUE(of.ok());
  ASSERT_EQ(of->size(), 2u);
  EXPECT_EQ(VectorBytes((*of)[1].tmpl), VectorBytes(b));
  store.reset();
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates WHERE key_version = 1"), 2);
  EXPECT_EQ(raw.Int("SELECT length(vector) FROM templates LIMIT 1"),
            static_cast<int64_t>(512 * 4 + kAeadOverheadBytes));
}

TEST_F(StoreCryptoTest, SealedVectorMovedToAnotherRowDoesNotOpen) {
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store
                    ->CreatePerson(Key("r1"), MakePerson("s-1", "1"),
                                   {Face(0.1f), Face(0.2f)})
                    .ok());
    ASSERT_TRUE(
        store->CreatePerson(Key("r2"), MakePerson("s-2", "2"), {Face(0.3f)})
            .ok());
  }
  {
    // s-1's first sealed vector over s-2's row (another subject, id).
    RawDb raw(path_);
    raw.Exec(
        "UPDATE templates SET vector = (SELECT vector FROM templates WHERE "
        "subject_id = 's-1' ORDER BY template_id LIMIT 1) WHERE subject_id = "
        "'s-2'");
  }
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<TemplateRecord>> read =
      store->ActiveTemplatesOf({"s-2"});
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("does not decrypt"));
  EXPECT_TRUE(store->ActiveTemplatesOf({"s-1"}).ok());
  store.reset();
  {
    // Within one subject: the second template's vector into the first row.
    RawDb raw(path_);
    raw.Exec(
        "UPDATE templates SET vector = (SELECT vector FROM templates WHERE "
        "subject_id = 's-1' ORDER BY template_id DESC LIMIT 1) WHERE "
        "template_id = (SELECT MIN(template_id) FROM templates)");
  }
  store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ActiveTemplatesOf({"s-1"}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(StoreCryptoTest, ChangedByteOrKeyVersionDoesNotOpen) {
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreatePerson(Key("r1"), MakePerson("s-1", "1"), {Face(0.1f)})
            .ok());
    ASSERT_TRUE(
        store->CreatePerson(Key("r2"), MakePerson("s-2", "2"), {Face(0.2f)})
            .ok());
    // A rotation stopped after one batch: s-1 under version 2, s-2 under 1,
    // both keys live.
    RotateKeyOptions options;
    options.batch_rows = 1;
    options.cancelled = [] { return true; };
    ASSERT_EQ(store->RotateDataKey(options).status().code(),
              absl::StatusCode::kCancelled);
  }
  for (size_t i : {size_t{0}, size_t{5}, size_t{100}, size_t{2075}}) {
    RawDb raw(path_);
    const std::string good =
        raw.Blob("SELECT vector FROM templates WHERE subject_id = 's-1'");
    ASSERT_EQ(good.size(), 512 * 4 + kAeadOverheadBytes);
    std::string bad = good;
    bad[i] ^= 0x10;
    raw.ExecBlob("UPDATE templates SET vector = ?1 WHERE subject_id = 's-1'",
                 bad);
    absl::StatusOr<std::unique_ptr<Store>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->ActiveTemplatesOf({"s-1"}).status().code(),
              absl::StatusCode::kDataLoss)
        << "byte " << i;
    store->reset();
    raw.ExecBlob("UPDATE templates SET vector = ?1 WHERE subject_id = 's-1'",
                 good);
  }
  // Each row claiming the other's (live) key version.
  RawDb(path_).Exec("UPDATE templates SET key_version = 3 - key_version");
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ActiveTemplatesOf({"s-1"}).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store->ActiveTemplatesOf({"s-2"}).status().code(),
            absl::StatusCode::kDataLoss);
  store.reset();
  RawDb(path_).Exec("UPDATE templates SET key_version = 3 - key_version");
  store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->ActiveTemplatesOf({"s-1", "s-2"}).ok());
}

TEST_F(StoreCryptoTest, WrongOrMissingKeyRefusesToOpen) {
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreatePerson(Key("r1"), MakePerson("s-1", "1"), {Face(0.1f)})
            .ok());
  }
  const std::string good = ReadFile(key_file_);

  // Another key.
  fs::remove(key_file_);
  ASSERT_TRUE(CreateKeyFile(key_file_.string()).ok());
  absl::StatusOr<std::unique_ptr<Store>> store = Open();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("does not unwrap"));
  EXPECT_THAT(store.status().message(), HasSubstr(key_file_.string()));

  // No key: the default is not re-created over a store that has data keys.
  fs::remove(key_file_);
  store = Open();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("no such file"));
  EXPECT_FALSE(fs::exists(key_file_));

  // Readable by others.
  WriteFile(key_file_, good);
  ::chmod(key_file_.c_str(), 0640);
  store = Open();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("wider than 0600"));

  // The right one, moved elsewhere and named.
  const fs::path moved = dir_ / "elsewhere.key";
  fs::rename(key_file_, moved);
  ::chmod(moved.c_str(), 0600);
  store = Open(moved.string());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->ActiveTemplatesOf({"s-1"})->size(), 1u);
  EXPECT_FALSE(fs::exists(key_file_));
}

TEST_F(StoreCryptoTest, NamedKeyFileMustExist) {
  absl::StatusOr<std::unique_ptr<Store>> store =
      Open((dir_ / "missing.key").string());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("hawiya admin gen-key"));
  const std::string named = (dir_ / "named.key").string();
  ASSERT_TRUE(CreateKeyFile(named).ok());
  store = Open(named);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->key_report().key_file_created);
  EXPECT_FALSE(fs::exists(key_file_));
}

TEST_F(StoreCryptoTest, PlaintextRowsOfAnOlderVersionAreEncryptedOnOpen) {
  const Template old = Face(0.5555f);
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreatePerson(Key("r1"), MakePerson("s-1", "1"), {}).ok());
  }
  {
    // What schema 2 wrote: the plaintext vector, key_version 0, and no
    // record that every template is sealed.
    RawDb raw(path_);
    raw.Exec("DELETE FROM meta WHERE key = 'templates_sealed'");
    raw.ExecBlob(
        "INSERT INTO templates (subject_id, modality, position, quality, "
        "algorithm, vector, key_version) VALUES ('s-1', 1, 0, 50, 'old', ?1, "
        "0)",
        VectorBytes(old));
  }
  ASSERT_GT(FoundChunks(AllBytesUnder(dir_), VectorBytes(old)), 0);
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->key_report().templates_encrypted, 1);
  std::vector<TemplateRecord> active = Active(*store);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(VectorBytes(active[0].tmpl), VectorBytes(old));
  EXPECT_EQ(RawDb(path_).Int("SELECT COUNT(*) FROM templates WHERE "
                             "key_version = 0"),
            0);
  store.reset();
  EXPECT_EQ(FoundChunks(AllBytesUnder(dir_), VectorBytes(old)), 0);

  // Once all are sealed, a plaintext row slipped in behind the store's back
  // is refused, not trusted (nor looked for at each start).
  RawDb(path_).ExecBlob(
      "INSERT INTO templates (subject_id, modality, position, quality, "
      "algorithm, vector, key_version) VALUES ('s-1', 1, 0, 50, 'forged', ?1, "
      "0)",
      VectorBytes(Face(0.7777f)));
  store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->key_report().templates_encrypted, 0);
  absl::StatusOr<std::vector<TemplateRecord>> read =
      store->ActiveTemplatesOf({"s-1"});
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("unencrypted"));
}

TEST_F(StoreCryptoTest, NoPlaintextVectorInAnyFile) {
  std::vector<Template> templates;
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 20; ++i) {
      templates.push_back(Face(0.01f * static_cast<float>(i) + 0.0037f));
      ASSERT_TRUE(
          store
              ->CreatePerson(Key(absl::StrCat("r", i)),
                             MakePerson(absl::StrCat("s-", i), absl::StrCat(i)),
                             {templates.back()})
              .ok());
    }
    ASSERT_TRUE(store->RotateDataKey({}).ok());
    // Checked while open too: the WAL holds the latest pages.
    const std::string all = AllBytesUnder(dir_);
    for (const Template& t : templates) {
      EXPECT_EQ(FoundChunks(all, VectorBytes(t)), 0);
    }
  }
  const std::string all = AllBytesUnder(dir_);
  for (const Template& t : templates) {
    EXPECT_EQ(FoundChunks(all, VectorBytes(t)), 0);
  }
}

TEST_F(StoreCryptoTest, RotationUnderConcurrentEnrollment) {
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(CreatePersons(*store, 60, 0.001f));
  std::atomic<bool> stop{false};
  std::atomic<int> enrolled{0};
  std::thread writer([&] {
    for (int i = 1000; !stop.load(); ++i) {
      ASSERT_TRUE(
          store
              ->CreatePerson(Key(absl::StrCat("r", i)),
                             MakePerson(absl::StrCat("s-", i), absl::StrCat(i)),
                             {Face(0.001f * static_cast<float>(i))})
              .ok());
      ++enrolled;
    }
  });
  RotateKeyOptions options;
  options.batch_rows = 7;
  options.after_batch = [&](int64_t) {
    // Let the writer in between batches (for a while at most).
    const int before = enrolled.load();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (enrolled.load() == before &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  };
  absl::StatusOr<RotateKeyResult> rotated = store->RotateDataKey(options);
  stop = true;
  writer.join();
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->key_version, 2);
  EXPECT_GE(rotated->templates_reencrypted, 60);
  EXPECT_THAT(rotated->retired_versions, ElementsAre(1));
  EXPECT_GT(enrolled.load(), 0);
  const int64_t total = 60 + enrolled.load();
  EXPECT_EQ(static_cast<int64_t>(Active(*store).size()), total);
  EXPECT_EQ(store->GetDataKey(1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->CurrentDataKey()->version, 2);
  store.reset();
  RawDb raw(path_);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM templates WHERE key_version = 2"),
            total);
  EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM data_keys"), 1);
  store = MustOpen();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(static_cast<int64_t>(Active(*store).size()), total);
}

// kill -9 in the middle of a rotation, with enrollments committing beside
// it: every acknowledged enrollment and every earlier template is readable
// after, and the next rotation finishes the job.
TEST_F(StoreCryptoTest, KillNineMidRotationLosesNothing) {
  constexpr int kBefore = 50;
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(CreatePersons(*store, kBefore, 0.001f));
  }
  int acks[2];
  ASSERT_EQ(::pipe(acks), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(acks[0]);
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open(StoreOptions{path_.string(), ""});
    if (!store.ok()) ::_exit(3);
    std::atomic<int> batches{0};
    // Enrolls until killed; a line on the pipe acknowledges each commit.
    std::thread writer([&] {
      for (int i = 1000;; ++i) {
        const std::string subject = absl::StrCat("s-", i);
        if (!(*store)
                 ->CreatePerson(Key(absl::StrCat("r", i)),
                                MakePerson(subject, absl::StrCat(i)),
                                {Face(0.001f * static_cast<float>(i))})
                 .ok()) {
          ::_exit(4);
        }
        const std::string line = subject + "\n";
        if (::write(acks[1], line.data(), line.size()) < 0) ::_exit(5);
      }
    });
    RotateKeyOptions options;
    options.batch_rows = 5;
    options.after_batch = [&](int64_t) {
      if (++batches == 4) ::raise(SIGKILL);  // mid-way: 20 of 50+ done
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    };
    (void)(*store)->RotateDataKey(options);
    ::_exit(6);  // not reached: the rotation has more than 4 batches
  }
  ::close(acks[1]);
  std::string acked;
  char buffer[4096];
  for (ssize_t n; (n = ::read(acks[0], buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0);
    acked.append(buffer, static_cast<size_t>(n));
  }
  ::close(acks[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  std::vector<std::string> subjects = absl::StrSplit(acked, '\n');
  subjects.pop_back();  // after the last newline: empty, or cut by the kill
  for (int i = 0; i < kBefore; ++i) subjects.push_back(absl::StrCat("s-", i));
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  {
    // Both versions in use: the rotation stopped part way.
    RawDb raw(path_);
    EXPECT_GT(raw.Int("SELECT COUNT(*) FROM templates WHERE key_version = 1"),
              0);
    EXPECT_GT(raw.Int("SELECT COUNT(*) FROM templates WHERE key_version = 2"),
              0);
    EXPECT_EQ(raw.Int("SELECT COUNT(*) FROM data_keys"), 2);
  }
  for (const std::string& subject : subjects) {
    absl::StatusOr<std::vector<TemplateRecord>> templates =
        store->ActiveTemplatesOf({subject});
    ASSERT_TRUE(templates.ok()) << subject << ": " << templates.status();
    EXPECT_EQ(templates->size(), 1u) << subject;
  }
  const size_t all = Active(*store).size();
  EXPECT_GE(all, subjects.size());
  // The next rotation finishes: one version left.
  absl::StatusOr<RotateKeyResult> rotated = store->RotateDataKey({});
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->key_version, 3);
  EXPECT_THAT(rotated->retired_versions, ElementsAre(1, 2));
  EXPECT_EQ(Active(*store).size(), all);
}

TEST_F(StoreCryptoTest, CancelledRotationStopsBetweenBatches) {
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(CreatePersons(*store, 10, 0.01f));
  RotateKeyOptions options;
  options.batch_rows = 3;
  options.cancelled = [] { return true; };
  absl::StatusOr<RotateKeyResult> rotated = store->RotateDataKey(options);
  EXPECT_EQ(rotated.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Active(*store).size(), 10u);
  EXPECT_EQ(
      RawDb(path_).Int("SELECT COUNT(*) FROM templates WHERE key_version = 2"),
      3);
  ASSERT_TRUE(store->RotateDataKey({}).ok());
  EXPECT_EQ(Active(*store).size(), 10u);
}

// Key-encryption key rotation (Store::RewrapDataKeys).
class KekRotationTest : public StoreCryptoTest {
 protected:
  // 20 persons, their templates split over data keys 1 and 2 (a data key
  // rotation stopped part way), so that more than one data key is
  // re-wrapped.
  void Populate() {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(CreatePersons(*store, kPersons, 0.01f));
    RotateKeyOptions options;
    options.batch_rows = 5;
    options.cancelled = [] { return true; };
    ASSERT_EQ(store->RotateDataKey(options).status().code(),
              absl::StatusCode::kCancelled);
  }

  // Every template of s-0 .. s-(count-1) is readable and as enrolled.
  void ExpectAllReadable(Store& store, int count) {
    std::vector<TemplateRecord> all = Active(store);
    ASSERT_EQ(all.size(), static_cast<size_t>(count));
    for (const TemplateRecord& record : all) {
      int i = -1;
      ASSERT_TRUE(absl::SimpleAtoi(record.subject_id.substr(2), &i));
      EXPECT_EQ(VectorBytes(record.tmpl),
                VectorBytes(Face(0.01f * static_cast<float>(i))))
          << record.subject_id;
    }
  }

  std::string NewKeyFile(const std::string& name) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(CreateKeyFile(path).ok());
    return path;
  }

  static constexpr int kPersons = 20;
};

TEST_F(KekRotationTest, RewrapsEveryDataKeyAndOnlyTheNewKeyOpens) {
  Populate();
  const std::string new_key = NewKeyFile("new.key");
  RewrapKeysResult result;
  {
    std::unique_ptr<Store> store = MustOpen();
    ASSERT_NE(store, nullptr);
    absl::StatusOr<RewrapKeysResult> rewrapped =
        store->RewrapDataKeys({new_key, nullptr});
    ASSERT_TRUE(rewrapped.ok()) << rewrapped.status();
    result = *rewrapped;
    EXPECT_EQ(result.data_keys, 2);
    EXPECT_EQ(result.key_check.size(), 16u);
    EXPECT_NE(result.key_check, result.previous_key_check);
    EXPECT_EQ(result.key_check, KeyCheckValue(*LoadKeyFile(new_key)));
    EXPECT_EQ(result.previous_key_check,
              KeyCheckValue(*LoadKeyFile(key_file_.string())));
    EXPECT_EQ(store->key_report().key_file, new_key);
    EXPECT_EQ(store->key_report().key_check, result.key_check);
    // The open store goes on: reads, writes, and a data key made now is
    // wrapped by the new key (it opens below only with that one).
    ExpectAllReadable(*store, kPersons);
    ASSERT_TRUE(store
                    ->CreatePerson(Key("r-late"), MakePerson("s-20", "20"),
                                   {Face(0.01f * 20)})
                    .ok());
    absl::StatusOr<RotateKeyResult> rotated = store->RotateDataKey({});
    ASSERT_TRUE(rotated.ok()) << rotated.status();
    EXPECT_EQ(rotated->key_version, 3);
  }
  EXPECT_EQ(RawDb(path_).Text("SELECT value FROM meta WHERE key = 'kek_check'"),
            result.key_check);

  // The old key file: refused, saying what happened.
  absl::StatusOr<std::unique_ptr<Store>> old_key = Open();
  EXPECT_EQ(old_key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(old_key.status().message(),
              HasSubstr("key_file " + key_file_.string()));
  EXPECT_THAT(old_key.status().message(),
              HasSubstr("that a key-encryption key rotation replaced; the "
                        "data keys are now wrapped by another key-encryption "
                        "key (key check " +
                        result.key_check + ")"));
  // Another key altogether: refused too, naming both check values.
  const std::string stranger = NewKeyFile("stranger.key");
  absl::StatusOr<std::unique_ptr<Store>> wrong = Open(stranger);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(wrong.status().message(), HasSubstr("does not unwrap"));
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("wrapped by another key-encryption key (key check " +
                        result.key_check + ")"));
  // The new one opens, every template intact.
  absl::StatusOr<std::unique_ptr<Store>> store = Open(new_key);
  ASSERT_TRUE(store.ok()) << store.status();
  ExpectAllReadable(**store, kPersons + 1);
}

TEST_F(KekRotationTest, RefusesUnusableNewKeyFilesAndChangesNothing) {
  Populate();
  std::unique_ptr<Store> store = MustOpen();
  ASSERT_NE(store, nullptr);
  const std::string missing = (dir_ / "missing.key").string();
  absl::StatusOr<RewrapKeysResult> result =
      store->RewrapDataKeys({missing, nullptr});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(),
              HasSubstr("new_key_file " + missing + ": no such file"));
  const std::string loose = NewKeyFile("loose.key");
  ::chmod(loose.c_str(), 0644);
  result = store->RewrapDataKeys({loose, nullptr});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("wider than 0600"));
  result = store->RewrapDataKeys({key_file_.string(), nullptr});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(),
              HasSubstr("is the key-encryption key in use already"));
  store.reset();
  store = MustOpen();  // still the old key
  ASSERT_NE(store, nullptr);
  ExpectAllReadable(*store, kPersons);
}

// kill -9 just before the re-wrapping transaction commits, or just after:
// the store opens with exactly one of the two key files (the old one, or
// the new one), and every template is readable under it.
TEST_F(KekRotationTest, KillNineLeavesExactlyOneKeyAndLosesNothing) {
  for (const bool after_commit : {false, true}) {
    SCOPED_TRACE(after_commit ? "killed after commit" : "killed before commit");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Populate();
    const std::string new_key = NewKeyFile("new.key");
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      absl::StatusOr<std::unique_ptr<Store>> store =
          Store::Open(StoreOptions{path_.string(), ""});
      if (!store.ok()) ::_exit(3);
      RewrapKeysOptions options;
      options.new_key_file = new_key;
      if (!after_commit) options.before_commit = [] { ::raise(SIGKILL); };
      if (!(*store)->RewrapDataKeys(options).ok()) ::_exit(4);
      ::raise(SIGKILL);  // before the store is closed
      ::_exit(5);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
    ASSERT_EQ(WTERMSIG(status), SIGKILL);

    absl::StatusOr<std::unique_ptr<Store>> with_old = Open();
    absl::StatusOr<std::unique_ptr<Store>> with_new = Open(new_key);
    EXPECT_NE(with_old.ok(), with_new.ok());
    EXPECT_EQ(with_new.ok(), after_commit);
    absl::StatusOr<std::unique_ptr<Store>>& opened =
        after_commit ? with_new : with_old;
    ASSERT_TRUE(opened.ok()) << opened.status();
    ExpectAllReadable(**opened, kPersons);
  }
}

}  // namespace
}  // namespace hawiya::enroll
