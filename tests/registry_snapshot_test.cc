// Registry snapshots: Open loads the newest usable snapshot and replays the
// store's later changes, and the galleries it ends with equal both the live
// galleries and a full rebuild from the store, bit for bit. Every snapshot
// that does not belong (damaged, another store, another history, other
// options) is refused with its reason and the galleries are rebuilt.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "enroll/data_dir_lock.h"
#include "enroll/registry.h"
#include "enroll/snapshots.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "matcher/snapshot_file.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"
#include "tests/testing/gallery_contents.h"

namespace hawiya::enroll {
namespace {

namespace fs = std::filesystem;
using ::hawiya::testing::GalleryRow;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Contents = std::map<uint32_t, std::vector<GalleryRow>>;

struct SnapshotContents {
  SnapshotHeader header;
  Contents galleries;
};

// The store a snapshot file belongs to: DATA_DIR/snapshots/F ->
// DATA_DIR/hawiya.db (another connection, beside a registry's).
std::string StoreOf(const std::string& snapshot_path) {
  return (fs::path(snapshot_path).parent_path().parent_path() / "hawiya.db")
      .string();
}

// Reader options with the data keys of the snapshot's store.
matcher::SnapshotFileReader::Options KeysOf(const std::string& path) {
  matcher::SnapshotFileReader::Options options;
  options.key =
      [db = StoreOf(path)](uint64_t version) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open({db});
    if (!store.ok()) return store.status();
    absl::StatusOr<DataKey> key =
        (*store)->GetDataKey(static_cast<int64_t>(version));
    if (!key.ok()) return key.status();
    return key->key;
  };
  return options;
}

// Writer options with the current data key of the snapshot's store.
absl::StatusOr<matcher::SnapshotFileWriter::Options> CurrentKeyOf(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open({StoreOf(path)});
  if (!store.ok()) return store.status();
  absl::StatusOr<DataKey> key = (*store)->CurrentDataKey();
  if (!key.ok()) return key.status();
  matcher::SnapshotFileWriter::Options options;
  options.key = key->key;
  options.key_version = static_cast<uint64_t>(key->version);
  return options;
}

absl::StatusOr<SnapshotContents> ReadSnapshot(const std::string& path) {
  absl::StatusOr<std::unique_ptr<matcher::SnapshotFileReader>> reader =
      matcher::SnapshotFileReader::Open(path, KeysOf(path));
  if (!reader.ok()) return reader.status();
  if (absl::Status s = (*reader)->Verify(); !s.ok()) return s;
  SnapshotContents out;
  absl::StatusOr<SnapshotHeader> header = ReadSnapshotHeader(reader->get());
  if (!header.ok()) return header.status();
  out.header = *std::move(header);
  absl::StatusOr<Contents> galleries = testing::ReadMatcher(reader->get());
  if (!galleries.ok()) return galleries.status();
  out.galleries = *std::move(galleries);
  if (absl::Status s = (*reader)->CheckAtEnd(); !s.ok()) return s;
  return out;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class RegistrySnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern =
        absl::StrCat(base != nullptr ? base : "/tmp", "/regsnap-XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    data_dir_ = root_ + "/data";
  }
  void TearDown() override {
    registry_.reset();
    fs::remove_all(root_);
  }

  std::string SnapshotDir() const { return data_dir_ + "/snapshots"; }

  RegistryOptions Options(const std::string& data_dir) const {
    RegistryOptions options;
    options.data_dir = data_dir;
    return options;
  }

  std::unique_ptr<Registry> MustOpen(const RegistryOptions& options) {
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }
  void Reopen() {
    registry_.reset();
    registry_ = MustOpen(Options(data_dir_));
    ASSERT_NE(registry_, nullptr);
  }

  // Person n with capture 0 of identity n (no template if !face).
  std::string Enroll(Registry& registry, uint64_t n, bool face = true) {
    v1::EnrollRequest request = services::SyntheticEnrollRequest(model_, n);
    request.set_request_id(absl::StrCat("enroll-", n));
    if (!face) request.clear_templates();
    absl::StatusOr<v1::EnrollResponse> response = registry.Enroll(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->person().subject_id() : "";
  }

  void Replace(Registry& registry, const std::string& subject, uint64_t n,
               uint64_t capture) {
    v1::ReplaceTemplatesRequest request;
    request.set_request_id(absl::StrCat("replace-", subject, "-", capture));
    request.set_subject_id(subject);
    *request.add_templates() =
        services::SyntheticFaceTemplate(model_, n, capture);
    // Two templates: the gallery's per-subject counts matter for search.
    *request.add_templates() =
        services::SyntheticFaceTemplate(model_, n, capture + 1);
    ASSERT_TRUE(registry.ReplaceTemplates(request).ok());
  }

  void Delete(Registry& registry, const std::string& subject, bool erase) {
    v1::DeletePersonRequest request;
    request.set_subject_id(subject);
    request.set_reason("test");
    request.set_erase(erase);
    ASSERT_TRUE(registry.DeletePerson(request).ok());
  }

  void Marry(Registry& registry, const std::string& subject) {
    v1::GetPersonRequest get;
    get.set_subject_id(subject);
    absl::StatusOr<v1::Person> person = registry.GetPerson(get);
    ASSERT_TRUE(person.ok());
    v1::UpdatePersonRequest update;
    update.mutable_person()->set_subject_id(subject);
    update.mutable_person()->set_civil_status(v1::MARRIED);
    update.mutable_update_mask()->add_paths("civil_status");
    update.set_expected_version(person->version());
    ASSERT_TRUE(registry.UpdatePerson(update).ok());
  }

  // The registry's galleries as they are now, through a snapshot.
  Contents Galleries(Registry& registry) {
    absl::StatusOr<SnapshotReport> report = registry.WriteSnapshot();
    EXPECT_TRUE(report.ok()) << report.status();
    std::string path = report.ok() ? report->path : "";
    if (report.ok() && !report->written) {
      path = ListSnapshots(SnapshotDir()).at(0).path;
    }
    absl::StatusOr<SnapshotContents> contents = ReadSnapshot(path);
    EXPECT_TRUE(contents.ok()) << contents.status();
    return contents.ok() ? contents->galleries : Contents();
  }

  // The galleries a rebuild from the store gives, without touching
  // data_dir_'s snapshots: a copy of the store in another data dir.
  Contents RebuiltGalleries() {
    const std::string copy = root_ + "/rebuilt";
    fs::remove_all(copy);
    fs::create_directories(copy);
    fs::copy_file(data_dir_ + "/hawiya.db", copy + "/hawiya.db");
    // The WAL holds the latest commits; the -shm index is rebuilt from it.
    const std::string wal = data_dir_ + "/hawiya.db-wal";
    if (fs::exists(wal)) fs::copy_file(wal, copy + "/hawiya.db-wal");
    // Its data keys are wrapped by this data dir's key file.
    fs::create_directories(copy + "/keys");
    fs::copy_file(data_dir_ + "/keys/kek.key", copy + "/keys/kek.key");
    fs::permissions(copy + "/keys/kek.key",
                    fs::perms::owner_read | fs::perms::owner_write);
    std::unique_ptr<Registry> rebuilt = MustOpen(Options(copy));
    if (rebuilt == nullptr) return Contents();
    EXPECT_EQ(rebuilt->load_report().snapshot, "");
    return Galleries(*rebuilt);
  }

  // The best candidate for a fresh capture of identity n ("" if none).
  std::string Found(Registry& registry, uint64_t n) {
    v1::IdentifyRequest identify;
    *identify.add_probes() = services::SyntheticFaceTemplate(model_, n, 1);
    absl::StatusOr<v1::IdentifyResponse> found = registry.Identify(identify);
    EXPECT_TRUE(found.ok()) << found.status();
    return found.ok() && found->candidates_size() > 0
               ? found->candidates(0).subject_id()
               : "";
  }

  // Empty galleries labelled with the store's latest change, sealed under
  // its current data key: what a registry whose galleries missed every
  // change (another process wrote the store) would have written.
  void WriteEmptySnapshot(const std::string& path) {
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open({data_dir_ + "/hawiya.db"});
    ASSERT_TRUE(store.ok()) << store.status();
    SnapshotHeader header;
    header.store_id = *(*store)->StoreId();
    header.sequence = *(*store)->ChangeSequence();
    ASSERT_GT(header.sequence, 0);
    absl::StatusOr<Change> change = (*store)->GetChange(header.sequence);
    ASSERT_TRUE(change.ok()) << change.status();
    header.change_time_us = change->time_us;
    header.change_subject_id = change->subject_id;
    const RegistryOptions options = Options(data_dir_);
    header.modalities = options.modalities;
    absl::StatusOr<std::unique_ptr<matcher::Matcher>> empty =
        matcher::Matcher::Open({options.modalities, options.fusion});
    ASSERT_TRUE(empty.ok());
    absl::StatusOr<matcher::SnapshotFileWriter::Options> key =
        CurrentKeyOf(path);
    ASSERT_TRUE(key.ok()) << key.status();
    absl::StatusOr<std::unique_ptr<matcher::SnapshotFileWriter>> writer =
        matcher::SnapshotFileWriter::Create(path, *std::move(key));
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE(WriteSnapshotHeader(header, writer->get()).ok());
    ASSERT_TRUE((*empty)->Save(writer->get()).ok());
    ASSERT_TRUE((*writer)->Commit().ok());
  }

  size_t Templates(const Contents& contents) {
    size_t n = 0;
    for (const auto& [modality, rows] : contents) n += rows.size();
    return n;
  }

  matcher::SyntheticModel model_{matcher::SyntheticOptions{}};
  std::string root_;
  std::string data_dir_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistrySnapshotTest, RestartLoadsTheSnapshot) {
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused, ElementsAre("no snapshot"));
  EXPECT_THAT(registry_->load_report().ToString(),
              HasSubstr("rebuilt from the store at change 0 (no snapshot)"));
  for (uint64_t n = 0; n < 10; ++n) Enroll(*registry_, n);
  EXPECT_EQ(*registry_->ChangesSinceSnapshot(), 10);

  absl::StatusOr<SnapshotReport> written = registry_->WriteSnapshot();
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(written->written);
  EXPECT_EQ(written->sequence, 10);
  EXPECT_EQ(written->path, SnapshotDir() + "/" + SnapshotFileName(10));
  EXPECT_EQ(written->bytes, fs::file_size(written->path));
  EXPECT_EQ(*registry_->ChangesSinceSnapshot(), 0);
  // Nothing changed: nothing written.
  absl::StatusOr<SnapshotReport> again = registry_->WriteSnapshot();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->written);

  const Contents live = Galleries(*registry_);
  EXPECT_EQ(Templates(live), 10u);
  Reopen();
  const GalleryLoadReport& report = registry_->load_report();
  EXPECT_EQ(report.snapshot, SnapshotFileName(10));
  EXPECT_EQ(report.snapshot_sequence, 10);
  EXPECT_EQ(report.replayed_subjects, 0);
  EXPECT_EQ(report.sequence, 10);
  EXPECT_EQ(report.templates, 10u);
  EXPECT_THAT(report.refused, IsEmpty());
  EXPECT_THAT(report.ToString(), HasSubstr("loaded snapshot-"));
  EXPECT_EQ(Galleries(*registry_), live);

  // And it matches as before.
  v1::IdentifyRequest identify;
  *identify.add_probes() = services::SyntheticFaceTemplate(model_, 3, 1);
  absl::StatusOr<v1::IdentifyResponse> found = registry_->Identify(identify);
  ASSERT_TRUE(found.ok());
  ASSERT_GT(found->candidates_size(), 0);
  EXPECT_GT(found->candidates(0).score(), 0.4f);
}

// Snapshots written while writes wait (memory short) and copied to memory
// first (the default) are the same.
TEST_F(RegistrySnapshotTest, StreamedAndBufferedSnapshotsAreTheSame) {
  RegistryOptions streamed = Options(data_dir_);
  streamed.snapshot_buffer_bytes = 0;
  registry_ = MustOpen(streamed);
  ASSERT_NE(registry_, nullptr);
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  absl::StatusOr<SnapshotReport> written = registry_->WriteSnapshot();
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_FALSE(written->buffered);
  EXPECT_THAT(written->ToString(), HasSubstr("streamed"));
  const std::string streamed_bytes = Slurp(written->path);
  registry_.reset();
  fs::remove(written->path);

  Reopen();  // rebuilt, then buffered
  absl::StatusOr<SnapshotReport> buffered = registry_->WriteSnapshot();
  ASSERT_TRUE(buffered.ok()) << buffered.status();
  EXPECT_TRUE(buffered->buffered);
  EXPECT_EQ(buffered->bytes, streamed_bytes.size());
  // Beside the store, for ReadSnapshot to find its keys; not a snapshot
  // name, so never loaded.
  const std::string streamed_copy = SnapshotDir() + "/streamed.hws";
  Spit(streamed_copy, streamed_bytes);
  EXPECT_EQ(ReadSnapshot(streamed_copy)->galleries,
            ReadSnapshot(buffered->path)->galleries);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(5));
}

TEST_F(RegistrySnapshotTest, StaleSnapshotReplayEqualsLiveAndRebuild) {
  Reopen();
  std::vector<std::string> subjects;
  for (uint64_t n = 0; n < 12; ++n) subjects.push_back(Enroll(*registry_, n));
  Delete(*registry_, subjects[11], /*erase=*/false);  // revoked before
  ASSERT_TRUE(registry_->WriteSnapshot()->written);
  const int64_t snapshot_sequence = *registry_->ChangesSinceSnapshot();
  EXPECT_EQ(snapshot_sequence, 0);

  // After the snapshot: every kind of change.
  subjects.push_back(Enroll(*registry_, 100));                  // [12]
  subjects.push_back(Enroll(*registry_, 101, /*face=*/false));  // [13]
  Marry(*registry_, subjects[0]);
  Replace(*registry_, subjects[1], 1, 5);
  Replace(*registry_, subjects[12], 100, 5);  // enrolled after, replaced
  Delete(*registry_, subjects[2], /*erase=*/false);
  Delete(*registry_, subjects[3], /*erase=*/true);
  subjects.push_back(Enroll(*registry_, 102));  // [14] enrolled, then erased
  Delete(*registry_, subjects[14], /*erase=*/true);
  Replace(*registry_, subjects[4], 4, 7);  // replaced, then revoked
  Delete(*registry_, subjects[4], /*erase=*/false);
  Delete(*registry_, subjects[11], /*erase=*/true);  // revoked before, erased

  // The live galleries, through a snapshot that is then removed again, so
  // the restart has only the stale one.
  absl::StatusOr<SnapshotReport> live_report = registry_->WriteSnapshot();
  ASSERT_TRUE(live_report.ok() && live_report->written);
  const Contents live = ReadSnapshot(live_report->path)->galleries;
  registry_.reset();
  fs::remove(live_report->path);
  ASSERT_EQ(ListSnapshots(SnapshotDir()).size(), 1u);

  Reopen();
  const GalleryLoadReport& report = registry_->load_report();
  EXPECT_EQ(report.snapshot, SnapshotFileName(13));
  EXPECT_EQ(report.replayed_subjects, 9);
  EXPECT_EQ(report.sequence, live_report->sequence);
  EXPECT_THAT(report.ToString(), HasSubstr("replayed 9 subjects"));
  // The snapshot on disk is stale: a restart would replay again.
  EXPECT_EQ(*registry_->ChangesSinceSnapshot(),
            live_report->sequence - report.snapshot_sequence);

  const Contents replayed = Galleries(*registry_);
  EXPECT_EQ(replayed, live);
  EXPECT_EQ(RebuiltGalleries(), live);
  // Erased and revoked persons left no row.
  std::set<std::string> in_galleries;
  for (const auto& [modality, rows] : live) {
    for (const GalleryRow& row : rows) in_galleries.insert(row.subject_id);
  }
  for (size_t i : {2, 3, 4, 11, 13, 14}) {
    EXPECT_EQ(in_galleries.count(subjects[i]), 0u) << i;
  }
  for (size_t i : {0, 1, 5, 12}) {
    EXPECT_EQ(in_galleries.count(subjects[i]), 1u) << i;
  }
}

// A snapshot may hold changes after the sequence in its header (had it been
// written without the write lock): replaying them again changes nothing.
TEST_F(RegistrySnapshotTest, ReplayingChangesTheSnapshotHoldsIsHarmless) {
  Reopen();
  std::vector<std::string> subjects;
  for (uint64_t n = 0; n < 6; ++n) subjects.push_back(Enroll(*registry_, n));
  absl::StatusOr<SnapshotReport> old_report = registry_->WriteSnapshot();
  ASSERT_TRUE(old_report.ok());
  Replace(*registry_, subjects[0], 0, 3);
  Delete(*registry_, subjects[1], /*erase=*/true);
  Delete(*registry_, subjects[2], /*erase=*/false);
  Enroll(*registry_, 50);
  absl::StatusOr<SnapshotReport> new_report = registry_->WriteSnapshot();
  ASSERT_TRUE(new_report.ok());
  const Contents live = ReadSnapshot(new_report->path)->galleries;
  registry_.reset();

  // The old snapshot's header over the new galleries, under the old name.
  absl::StatusOr<std::unique_ptr<matcher::SnapshotFileReader>> old_file =
      matcher::SnapshotFileReader::Open(old_report->path,
                                        KeysOf(old_report->path));
  ASSERT_TRUE(old_file.ok());
  absl::StatusOr<SnapshotHeader> old_header =
      ReadSnapshotHeader(old_file->get());
  ASSERT_TRUE(old_header.ok());
  absl::StatusOr<std::unique_ptr<matcher::SnapshotFileReader>> new_file =
      matcher::SnapshotFileReader::Open(new_report->path,
                                        KeysOf(new_report->path));
  ASSERT_TRUE(new_file.ok());
  ASSERT_TRUE(ReadSnapshotHeader(new_file->get()).ok());
  std::string body((*new_file)->Remaining(), '\0');
  ASSERT_TRUE((*new_file)->Read(body.data(), body.size()).ok());
  fs::remove(new_report->path);
  absl::StatusOr<matcher::SnapshotFileWriter::Options> key =
      CurrentKeyOf(old_report->path);
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<std::unique_ptr<matcher::SnapshotFileWriter>> hybrid =
      matcher::SnapshotFileWriter::Create(old_report->path, *std::move(key));
  ASSERT_TRUE(hybrid.ok());
  ASSERT_TRUE(WriteSnapshotHeader(*old_header, hybrid->get()).ok());
  ASSERT_TRUE((*hybrid)->Write(body.data(), body.size()).ok());
  ASSERT_TRUE((*hybrid)->Commit().ok());

  // Recorded, as the registry records the snapshots it writes.
  ASSERT_TRUE((*Store::Open({StoreOf(old_report->path)}))
                  ->RecordSnapshot({6, (*hybrid)->file_id(), 0})
                  .ok());

  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(6));
  EXPECT_EQ(registry_->load_report().replayed_subjects, 4);
  EXPECT_EQ(Galleries(*registry_), live);
}

// One registry (one server) at a time per data folder.
TEST_F(RegistrySnapshotTest, SecondRegistryOnTheDataDirIsRefused) {
  Reopen();
  const std::string lock = data_dir_ + "/LOCK";
  EXPECT_EQ(Slurp(lock), absl::StrCat(getpid(), "\n"));
  absl::StatusOr<std::unique_ptr<Registry>> second =
      Registry::Open(Options(data_dir_));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("data_dir ", data_dir_,
                                     " is in use by process ", getpid())));
  // The refused open left the holder's id in place.
  EXPECT_EQ(Slurp(lock), absl::StrCat(getpid(), "\n"));

  // A lock held on another folder opens nothing.
  absl::StatusOr<std::unique_ptr<DataDirLock>> other =
      DataDirLock::Acquire(root_ + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  RegistryOptions options = Options(data_dir_);
  options.data_dir_lock = *std::move(other);
  EXPECT_EQ(Registry::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Closed, the registry releases the folder and names no holder any more.
  registry_.reset();
  EXPECT_EQ(Slurp(lock), "");
  Reopen();
}

// Two registries on one store, each writing in turn (as two servers on one
// data folder did before the folder was locked; sharing one lock is the
// only way to open them now): neither serves, nor snapshots, galleries that
// differ from the store.
TEST_F(RegistrySnapshotTest, WritesBehindARegistrysBackReachItsGalleries) {
  absl::StatusOr<std::unique_ptr<DataDirLock>> lock =
      DataDirLock::Acquire(data_dir_);
  ASSERT_TRUE(lock.ok()) << lock.status();
  RegistryOptions options = Options(data_dir_);
  options.data_dir_lock = *std::move(lock);
  std::unique_ptr<Registry> a = MustOpen(options);
  ASSERT_NE(a, nullptr);
  std::vector<std::string> subjects;
  for (uint64_t n = 0; n < 3; ++n) subjects.push_back(Enroll(*a, n));
  std::unique_ptr<Registry> b = MustOpen(options);
  ASSERT_NE(b, nullptr);
  // Behind a's back: its galleries do not hold 3 and 4.
  subjects.push_back(Enroll(*b, 3));
  subjects.push_back(Enroll(*b, 4));
  // a's next write notices that the store's changes do not follow on from
  // its own, and brings its galleries up to the store.
  subjects.push_back(Enroll(*a, 5));
  EXPECT_EQ(Found(*a, 3), subjects[3]);
  EXPECT_EQ(Found(*a, 4), subjects[4]);
  // So does its next snapshot, and labels it with what its galleries hold.
  subjects.push_back(Enroll(*b, 6));
  absl::StatusOr<SnapshotReport> written = a->WriteSnapshot();
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->sequence, 7);
  EXPECT_EQ(Found(*a, 6), subjects[6]);
  a.reset();
  b.reset();
  options.data_dir_lock.reset();

  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(7));
  for (uint64_t n = 0; n < 7; ++n) {
    EXPECT_EQ(Found(*registry_, n), subjects[n]) << "person " << n;
  }
  EXPECT_EQ(Galleries(*registry_), RebuiltGalleries());
}

// A snapshot file is trusted only if the store recorded it: one it has no
// record of, or another file under a recorded name, is refused and the
// galleries are rebuilt, whatever its header says.
TEST_F(RegistrySnapshotTest, SnapshotTheStoreDidNotRecordIsRefused) {
  Reopen();
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  registry_.reset();
  const std::string path = SnapshotDir() + "/" + SnapshotFileName(5);
  WriteEmptySnapshot(path);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr(
                  "the store has no record of a snapshot at change 5")));
  EXPECT_EQ(registry_->load_report().templates, 5u);

  // Its own snapshot the registry records, and loads.
  absl::StatusOr<SnapshotReport> written = registry_->WriteSnapshot();
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->path, path);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(5));
  EXPECT_EQ(registry_->load_report().templates, 5u);

  // Another file under that name.
  registry_.reset();
  WriteEmptySnapshot(path);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr("is not the snapshot the store recorded "
                                    "at change 5")));
  EXPECT_EQ(registry_->load_report().templates, 5u);
}

TEST_F(RegistrySnapshotTest, DamagedNewestFallsBackToTheOlderOne) {
  Reopen();
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);  // change 5
  for (uint64_t n = 5; n < 8; ++n) Enroll(*registry_, n);
  absl::StatusOr<SnapshotReport> newest = registry_->WriteSnapshot();
  ASSERT_TRUE(newest.ok());  // change 8
  const Contents live = ReadSnapshot(newest->path)->galleries;
  registry_.reset();

  std::string bytes = Slurp(newest->path);
  bytes[bytes.size() / 2] ^= 0x10;
  Spit(newest->path, bytes);
  Reopen();
  const GalleryLoadReport& report = registry_->load_report();
  EXPECT_EQ(report.snapshot, SnapshotFileName(5));
  EXPECT_EQ(report.replayed_subjects, 3);
  EXPECT_THAT(report.refused,
              ElementsAre(SnapshotFileName(8) + ": checksum mismatch"));
  EXPECT_THAT(report.ToString(), HasSubstr("not used: snapshot-"));
  EXPECT_EQ(Galleries(*registry_), live);  // rewrites change 8, whole

  // The next snapshot keeps itself and the newest good older one.
  Enroll(*registry_, 9);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);  // change 9
  std::vector<int64_t> kept;
  for (const SnapshotFileInfo& file : ListSnapshots(SnapshotDir())) {
    kept.push_back(file.sequence);
  }
  EXPECT_THAT(kept, ElementsAre(9, 8));
}

// A snapshot prunes the change-log rows that no snapshot left can need; a
// fallback to the older snapshot kept still finds every change it replays.
TEST_F(RegistrySnapshotTest, SnapshotsPruneTheChangeLogTheyNoLongerNeed) {
  Reopen();
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  absl::StatusOr<SnapshotReport> first = registry_->WriteSnapshot();
  ASSERT_TRUE(first.ok() && first->written);  // change 5, the only snapshot
  EXPECT_EQ(first->changes_pruned, 4);
  for (uint64_t n = 5; n < 8; ++n) Enroll(*registry_, n);
  absl::StatusOr<SnapshotReport> second = registry_->WriteSnapshot();
  ASSERT_TRUE(second.ok() && second->written);  // change 8; keeps 5
  EXPECT_EQ(second->changes_pruned, 0);
  const std::string last = Enroll(*registry_, 8);
  absl::StatusOr<SnapshotReport> third = registry_->WriteSnapshot();
  ASSERT_TRUE(third.ok() && third->written);  // change 9; keeps 8
  EXPECT_EQ(third->changes_pruned, 3);
  EXPECT_THAT(third->ToString(), HasSubstr("3 change-log rows pruned"));
  const Contents live = ReadSnapshot(third->path)->galleries;
  registry_.reset();
  {
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open({data_dir_ + "/hawiya.db"});
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->GetChange(7).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_TRUE((*store)->GetChange(8).ok());
    EXPECT_EQ(*(*store)->ChangeSequence(), 9);
    EXPECT_THAT((*store)->SubjectsChangedAfter(8)->subject_ids,
                ElementsAre(last));
  }

  std::string bytes = Slurp(third->path);
  bytes[bytes.size() / 2] ^= 0x10;
  Spit(third->path, bytes);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(8));
  EXPECT_EQ(registry_->load_report().replayed_subjects, 1);
  EXPECT_EQ(Galleries(*registry_), live);
  EXPECT_EQ(Galleries(*registry_), RebuiltGalleries());
}

TEST_F(RegistrySnapshotTest, EveryDamagedSnapshotIsRebuiltFromTheStore) {
  Reopen();
  for (uint64_t n = 0; n < 4; ++n) Enroll(*registry_, n);
  absl::StatusOr<SnapshotReport> written = registry_->WriteSnapshot();
  ASSERT_TRUE(written.ok());
  const Contents live = ReadSnapshot(written->path)->galleries;
  registry_.reset();
  const std::string good = Slurp(written->path);

  struct Damage {
    const char* what;
    std::string bytes;
    const char* why;
  };
  auto flip = [&good](size_t i) {
    std::string bytes = good;
    bytes[i] ^= 0x01;
    return bytes;
  };
  const std::vector<Damage> damages = {
      {"magic", flip(0), "bad magic"},
      {"version", flip(8), "format version"},
      {"key version", flip(12), "encrypted under data key version"},
      {"key check", flip(20), "another key"},
      {"nonce", flip(30), "checksum mismatch"},
      // The payload (encrypted) starts after the 40-byte head.
      {"header: store id", flip(40 + 8 + 2), "checksum mismatch"},
      {"header: sequence", flip(40 + 8 + 32), "checksum mismatch"},
      {"body: a vector", flip(good.size() / 2), "checksum mismatch"},
      {"trailer: GCM tag", flip(good.size() - 30), "checksum mismatch"},
      {"trailer: length", flip(good.size() - 24), "truncated or extended"},
      {"trailer: end magic", flip(good.size() - 16), "bad end magic"},
      {"trailer: checksum", flip(good.size() - 1), "checksum mismatch"},
      {"truncated by one byte", good.substr(0, good.size() - 1),
       "truncated or extended"},
      {"truncated to half", good.substr(0, good.size() / 2),
       "truncated or extended"},
      {"empty", "", "too short"},
      {"one byte appended", good + "x", "truncated or extended"},
  };
  for (const Damage& damage : damages) {
    SCOPED_TRACE(damage.what);
    Spit(written->path, damage.bytes);
    Reopen();
    const GalleryLoadReport& report = registry_->load_report();
    EXPECT_EQ(report.snapshot, "");
    ASSERT_EQ(report.refused.size(), 1u);
    EXPECT_THAT(report.refused[0], HasSubstr(damage.why));
    // Rebuilt, and the rebuild saved whole over the damaged file.
    EXPECT_EQ(Galleries(*registry_), live);
    registry_.reset();
  }
}

TEST_F(RegistrySnapshotTest, SnapshotOfAnotherDataDirIsRefused) {
  const std::string other_dir = root_ + "/other";
  std::unique_ptr<Registry> other = MustOpen(Options(other_dir));
  ASSERT_NE(other, nullptr);
  for (uint64_t n = 0; n < 3; ++n) Enroll(*other, n);
  absl::StatusOr<SnapshotReport> foreign = other->WriteSnapshot();
  ASSERT_TRUE(foreign.ok());
  other.reset();

  // This data dir has the same number of changes, but other persons.
  Reopen();
  for (uint64_t n = 10; n < 13; ++n) Enroll(*registry_, n);
  const Contents live = RebuiltGalleries();
  registry_.reset();
  fs::copy_file(foreign->path, SnapshotDir() + "/" +
                                   fs::path(foreign->path).filename().string());
  Reopen();
  const GalleryLoadReport& report = registry_->load_report();
  EXPECT_EQ(report.snapshot, "");
  ASSERT_EQ(report.refused.size(), 1u);
  EXPECT_THAT(report.refused[0], HasSubstr("made from another store"));
  EXPECT_EQ(Galleries(*registry_), live);
}

TEST_F(RegistrySnapshotTest, ChangedModalitiesRebuild) {
  Reopen();
  for (uint64_t n = 0; n < 3; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);
  registry_.reset();

  // IRIS 256 -> 128 (no iris template is enrolled, so the rebuild works).
  RegistryOptions options = Options(data_dir_);
  options.modalities[2].dimension = 128;
  registry_ = MustOpen(options);
  ASSERT_NE(registry_, nullptr);
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr("IRIS dimension changed: 256 then, 128 "
                                    "now")));
  EXPECT_EQ(registry_->load_report().templates, 3u);
  registry_.reset();

  // A modality dropped.
  options = Options(data_dir_);
  options.modalities.pop_back();
  registry_ = MustOpen(options);
  ASSERT_NE(registry_, nullptr);
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr("modalities changed")));
  registry_.reset();

  // A threshold shapes no index: the snapshot is used.
  options = Options(data_dir_);
  options.modalities[0].threshold = 0.5f;
  registry_ = MustOpen(options);
  ASSERT_NE(registry_, nullptr);
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(3));
}

TEST_F(RegistrySnapshotTest, RestoredOlderStoreRefusesNewerSnapshots) {
  Reopen();
  for (uint64_t n = 0; n < 3; ++n) Enroll(*registry_, n);
  registry_.reset();  // closing checkpoints the WAL into hawiya.db
  const std::string db = data_dir_ + "/hawiya.db";
  ASSERT_FALSE(fs::exists(db + "-wal"));
  fs::copy_file(db, root_ + "/backup.db");

  Reopen();
  for (uint64_t n = 3; n < 6; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);  // change 6
  registry_.reset();

  // The operator restores last night's backup.
  fs::copy_file(root_ + "/backup.db", db, fs::copy_options::overwrite_existing);
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr("after the store's latest (3)")));
  // New writes bring the store past change 6, with other changes.
  for (uint64_t n = 20; n < 24; ++n) Enroll(*registry_, n);
  const Contents live = RebuiltGalleries();
  registry_.reset();  // no snapshot written: the stale one stays
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre(HasSubstr("change 6 differs from the store's")));
  EXPECT_EQ(Galleries(*registry_), live);
}

// While a snapshot is written: searches go on; writes wait only while the
// galleries are copied out, not while the file is written (buffered), or
// for the whole write (streamed, when memory is short).
TEST_F(RegistrySnapshotTest, SearchesGoOnWhileASnapshotIsWritten) {
  for (bool buffered : {true, false}) {
    SCOPED_TRACE(buffered ? "buffered" : "streamed");
    fs::remove_all(data_dir_);
    absl::Notification writing;
    absl::Notification release;
    RegistryOptions options = Options(data_dir_);
    options.snapshot_buffer_bytes = buffered ? -1 : 0;
    options.snapshot_on_write = [&](uint64_t) {
      if (!writing.HasBeenNotified()) writing.Notify();
      release.WaitForNotification();
    };
    registry_ = MustOpen(options);
    ASSERT_NE(registry_, nullptr);
    // More than the file writer buffers (1 MiB), so that streamed, the file
    // is written to while the galleries are.
    std::vector<v1::EnrollRequest> requests;
    for (uint64_t n = 0; n < 600; ++n) {
      requests.push_back(services::SyntheticEnrollRequest(model_, n));
      requests.back().set_request_id(absl::StrCat("batch-", n));
    }
    ASSERT_TRUE(registry_->BatchEnroll(requests).ok());

    std::thread snapshot([&] { EXPECT_TRUE(registry_->WriteSnapshot().ok()); });
    writing.WaitForNotification();  // the file is being written
    v1::IdentifyRequest identify;
    *identify.add_probes() = services::SyntheticFaceTemplate(model_, 1, 1);
    absl::StatusOr<v1::IdentifyResponse> found = registry_->Identify(identify);
    ASSERT_TRUE(found.ok());
    ASSERT_GT(found->candidates_size(), 0);

    std::atomic<bool> released{false};
    std::atomic<bool> enrolled{false};
    std::thread writer([&] {
      Enroll(*registry_, 1000);
      // Streamed, the write can only get through once the file is done.
      if (!buffered) {
        EXPECT_TRUE(released.load());
      }
      enrolled = true;
    });
    if (buffered) {
      // Buffered, the write gets through while the file is still written.
      writer.join();
      EXPECT_TRUE(enrolled.load());
    } else {
      // Give a wrongly unblocked write the time to finish first.
      absl::SleepFor(absl::Milliseconds(100));
      EXPECT_FALSE(enrolled.load());
      // The waiting write waits on the registry's write lock, not on the
      // matcher's, where it would hold up every new search behind it.
      absl::Notification searched;
      std::thread search([&] {
        EXPECT_TRUE(registry_->Identify(identify).ok());
        searched.Notify();
      });
      EXPECT_TRUE(searched.WaitForNotificationWithTimeout(absl::Seconds(30)));
      released = true;
      release.Notify();  // whatever happened, let everything finish
      search.join();
    }
    if (!release.HasBeenNotified()) {
      released = true;
      release.Notify();
    }
    snapshot.join();
    if (writer.joinable()) writer.join();
    registry_.reset();
  }
}

// kill -9 in the middle of writing a snapshot: the previous one is used.
TEST_F(RegistrySnapshotTest, KilledMidWriteLeavesThePreviousSnapshot) {
  Reopen();
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);  // change 5
  for (uint64_t n = 5; n < 9; ++n) Enroll(*registry_, n);
  const Contents live = RebuiltGalleries();
  registry_.reset();

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Dies once the temporary file holds a few KiB: past the header, in the
    // galleries. _exit on any other outcome, which the parent reports.
    RegistryOptions options = Options(data_dir_);
    options.snapshot_on_write = [](uint64_t bytes) {
      if (bytes > 4096) raise(SIGKILL);
    };
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options);
    if (!registry.ok()) _exit(2);
    (void)(*registry)->WriteSnapshot();
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  const std::string temp = matcher::SnapshotFileWriter::TemporaryPath(
      SnapshotDir() + "/" + SnapshotFileName(9));
  ASSERT_TRUE(fs::exists(temp));
  EXPECT_GT(fs::file_size(temp), 4096u);

  Reopen();
  EXPECT_FALSE(fs::exists(temp));  // a crashed writer's leftovers go
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(5));
  EXPECT_EQ(registry_->load_report().replayed_subjects, 4);
  EXPECT_EQ(Galleries(*registry_), live);
}

TEST_F(RegistrySnapshotTest, FailedSnapshotNeverFailsARequest) {
  Reopen();
  Enroll(*registry_, 0);
  // The snapshot folder is replaced by a file: every write fails.
  fs::remove_all(SnapshotDir());
  Spit(SnapshotDir(), "not a folder");
  absl::StatusOr<SnapshotReport> failed = registry_->WriteSnapshot();
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(*registry_->ChangesSinceSnapshot(), 1);
  const std::string subject = Enroll(*registry_, 1);
  EXPECT_FALSE(subject.empty());
  Delete(*registry_, subject, /*erase=*/false);

  fs::remove(SnapshotDir());
  fs::create_directories(SnapshotDir());
  absl::StatusOr<SnapshotReport> written = registry_->WriteSnapshot();
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(written->written);
  EXPECT_EQ(Templates(Galleries(*registry_)), 1u);
}

TEST_F(RegistrySnapshotTest, DisabledSnapshotsRebuildAndWriteNothing) {
  Reopen();
  Enroll(*registry_, 0);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);
  registry_.reset();
  RegistryOptions options = Options(data_dir_);
  options.snapshots = false;
  registry_ = MustOpen(options);
  ASSERT_NE(registry_, nullptr);
  EXPECT_EQ(registry_->load_report().snapshot, "");
  EXPECT_THAT(registry_->load_report().refused,
              ElementsAre("snapshots disabled"));
  EXPECT_EQ(registry_->load_report().templates, 1u);
  EXPECT_EQ(registry_->WriteSnapshot().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RegistrySnapshotTest, StoreReportsItsChanges) {
  Reopen();
  const std::string a = Enroll(*registry_, 0);
  const std::string b = Enroll(*registry_, 1);
  Marry(*registry_, a);
  registry_.reset();
  absl::StatusOr<std::unique_ptr<Store>> store =
      Store::Open({data_dir_ + "/hawiya.db"});
  ASSERT_TRUE(store.ok());
  absl::StatusOr<std::string> id = (*store)->StoreId();
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->size(), 32u);
  EXPECT_EQ(*(*store)->ChangeSequence(), 3);
  absl::StatusOr<Change> change = (*store)->GetChange(3);
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->subject_id, a);
  EXPECT_EQ(change->kind, "update");
  EXPECT_EQ((*store)->GetChange(4).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<ChangedSubjects> changed = (*store)->SubjectsChangedAfter(0);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->sequence, 3);
  EXPECT_THAT(changed->subject_ids, ElementsAre(a, b));
  changed = (*store)->SubjectsChangedAfter(1);
  EXPECT_THAT(changed->subject_ids, ElementsAre(b, a));
  EXPECT_THAT((*store)->SubjectsChangedAfter(3)->subject_ids, IsEmpty());
  absl::StatusOr<std::vector<TemplateRecord>> templates =
      (*store)->ActiveTemplatesOf({b, "nobody", a});
  ASSERT_TRUE(templates.ok());
  ASSERT_EQ(templates->size(), 2u);
  EXPECT_EQ((*templates)[0].subject_id, b);
  EXPECT_EQ((*templates)[1].subject_id, a);
}

// Issue 4: after enrolments, a snapshot and more enrolments, no file under
// the data dir (store, WAL, snapshots, key folder) holds any template's
// vector or a 64-byte run of one.
TEST_F(RegistrySnapshotTest, NoPlaintextTemplateInTheDataDir) {
  Reopen();
  for (uint64_t n = 0; n < 8; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);
  Enroll(*registry_, 8);
  registry_.reset();
  std::vector<std::string> vectors;
  {
    // The vectors as stored (normalised by the registry).
    absl::StatusOr<std::unique_ptr<Store>> store =
        Store::Open({data_dir_ + "/hawiya.db"});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE(
        (*store)
            ->ForEachActiveTemplate([&](TemplateRecord&& record) {
              vectors.emplace_back(
                  reinterpret_cast<const char*>(record.tmpl.vector().data()),
                  record.tmpl.vector_size() * sizeof(float));
              return absl::OkStatus();
            })
            .ok());
  }
  ASSERT_EQ(vectors.size(), 9u);
  std::string all;
  for (const fs::directory_entry& entry :
       fs::recursive_directory_iterator(data_dir_)) {
    if (entry.is_regular_file()) all += Slurp(entry.path().string());
  }
  ASSERT_GT(all.size(), 9u * 2048u);
  for (const std::string& vector : vectors) {
    for (size_t offset = 0; offset + 64 <= vector.size(); offset += 64) {
      ASSERT_EQ(all.find(vector.substr(offset, 64)), std::string::npos)
          << "vector bytes " << offset << "..";
    }
  }
  // And the encrypted snapshot still seeds the galleries.
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(8));
  EXPECT_EQ(registry_->load_report().templates, 9u);
}

TEST_F(RegistrySnapshotTest, PlaintextSnapshotOfAnOlderVersionIsDeleted) {
  Reopen();
  for (uint64_t n = 0; n < 3; ++n) Enroll(*registry_, n);
  registry_.reset();
  // The head of a format 1 file (plaintext payload).
  std::string old = "HAWIYASN";
  old += std::string("\x01\x00\x00\x00", 4);
  old += std::string(200, 'p');
  const std::string path = SnapshotDir() + "/" + SnapshotFileName(3);
  Spit(path, old);
  Reopen();
  const GalleryLoadReport& report = registry_->load_report();
  EXPECT_EQ(report.snapshot, "");
  ASSERT_EQ(report.refused.size(), 1u);
  EXPECT_THAT(report.refused[0], HasSubstr("plaintext: deleted"));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(report.templates, 3u);
}

TEST_F(RegistrySnapshotTest, RotateKeyWritesASnapshotUnderTheNewKey) {
  Reopen();
  for (uint64_t n = 0; n < 5; ++n) Enroll(*registry_, n);
  ASSERT_TRUE(registry_->WriteSnapshot()->written);
  absl::StatusOr<v1::RotateKeyResponse> rotated =
      registry_->RotateKey(v1::RotateKeyRequest(), nullptr);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->key_version(), 2);
  EXPECT_EQ(rotated->templates_reencrypted(), 5);
  EXPECT_THAT(rotated->retired_key_versions(), ElementsAre(1));
  const std::vector<SnapshotFileInfo> files = ListSnapshots(SnapshotDir());
  ASSERT_EQ(files.size(), 1u);
  {
    absl::StatusOr<std::unique_ptr<matcher::SnapshotFileReader>> reader =
        matcher::SnapshotFileReader::Open(files[0].path, KeysOf(files[0].path));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->key_version(), 2u);
  }
  Enroll(*registry_, 5);  // under the new key, replayed at the next start
  registry_.reset();
  Reopen();
  EXPECT_EQ(registry_->load_report().snapshot, SnapshotFileName(5));
  EXPECT_TRUE(registry_->load_report().refused.empty())
      << registry_->load_report().ToString();
  EXPECT_EQ(registry_->load_report().templates, 6u);
}

// A schema-1 store (made before snapshots) gains a store id on migration,
// and keeps it.
TEST_F(RegistrySnapshotTest, OlderSchemaGainsAStoreId) {
  const std::string db = root_ + "/old.db";
  ASSERT_TRUE(Store::Open({db}).ok());
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  // Schema 1: no meta (2), no data keys or key versions (3), no audit (4),
  // no signing keys or partner quotas (5), no cases (6), no DISTINCT pairs
  // or name keys (7), no snapshot records (8).
  ASSERT_EQ(sqlite3_exec(raw,
                         "DROP TABLE snapshots; "
                         "DROP TABLE distinct_pairs; DROP TABLE name_keys; "
                         "DROP TABLE cases; DROP INDEX persons_by_birth_date; "
                         "DROP INDEX persons_by_national_id; "
                         "ALTER TABLE persons DROP COLUMN flags; "
                         "ALTER TABLE persons DROP COLUMN birth_date; "
                         "DROP TABLE signing_keys; DROP TABLE partner_quota; "
                         "DROP TABLE audit; "
                         "DROP TABLE meta; DROP TABLE data_keys; "
                         "ALTER TABLE templates DROP COLUMN key_version; "
                         "PRAGMA user_version = 1",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);

  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open({db});
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::string> id = (*store)->StoreId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_THAT(*id, ::testing::MatchesRegex("[0-9a-f]{32}"));
  store->reset();
  store = Store::Open({db});
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(*(*store)->StoreId(), *id);
  // Lost, a new one is made (and snapshots of the old one are refused).
  store->reset();
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "DELETE FROM meta", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  store = Store::Open({db});
  ASSERT_TRUE(store.ok());
  absl::StatusOr<std::string> made = (*store)->StoreId();
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_NE(*made, *id);
  EXPECT_EQ(*(*store)->StoreId(), *made);
  // Another store, another id.
  absl::StatusOr<std::unique_ptr<Store>> other =
      Store::Open({root_ + "/other.db"});
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*(*other)->StoreId(), *id);
}

}  // namespace
}  // namespace hawiya::enroll
