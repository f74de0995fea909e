#include "enroll/registry.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "enroll/names.h"
#include "enroll/receipts.h"
#include "enroll/snapshots.h"
#include "enroll/validation.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/field_mask_util.h"
#include "matcher/snapshot_file.h"

namespace hawiya::enroll {
namespace {

using google::protobuf::util::FieldMaskUtil;

constexpr size_t kMaxRequestIdBytes = 128;
constexpr size_t kMaxReasonBytes = 512;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr uint32_t kDefaultCandidates = 10;
constexpr uint32_t kMaxCandidates = 100;
constexpr size_t kMaxGallerySubjects = 10000;
// ListAuditRecords' principal filter (a certificate's URI SAN or CN).
constexpr size_t kMaxPrincipalFilterBytes = 1024;

// Person fields a client may set; their sub-fields may be named too.
constexpr const char* kMutablePaths[] = {
    "national_id",   "issuing_country", "name_ar", "name_latin",
    "date_of_birth", "place_of_birth",  "sex",     "nationality",
    "civil_status",  "documents"};

// SHA-256 of the deterministic serialization: equal requests, equal digest.
std::string Fingerprint(const google::protobuf::Message& message) {
  // Sized up front: growing the string as it goes cost a copy or two of a
  // 2 KB template per request.
  std::string bytes(message.ByteSizeLong(), '\0');
  {
    google::protobuf::io::ArrayOutputStream stream(
        bytes.data(), static_cast<int>(bytes.size()));
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeWithCachedSizes(&coded);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(),
             nullptr);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

absl::StatusOr<std::string> NewSubjectId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("no randomness for a subject id");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.empty()) {
    return absl::InvalidArgumentError(
        "request_id: required (an idempotency key chosen by the client)");
  }
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: at most ", kMaxRequestIdBytes, " bytes"));
  }
  return ValidateFreeText("request_id", request_id, kMaxRequestIdBytes);
}

absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::Status RequireSubjectId(absl::string_view field,
                              const std::string& subject_id) {
  if (subject_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  }
  return ValidateId(field, subject_id);
}

// A page token is checked for size before it is parsed (its content is not
// echoed).
absl::Status CheckPageTokenSize(const std::string& token) {
  if (token.size() > kMaxPageTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token: at most ", kMaxPageTokenBytes,
        " bytes (a token this server returned), is ", token.size()));
  }
  return absl::OkStatus();
}

// What one more record adds to a page response: the record, its field tag
// and its length.
size_t PageEntryBytes(const google::protobuf::Message& record) {
  return record.ByteSizeLong() + 6;
}

// Whether a record of `record_bytes` still fits a page holding `count`
// records of `page_bytes` in all (Registry::kMaxPageBytes). The first
// always does, so that every page moves the listing on.
bool FitsInPage(size_t page_bytes, size_t count, size_t record_bytes) {
  return count == 0 || page_bytes + record_bytes <= Registry::kMaxPageBytes;
}

std::vector<v1::Template> ToVector(
    const google::protobuf::RepeatedPtrField<v1::Template>& templates) {
  return std::vector<v1::Template>(templates.begin(), templates.end());
}

// Validated templates with L2-normalised vectors, as they are stored.
absl::StatusOr<std::vector<v1::Template>> StorableTemplates(
    const google::protobuf::RepeatedPtrField<v1::Template>& request,
    const matcher::Matcher& matcher, const InputLimits& limits) {
  std::vector<v1::Template> templates = ToVector(request);
  if (absl::Status s = ValidateTemplates("templates", templates, matcher);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateTemplateSet("templates", templates, limits);
      !s.ok()) {
    return s;
  }
  for (v1::Template& t : templates) {
    std::vector<float> unit = matcher::Normalized(t.vector());
    t.mutable_vector()->Assign(unit.begin(), unit.end());
  }
  return templates;
}

std::vector<matcher::Probe> ToProbes(
    const google::protobuf::RepeatedPtrField<v1::Template>& templates) {
  std::vector<matcher::Probe> probes;
  probes.reserve(templates.size());
  for (const v1::Template& t : templates) {
    probes.push_back(
        {static_cast<matcher::Modality>(t.modality()),
         std::vector<float>(t.vector().begin(), t.vector().end())});
  }
  return probes;
}

void FillModalityScores(
    const std::vector<matcher::ModalityScore>& scores,
    google::protobuf::RepeatedPtrField<v1::ModalityScore>* out) {
  for (const matcher::ModalityScore& s : scores) {
    v1::ModalityScore* score = out->Add();
    score->set_modality(static_cast<v1::Modality>(s.modality));
    score->set_score(s.score);
    score->set_normalized_score(s.normalized);
  }
}

absl::Status CheckProbes(
    const google::protobuf::RepeatedPtrField<v1::Template>& probes,
    const matcher::Matcher& matcher) {
  if (probes.empty()) {
    return absl::InvalidArgumentError("probes: at least one probe is required");
  }
  return ValidateTemplates("probes", ToVector(probes), matcher);
}

absl::Status CheckMask(const google::protobuf::FieldMask& mask) {
  if (mask.paths().empty()) {
    return absl::InvalidArgumentError(
        "update_mask: name at least one field to change");
  }
  for (const std::string& path : mask.paths()) {
    const std::string top(path.substr(0, path.find('.')));
    bool mutable_path = false;
    for (const char* allowed : kMutablePaths) mutable_path |= top == allowed;
    if (!FieldMaskUtil::GetFieldDescriptors(v1::Person::descriptor(), path,
                                            nullptr)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: unknown field ", Quote(path)));
    }
    if (!mutable_path) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: ", Quote(path), " is output only"));
    }
  }
  return absl::OkStatus();
}

std::string PageToken(v1::PersonState state, const std::string& last) {
  return absl::WebSafeBase64Escape(absl::StrCat("p1:", state, ":", last));
}

// Returns the subject id to continue after, "" for the first page.
absl::StatusOr<std::string> ParsePageToken(const std::string& token,
                                           v1::PersonState state) {
  if (token.empty()) return std::string();
  if (absl::Status s = CheckPageTokenSize(token); !s.ok()) return s;
  std::string raw;
  std::vector<std::string> parts;
  int token_state = 0;
  if (absl::WebSafeBase64Unescape(token, &raw)) {
    parts = absl::StrSplit(raw, absl::MaxSplits(':', 2));
  }
  if (parts.size() != 3 || parts[0] != "p1" ||
      !absl::SimpleAtoi(parts[1], &token_state) || parts[2].empty()) {
    return absl::InvalidArgumentError("page_token: not a token of this API");
  }
  if (token_state != state) {
    return absl::InvalidArgumentError(
        "page_token: issued for a different state filter");
  }
  return parts[2];
}

std::vector<matcher::TemplateToAdd> ToAdds(
    const std::vector<TemplateRecord>& templates) {
  std::vector<matcher::TemplateToAdd> adds;
  adds.reserve(templates.size());
  for (const TemplateRecord& record : templates) {
    adds.push_back({static_cast<matcher::Modality>(record.tmpl.modality()),
                    record.template_id,
                    std::vector<float>(record.tmpl.vector().begin(),
                                       record.tmpl.vector().end())});
  }
  return adds;
}

// Subjects read from the store per transaction while replaying.
constexpr size_t kReplayBatch = 512;

// Brings galleries loaded from a snapshot taken at change `after` up to the
// store: every subject changed since is removed from them and re-added with
// its current templates if it is ACTIVE. Idempotent: a subject whose change
// the snapshot already held ends exactly as it was, so it does not matter
// whether a change made while the snapshot was taken is in it or not.
absl::StatusOr<ChangedSubjects> Replay(Store& store, matcher::Matcher& matcher,
                                       int64_t after) {
  absl::StatusOr<ChangedSubjects> changed = store.SubjectsChangedAfter(after);
  if (!changed.ok()) return changed.status();
  const absl::Span<const std::string> subjects = changed->subject_ids;
  for (size_t begin = 0; begin < subjects.size(); begin += kReplayBatch) {
    const absl::Span<const std::string> batch =
        subjects.subspan(begin, kReplayBatch);
    absl::StatusOr<std::vector<TemplateRecord>> records =
        store.ActiveTemplatesOf(batch);
    if (!records.ok()) return records.status();
    // Records come grouped by subject, in batch order.
    size_t next = 0;
    std::vector<TemplateRecord> mine;
    for (const std::string& subject : batch) {
      mine.clear();
      while (next < records->size() && (*records)[next].subject_id == subject) {
        mine.push_back(std::move((*records)[next++]));
      }
      if (absl::Status s = matcher.Replace(subject, ToAdds(mine)); !s.ok()) {
        return Prefixed(absl::StrCat("subject ", subject, ": "), s);
      }
    }
  }
  return changed;
}

// The reader's messages start with "snapshot PATH: "; the report names the
// file once.
std::string Why(const std::string& path, const absl::Status& status) {
  absl::string_view message = status.message();
  absl::ConsumePrefix(&message, absl::StrCat("snapshot ", path, ": "));
  return absl::StrCat(std::filesystem::path(path).filename().string(), ": ",
                      message);
}

struct LoadedSnapshot {
  SnapshotHeader header;
  std::unique_ptr<matcher::Matcher> matcher;
  absl::Duration verify;
  absl::Duration load;
};

// The galleries in the snapshot at `path`, if it is whole (checksum), from
// this store and history, and made with these modalities.
absl::StatusOr<LoadedSnapshot> LoadSnapshot(
    const std::string& path, Store& store, const std::string& store_id,
    int64_t store_sequence,
    const std::vector<matcher::ModalitySpec>& modalities,
    const matcher::FusionOptions& fusion) {
  matcher::SnapshotFileReader::Options reader_options;
  reader_options.key =
      [&store](uint64_t version) -> absl::StatusOr<std::string> {
    absl::StatusOr<DataKey> key =
        store.GetDataKey(static_cast<int64_t>(version));
    if (!key.ok()) return key.status();
    return std::move(key->key);
  };
  absl::StatusOr<std::unique_ptr<matcher::SnapshotFileReader>> reader =
      matcher::SnapshotFileReader::Open(path, reader_options);
  if (!reader.ok()) return reader.status();
  // Verified before anything in it is read, so a damaged header is reported
  // as damage, not as (say) a snapshot of another store.
  const absl::Time start = absl::Now();
  if (absl::Status s = (*reader)->Verify(); !s.ok()) return s;
  LoadedSnapshot loaded;
  loaded.verify = absl::Now() - start;
  absl::StatusOr<SnapshotHeader> header = ReadSnapshotHeader(reader->get());
  if (!header.ok()) return header.status();
  loaded.header = *std::move(header);
  if (absl::Status s = CheckSnapshotHeader(loaded.header, store, store_id,
                                           store_sequence, modalities);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckSnapshotRecorded(loaded.header, (*reader)->file_id(), store);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::unique_ptr<matcher::Matcher>> matcher =
      matcher::Matcher::Load({modalities, fusion}, reader->get());
  if (!matcher.ok()) return matcher.status();
  if (absl::Status s = (*reader)->CheckAtEnd(); !s.ok()) return s;
  loaded.matcher = *std::move(matcher);
  loaded.load = absl::Now() - start - loaded.verify;
  return loaded;
}

// About what a snapshot of the galleries takes: the vectors, plus a label,
// a row subject and a subject id per template at most.
uint64_t GalleryBytes(const matcher::Matcher& matcher) {
  uint64_t bytes = 1 << 20;
  for (const matcher::GalleryInfo& info : matcher.Info()) {
    bytes += static_cast<uint64_t>(info.templates) *
             (static_cast<uint64_t>(info.spec.dimension) * sizeof(float) + 64);
  }
  return bytes;
}

// MemAvailable from /proc/meminfo, 0 if unknown.
uint64_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

size_t TemplateCount(const matcher::Matcher& matcher) {
  size_t templates = 0;
  for (const matcher::GalleryInfo& info : matcher.Info()) {
    templates += info.templates;
  }
  return templates;
}

// Deduplication.

constexpr size_t kMaxCommentBytes = 1024;

std::vector<matcher::Probe> ToProbes(absl::Span<const v1::Template> templates) {
  std::vector<matcher::Probe> probes;
  probes.reserve(templates.size());
  for (const v1::Template& t : templates) {
    probes.push_back(
        {static_cast<matcher::Modality>(t.modality()),
         std::vector<float>(t.vector().begin(), t.vector().end())});
  }
  return probes;
}

bool HasName(const v1::PersonName& name) {
  return !name.given().empty() || !name.family().empty();
}

// Whether any recorded name of `a` matches any of `b` (either script).
bool NamesMatch(const v1::Person& a, const v1::Person& b) {
  for (const v1::PersonName* x : {&a.name_ar(), &a.name_latin()}) {
    if (!HasName(*x)) continue;
    for (const v1::PersonName* y : {&b.name_ar(), &b.name_latin()}) {
      if (HasName(*y) && names::CompareNames(*x, *y).match) return true;
    }
  }
  return false;
}

bool SameDate(const v1::Person& a, const v1::Person& b) {
  return a.has_date_of_birth() && b.has_date_of_birth() &&
         a.date_of_birth().year() == b.date_of_birth().year() &&
         a.date_of_birth().month() == b.date_of_birth().month() &&
         a.date_of_birth().day() == b.date_of_birth().day();
}

absl::StatusOr<std::string> NewCaseId() {
  absl::StatusOr<std::string> id = NewSubjectId();
  if (!id.ok()) return id.status();
  return absl::StrCat("case-", *id);
}

// A case to open for `candidates`.
absl::StatusOr<v1::Case> NewCase(absl::string_view raised_by,
                                 const std::vector<v1::Candidate>& candidates) {
  absl::StatusOr<std::string> id = NewCaseId();
  if (!id.ok()) return id.status();
  v1::Case c;
  c.set_case_id(*std::move(id));
  c.set_raised_by(std::string(raised_by));
  for (const v1::Candidate& candidate : candidates) {
    *c.add_candidates()->mutable_candidate() = candidate;
  }
  return c;
}

void AuditCandidates(const std::vector<v1::Candidate>& candidates,
                     AuditWrite* audit) {
  for (const v1::Candidate& candidate : candidates) {
    audit->event.subject_ids.push_back(candidate.subject_id());
  }
}

// Fills an EnrollResponse's case from the store (a replay answers with the
// person as it is now: the case still holding it back, if any).
absl::Status FillCaseOf(Store& store, v1::EnrollResponse* response) {
  const std::string& case_id = response->person().case_id();
  if (case_id.empty()) return absl::OkStatus();
  response->set_case_id(case_id);
  absl::StatusOr<v1::Case> c = store.GetCase(case_id);
  if (!c.ok()) return c.status();
  for (const v1::CaseCandidate& candidate : c->candidates()) {
    *response->add_duplicates() = candidate.candidate();
  }
  return absl::OkStatus();
}

std::string CasePageToken(bool include_decided, int64_t sequence) {
  return absl::StrCat(include_decided ? "all:" : "open:", sequence);
}

}  // namespace

std::string GalleryLoadReport::ToString() const {
  const std::string why = absl::StrJoin(refused, "; ");
  if (snapshot.empty()) {
    return absl::StrCat("galleries: rebuilt from the store at change ",
                        sequence, " (", why, "): ", templates, " templates in ",
                        absl::FormatDuration(elapsed));
  }
  return absl::StrCat(
      "galleries: loaded ", snapshot, " (change ", snapshot_sequence,
      ") and replayed ", replayed_subjects, " subjects changed up to change ",
      sequence, ": ", templates, " templates in ",
      absl::FormatDuration(elapsed), " (checksum ",
      absl::FormatDuration(verify), ", galleries ", absl::FormatDuration(load),
      ", replay ", absl::FormatDuration(replay), ")",
      why.empty() ? "" : absl::StrCat("; not used: ", why));
}

std::string SnapshotReport::ToString() const {
  if (!written) {
    return absl::StrCat("snapshot: unchanged since change ", sequence);
  }
  return absl::StrCat("snapshot: wrote ", path, " (change ", sequence, ", ",
                      bytes, " bytes, ", buffered ? "buffered" : "streamed",
                      ") in ", absl::FormatDuration(elapsed),
                      ", writes waited ", absl::FormatDuration(writers_waited),
                      ", ", changes_pruned, " change-log rows pruned");
}

Registry::Registry(std::shared_ptr<const DataDirLock> data_dir_lock,
                   std::unique_ptr<Store> store,
                   std::unique_ptr<matcher::Matcher> matcher,
                   RegistryOptions options)
    : data_dir_lock_(std::move(data_dir_lock)),
      store_(std::move(store)),
      matcher_(std::move(matcher)),
      options_(std::move(options)),
      audit_log_(options_.audit_log) {}

Registry::~Registry() { audit_log_->Detach(); }

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(
    const RegistryOptions& options) {
  const absl::Time start = absl::Now();
  // Before anything in the folder is opened (the lock creates the folder).
  std::shared_ptr<const DataDirLock> data_dir_lock = options.data_dir_lock;
  std::error_code error;
  if (data_dir_lock == nullptr) {
    absl::StatusOr<std::unique_ptr<DataDirLock>> acquired =
        DataDirLock::Acquire(options.data_dir);
    if (!acquired.ok()) return acquired.status();
    data_dir_lock = *std::move(acquired);
  } else if (!std::filesystem::equivalent(
                 data_dir_lock->path(),
                 std::filesystem::path(options.data_dir) /
                     DataDirLock::kFileName,
                 error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data_dir_lock: holds ", data_dir_lock->data_dir(),
                     ", not data_dir ", options.data_dir));
  }
  StoreOptions store_options;
  store_options.path =
      (std::filesystem::path(options.data_dir) / "hawiya.db").string();
  store_options.key_file = options.key_file;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(store_options);
  if (!store.ok()) return store.status();
  // Auditing starts before the galleries load: calls refused meanwhile
  // (UNAVAILABLE) and denied ones are recorded too.
  RegistryOptions registry_options = options;
  if (registry_options.audit_log == nullptr) {
    registry_options.audit_log = std::make_shared<AuditLog>();
  }
  AuditLog* audit_log = registry_options.audit_log.get();
  if (absl::Status s = audit_log->Attach(store->get()); !s.ok()) return s;
  // Until the registry owns the store (its destructor detaches).
  auto detach = absl::MakeCleanup([audit_log] { audit_log->Detach(); });

  // From the newest usable snapshot, else from the store. Nothing writes the
  // store while Open runs, so the sequence read here stays the latest.
  GalleryLoadReport report;
  std::set<std::string> refused_paths;
  std::unique_ptr<matcher::Matcher> matcher;
  std::string store_id;
  const std::string snapshot_dir =
      (std::filesystem::path(options.data_dir) / "snapshots").string();
  if (options.snapshots) {
    absl::StatusOr<std::string> id = (*store)->StoreId();
    if (!id.ok()) return id.status();
    store_id = *std::move(id);
    absl::StatusOr<int64_t> sequence = (*store)->ChangeSequence();
    if (!sequence.ok()) return sequence.status();
    std::filesystem::create_directories(snapshot_dir, error);
    if (error) {
      report.refused.push_back(
          absl::StrCat(snapshot_dir, ": ", error.message()));
    } else {
      // No snapshot is being written yet: any temporary file is a crashed
      // writer's.
      RemoveTemporarySnapshots(snapshot_dir);
      const std::vector<SnapshotFileInfo> files = ListSnapshots(snapshot_dir);
      if (files.empty()) report.refused.push_back("no snapshot");
      for (const SnapshotFileInfo& file : files) {
        absl::StatusOr<LoadedSnapshot> loaded =
            LoadSnapshot(file.path, **store, store_id, *sequence,
                         options.modalities, options.fusion);
        if (!loaded.ok()) {
          report.refused.push_back(Why(file.path, loaded.status()));
          refused_paths.insert(file.path);
          // Written before templates were encrypted: it must not stay.
          if (matcher::IsPlaintextSnapshot(file.path)) {
            std::filesystem::remove(file.path, error);
            report.refused.back() += " (plaintext: deleted)";
          }
          continue;
        }
        const absl::Time replay_start = absl::Now();
        absl::StatusOr<ChangedSubjects> replayed =
            Replay(**store, *loaded->matcher, loaded->header.sequence);
        if (!replayed.ok()) {
          // Not the snapshot's fault; the rebuild reports the store's.
          report.refused.push_back(
              absl::StrCat(Why(file.path, replayed.status()),
                           " (while replaying the store's changes)"));
          break;
        }
        report.replay = absl::Now() - replay_start;
        report.verify = loaded->verify;
        report.load = loaded->load;
        report.snapshot = std::filesystem::path(file.path).filename().string();
        report.snapshot_sequence = loaded->header.sequence;
        report.replayed_subjects =
            static_cast<int64_t>(replayed->subject_ids.size());
        report.sequence = replayed->sequence;
        matcher = std::move(loaded->matcher);
        break;
      }
    }
  } else {
    report.refused.push_back("snapshots disabled");
  }

  const bool rebuild = matcher == nullptr;
  if (rebuild) {
    absl::StatusOr<std::unique_ptr<matcher::Matcher>> empty =
        matcher::Matcher::Open({options.modalities, options.fusion});
    if (!empty.ok()) return empty.status();
    matcher = *std::move(empty);
  }
  std::unique_ptr<Registry> registry(
      new Registry(std::move(data_dir_lock), *std::move(store),
                   std::move(matcher), std::move(registry_options)));
  std::move(detach).Cancel();
  {
    std::vector<matcher::ModalitySpec> specs = options.modalities;
    for (matcher::ModalitySpec& spec : specs) spec.index = {};
    // Scored as the main galleries score (same fusion, same impostor
    // statistics), so that one dedup threshold serves both.
    absl::StatusOr<std::unique_ptr<matcher::Matcher>> pending =
        matcher::Matcher::Open(
            {specs, options.fusion, registry->matcher_.get()});
    if (!pending.ok()) return pending.status();
    absl::StatusOr<std::vector<TemplateRecord>> templates =
        registry->store_->PendingTemplates();
    if (!templates.ok()) return templates.status();
    absl::MutexLock lock(&registry->write_mu_);
    registry->pending_ = *std::move(pending);
    for (size_t i = 0; i < templates->size();) {
      size_t j = i;
      while (j < templates->size() &&
             (*templates)[j].subject_id == (*templates)[i].subject_id) {
        ++j;
      }
      const std::vector<TemplateRecord> own(templates->begin() + i,
                                            templates->begin() + j);
      if (absl::Status s =
              registry->pending_->Add((*templates)[i].subject_id, ToAdds(own));
          !s.ok()) {
        return s;
      }
      i = j;
    }
  }
  if (rebuild) {
    // Read first: the galleries then hold at least every change up to it.
    absl::StatusOr<int64_t> sequence = registry->store_->ChangeSequence();
    if (!sequence.ok()) return sequence.status();
    report.sequence = *sequence;
    if (absl::Status s = registry->LoadGalleries(); !s.ok()) return s;
  }
  {
    absl::MutexLock lock(&registry->write_mu_);
    registry->galleries_sequence_ = report.sequence;
  }
  report.templates = TemplateCount(*registry->matcher_);
  report.elapsed = absl::Now() - start;
  registry->load_report_ = std::move(report);
  registry->key_report_ = registry->store_->key_report();
  if (absl::Status s = registry->LoadSigningKey(); !s.ok()) return s;
  registry->store_id_ = std::move(store_id);
  registry->snapshot_dir_ = snapshot_dir;
  // The snapshot on disk, not the replayed sequence: a restart would replay
  // from there again.
  registry->snapshot_sequence_ = registry->load_report_.snapshot_sequence;
  {
    absl::MutexLock lock(&registry->snapshot_mu_);
    registry->refused_snapshots_ = std::move(refused_paths);
  }
  return registry;
}

RegistryGauges Registry::Gauges() const {
  RegistryGauges gauges;
  gauges.galleries = matcher_->Info();
  gauges.cases_opened = cases_opened_.load();
  return gauges;
}

absl::StatusOr<int64_t> Registry::ChangesSinceSnapshot() {
  absl::StatusOr<int64_t> sequence = store_->ChangeSequence();
  if (!sequence.ok()) return sequence.status();
  return *sequence - snapshot_sequence_.load();
}

absl::StatusOr<SnapshotReport> Registry::WriteSnapshot(bool force) {
  if (!options_.snapshots) {
    return absl::FailedPreconditionError("snapshots: disabled");
  }
  const absl::Time start = absl::Now();
  absl::MutexLock snapshot_lock(&snapshot_mu_);
  SnapshotReport report;
  SnapshotFileInfo file;
  std::unique_ptr<matcher::SnapshotFileWriter> writer;
  // Under the current data key. A rotation deletes the old key once no
  // template uses it, whatever snapshot still does, so RotateKey writes a
  // snapshot under the new key after it (an older one is then refused at
  // start, and the next is tried or the galleries rebuilt).
  absl::StatusOr<DataKey> key = store_->CurrentDataKey();
  if (!key.ok()) return key.status();
  auto create = [&]() -> absl::Status {
    // An operator may have removed the folder; a file in its place fails
    // in Create.
    std::error_code error;
    std::filesystem::create_directories(snapshot_dir_, error);
    matcher::SnapshotFileWriter::Options writer_options;
    writer_options.key = key->key;
    writer_options.key_version = static_cast<uint64_t>(key->version);
    writer_options.on_write = options_.snapshot_on_write;
    absl::StatusOr<std::unique_ptr<matcher::SnapshotFileWriter>> created =
        matcher::SnapshotFileWriter::Create(file.path,
                                            std::move(writer_options));
    if (!created.ok()) return created.status();
    writer = *std::move(created);
    return absl::OkStatus();
  };
  // Buffered, the galleries are copied to memory while writes wait and
  // written to disk after: writes then wait for a memory copy, not for the
  // disk, which under the kernel's dirty-page throttling took up to 11 s for
  // 2 GB on the machine we measure on. It costs as much memory as the
  // galleries for the seconds of the write, so by default it is done only
  // if that leaves half of the available memory; otherwise the file is
  // written while writes wait.
  const uint64_t limit = options_.snapshot_buffer_bytes >= 0
                             ? options_.snapshot_buffer_bytes
                             : AvailableMemoryBytes() / 2;
  const uint64_t gallery_bytes = GalleryBytes(*matcher_);
  report.buffered = gallery_bytes <= limit;
  matcher::ChunkedSnapshotWriter buffer;
  int64_t create_time_us = 0;
  // The buffer's pages are faulted in before writes are made to wait, which
  // halves what they wait for.
  if (report.buffered) {
    if (absl::Status s = buffer.Reserve(gallery_bytes); !s.ok()) return s;
  }
  {
    // Consistency. write_mu_ is held across every write's store commit and
    // its gallery change, so while it is held here the galleries hold
    // exactly the store's changes up to its current sequence S, and none
    // after: the snapshot is taken at S and says so in its header. It stays
    // held while the galleries are copied out (not just while S is read) so
    // that writers queue here, on write_mu_, and not on the matcher's lock:
    // absl::Mutex lets no new reader in while a writer waits, so a writer
    // queued there would hold up every search behind it for the length of
    // the snapshot. Replay after a load is idempotent anyway (subject by
    // subject: remove, re-add from the store), so correctness would survive
    // a snapshot that also held some changes after S; holding the lock makes
    // it exact.
    absl::MutexLock lock(&write_mu_);
    const absl::Time locked = absl::Now();
    if (galleries_diverged_) {
      return absl::FailedPreconditionError(
          "snapshots: a gallery change failed after its store commit, so the "
          "galleries may differ from the store until a restart rebuilds them");
    }
    // Labelled with what the galleries hold, which is the store's latest
    // change unless another writer has written the store since this
    // registry's last write: then they are brought up to it first.
    absl::StatusOr<int64_t> store_sequence = store_->ChangeSequence();
    if (!store_sequence.ok()) return store_sequence.status();
    if (*store_sequence != galleries_sequence_) {
      if (absl::Status s = CatchUp(); !s.ok()) {
        GalleriesDiverged();
        return s;
      }
    }
    const int64_t sequence = galleries_sequence_;
    report.sequence = sequence;
    if (sequence == snapshot_sequence_.load() && !force) return report;
    SnapshotHeader header;
    header.store_id = store_id_;
    header.sequence = sequence;
    if (sequence > 0) {
      absl::StatusOr<Change> change = store_->GetChange(sequence);
      if (!change.ok()) return change.status();
      header.change_time_us = change->time_us;
      header.change_subject_id = change->subject_id;
    }
    header.create_time_us = absl::ToUnixMicros(absl::Now());
    create_time_us = header.create_time_us;
    header.modalities = options_.modalities;
    file.sequence = sequence;
    file.path =
        (std::filesystem::path(snapshot_dir_) / SnapshotFileName(sequence))
            .string();
    matcher::SnapshotWriter* out = &buffer;
    if (!report.buffered) {
      if (absl::Status s = create(); !s.ok()) return s;
      out = writer.get();
    }
    if (absl::Status s = WriteSnapshotHeader(header, out); !s.ok()) return s;
    if (absl::Status s = matcher_->Save(out); !s.ok()) return s;
    report.writers_waited = absl::Now() - locked;
  }
  if (report.buffered) {
    if (absl::Status s = create(); !s.ok()) return s;
    if (absl::Status s = buffer.MoveTo(writer.get()); !s.ok()) return s;
  }
  if (absl::Status s = writer->Commit(); !s.ok()) return s;
  // Open loads only a snapshot the store recorded; unrecorded, the file
  // would only be refused.
  if (absl::Status s = store_->RecordSnapshot(
          {file.sequence, writer->file_id(), create_time_us});
      !s.ok()) {
    std::error_code error;
    std::filesystem::remove(file.path, error);
    return s;
  }
  snapshot_sequence_ = file.sequence;
  refused_snapshots_.erase(file.path);
  PruneSnapshots(snapshot_dir_, file, refused_snapshots_);
  // The change log is only read to replay onto a snapshot: rows older than
  // the oldest snapshot left are never read again; nor are the records of
  // the files removed. Best effort, like the pruning of files: what is left
  // the next snapshot prunes.
  int64_t oldest_kept = file.sequence;
  std::vector<int64_t> kept_sequences;
  for (const SnapshotFileInfo& kept : ListSnapshots(snapshot_dir_)) {
    oldest_kept = std::min(oldest_kept, kept.sequence);
    kept_sequences.push_back(kept.sequence);
  }
  store_->ForgetSnapshots(kept_sequences).IgnoreError();
  if (absl::StatusOr<int64_t> pruned = store_->PruneChangesBefore(oldest_kept);
      pruned.ok()) {
    report.changes_pruned = *pruned;
  }
  report.written = true;
  report.path = file.path;
  report.bytes = writer->bytes();
  report.elapsed = absl::Now() - start;
  return report;
}

absl::Status Registry::LoadGalleries() {
  // Batches one subject's templates so a subject is added whole.
  std::string subject;
  std::vector<matcher::TemplateToAdd> batch;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    absl::Status s = matcher_->Add(subject, batch);
    batch.clear();
    return s;
  };
  absl::Status s = store_->ForEachActiveTemplate(
      [&](TemplateRecord&& record) -> absl::Status {
        if (record.subject_id != subject) {
          if (absl::Status f = flush(); !f.ok()) return f;
          subject = record.subject_id;
        }
        batch.push_back({static_cast<matcher::Modality>(record.tmpl.modality()),
                         record.template_id,
                         std::vector<float>(record.tmpl.vector().begin(),
                                            record.tmpl.vector().end())});
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return flush();
}

void Registry::FollowWrite(const AuditWrite& audit) {
  if (audit.last_change == 0) return;
  if (audit.first_change == galleries_sequence_ + 1) {
    galleries_sequence_ = audit.last_change;
    return;
  }
  // Another writer's changes came before this write's: the galleries miss
  // them (and this write was checked against galleries without them).
  if (!CatchUp().ok()) GalleriesDiverged();
}

absl::Status Registry::CatchUp() {
  absl::StatusOr<ChangedSubjects> changed =
      store_->SubjectsChangedAfter(galleries_sequence_);
  if (!changed.ok()) return changed.status();
  for (const std::string& subject_id : changed->subject_ids) {
    if (absl::Status s = SyncGalleries(subject_id); !s.ok()) return s;
  }
  galleries_sequence_ = changed->sequence;
  return absl::OkStatus();
}

absl::Status Registry::AddToGalleries(
    const std::string& subject_id,
    const std::vector<TemplateRecord>& templates) {
  return matcher_->Add(subject_id, ToAdds(templates));
}

absl::StatusOr<v1::Person> Registry::Resolve(
    const std::string& subject_id, const std::string& national_id,
    const std::string& issuing_country) {
  if (absl::Status s =
          ValidatePersonRef(subject_id, national_id, issuing_country);
      !s.ok()) {
    return s;
  }
  if (!subject_id.empty()) return store_->GetPerson(subject_id);
  if (national_id.empty() && issuing_country.empty()) {
    return absl::InvalidArgumentError(
        "subject_id: give subject_id, or national_id and issuing_country");
  }
  if (absl::Status s = ValidateNationalId("national_id", national_id);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateCountryCode("issuing_country", issuing_country);
      !s.ok()) {
    return s;
  }
  return store_->FindPerson(national_id, issuing_country);
}

absl::StatusOr<NewPerson> Registry::PrepareEnroll(
    const v1::EnrollRequest& request, absl::Time now) const {
  if (absl::Status s = CheckRequestId(request.request_id()); !s.ok()) return s;
  if (!request.has_person()) {
    return absl::InvalidArgumentError("person: required");
  }
  if (absl::Status s =
          ValidatePerson("person", request.person(), now, options_.limits);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<v1::Template>> templates =
      StorableTemplates(request.templates(), *matcher_, options_.limits);
  if (!templates.ok()) return templates.status();
  absl::StatusOr<std::string> subject_id = NewSubjectId();
  if (!subject_id.ok()) return subject_id.status();
  NewPerson prepared;
  prepared.key = {request.request_id(), "Enroll", Fingerprint(request)};
  prepared.person = request.person();
  prepared.person.clear_create_time();
  prepared.person.clear_update_time();
  prepared.person.clear_version();
  prepared.person.clear_template_counts();
  prepared.person.set_subject_id(*std::move(subject_id));
  prepared.person.set_state(v1::ACTIVE);
  prepared.templates = *std::move(templates);
  return prepared;
}

absl::StatusOr<v1::EnrollResponse> Registry::DoEnroll(
    const v1::EnrollRequest& request, AuditWrite* audit) {
  absl::StatusOr<NewPerson> prepared = PrepareEnroll(request, absl::Now());
  if (!prepared.ok()) return prepared.status();

  WriteLock lock(this, audit);
  // Searched under the write lock: no other write can commit between the
  // search and this one, so two enrollments of one person cannot both
  // become ACTIVE.
  std::vector<v1::Candidate> duplicates;
  if (options_.dedup.enabled) {
    absl::StatusOr<std::vector<v1::Candidate>> found = FindDuplicates(
        prepared->person, prepared->templates, /*demographic=*/true, nullptr);
    if (!found.ok()) return found.status();
    duplicates = *std::move(found);
  }
  if (!duplicates.empty()) {
    absl::StatusOr<v1::Case> opened = NewCase("Enroll", duplicates);
    if (!opened.ok()) return opened.status();
    prepared->dedup_case = *std::move(opened);
    prepared->person.set_state(v1::PENDING_ADJUDICATION);
    AuditCandidates(duplicates, audit);
  }
  absl::StatusOr<WriteResult> written =
      store_->CreatePerson(prepared->key, prepared->person, prepared->templates,
                           audit, &prepared->dedup_case);
  if (!written.ok()) return written.status();
  if (!written->replayed) {
    const bool active = written->person.state() == v1::ACTIVE;
    absl::Status s = active ? AddToGalleries(prepared->person.subject_id(),
                                             written->templates)
                            : pending_->Add(prepared->person.subject_id(),
                                            ToAdds(written->templates));
    if (!s.ok()) {
      GalleriesDiverged();
      return s;
    }
  }
  v1::EnrollResponse response;
  *response.mutable_person() = std::move(written->person);
  if (!written->replayed) {
    response.set_case_id(response.person().case_id());
    if (!response.case_id().empty()) cases_opened_.fetch_add(1);
    for (v1::Candidate& c : duplicates)
      *response.add_duplicates() = std::move(c);
  } else if (absl::Status s = FillCaseOf(*store_, &response); !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::BatchEnrollResponse> Registry::DoBatchEnroll(
    absl::Span<const v1::EnrollRequest> requests,
    const std::function<bool()>& cancelled, AuditWrite* audit) {
  if (requests.size() > kMaxBatchEnrollRequests) {
    return absl::InvalidArgumentError(absl::StrCat(
        "requests: at most ", kMaxBatchEnrollRequests, " per call"));
  }
  // Everything is checked before the write lock is taken, so an invalid
  // batch costs the writers nothing.
  const absl::Time now = absl::Now();
  std::vector<NewPerson> persons;
  persons.reserve(requests.size());
  // The first request naming each "COUNTRY:national_id".
  absl::flat_hash_map<std::string, size_t> first_with_id;
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::StatusOr<NewPerson> prepared = PrepareEnroll(requests[i], now);
    if (!prepared.ok()) {
      return Prefixed(absl::StrCat("requests[", i, "]."), prepared.status());
    }
    const auto [first, inserted] =
        first_with_id.emplace(absl::StrCat(prepared->person.issuing_country(),
                                           ":", prepared->person.national_id()),
                              i);
    // The same request_id twice is a replay (or a request_id conflict) that
    // the store judges; two request ids for one person is a duplicate.
    if (!inserted &&
        requests[first->second].request_id() != requests[i].request_id()) {
      return absl::AlreadyExistsError(
          absl::StrCat("requests[", i,
                       "].person.national_id: ", prepared->person.national_id(),
                       " for ", prepared->person.issuing_country(),
                       " is also in requests[", first->second, "]"));
    }
    persons.push_back(*std::move(prepared));
  }

  // Validation and the wait for the write lock can take a while; a caller
  // that has given up by then gets nothing written.
  const auto abandoned = [&cancelled] {
    return cancelled && cancelled()
               ? absl::CancelledError(
                     "requests: the call was cancelled or its deadline "
                     "passed before the batch was written; nothing was "
                     "written")
               : absl::OkStatus();
  };
  if (absl::Status s = abandoned(); !s.ok()) return s;
  WriteLock lock(this, audit);
  if (absl::Status s = abandoned(); !s.ok()) return s;
  // Each item against the galleries and the earlier items of the batch.
  std::vector<std::vector<v1::Candidate>> duplicates(persons.size());
  if (options_.dedup.enabled) {
    // The items with templates, searched all at once; item_set[i] is item
    // i's index among them.
    constexpr size_t kNoSet = static_cast<size_t>(-1);
    std::vector<size_t> item_set(persons.size(), kNoSet);
    std::vector<std::string> subject_ids;
    std::vector<std::vector<matcher::Probe>> probe_sets;
    for (size_t i = 0; i < persons.size(); ++i) {
      if (persons[i].templates.empty()) continue;
      item_set[i] = probe_sets.size();
      subject_ids.push_back(persons[i].person.subject_id());
      probe_sets.push_back(ToProbes(persons[i].templates));
    }
    absl::StatusOr<std::array<std::vector<std::vector<matcher::Match>>, 3>>
        searched = BatchDedupMatches(subject_ids, probe_sets);
    if (!searched.ok()) return searched.status();
    BatchSoFar batch;
    for (size_t i = 0; i < persons.size(); ++i) {
      NewPerson& item = persons[i];
      batch.matches.clear();
      if (item_set[i] != kNoSet) {
        for (const std::vector<std::vector<matcher::Match>>& by_item :
             *searched) {
          batch.matches.push_back(by_item[item_set[i]]);
        }
      }
      absl::StatusOr<std::vector<v1::Candidate>> found = FindDuplicates(
          item.person, item.templates, /*demographic=*/true, &batch);
      if (!found.ok()) {
        return Prefixed(absl::StrCat("requests[", i, "]."), found.status());
      }
      duplicates[i] = *std::move(found);
      if (!duplicates[i].empty()) {
        absl::StatusOr<v1::Case> opened = NewCase("BatchEnroll", duplicates[i]);
        if (!opened.ok()) return opened.status();
        item.dedup_case = *std::move(opened);
        item.person.set_state(v1::PENDING_ADJUDICATION);
      }
      batch.persons.push_back(&item.person);
    }
  }
  absl::StatusOr<std::vector<WriteResult>> written =
      store_->CreatePersons(persons, audit);
  if (!written.ok()) {
    // The store names an item as "[i]."; other errors are about the call.
    if (absl::StartsWith(written.status().message(), "[")) {
      return Prefixed("requests", written.status());
    }
    return written.status();
  }
  v1::BatchEnrollResponse response;
  for (size_t i = 0; i < written->size(); ++i) {
    WriteResult& result = (*written)[i];
    if (!result.replayed) {
      const bool active = result.person.state() == v1::ACTIVE;
      absl::Status s =
          active ? AddToGalleries(result.person.subject_id(), result.templates)
                 : pending_->Add(result.person.subject_id(),
                                 ToAdds(result.templates));
      if (!s.ok()) {
        GalleriesDiverged();
        return s;
      }
    }
    v1::EnrollResponse* item = response.add_responses();
    *item->mutable_person() = std::move(result.person);
    if (!result.replayed) {
      item->set_case_id(item->person().case_id());
      if (!item->case_id().empty()) cases_opened_.fetch_add(1);
      for (v1::Candidate& c : duplicates[i]) {
        *item->add_duplicates() = std::move(c);
      }
    } else if (absl::Status s = FillCaseOf(*store_, item); !s.ok()) {
      return s;
    }
  }
  return response;
}

absl::StatusOr<v1::Person> Registry::DoUpdatePerson(
    const v1::UpdatePersonRequest& request, AuditWrite* audit) {
  if (absl::Status s =
          RequireSubjectId("person.subject_id", request.person().subject_id());
      !s.ok()) {
    return s;
  }
  if (request.expected_version() <= 0) {
    return absl::InvalidArgumentError(
        "expected_version: required (the version last read)");
  }
  if (absl::Status s = CheckMask(request.update_mask()); !s.ok()) return s;

  WriteLock lock(this, audit);
  absl::StatusOr<v1::Person> current =
      store_->GetPerson(request.person().subject_id());
  if (!current.ok()) return current.status();
  if (current->version() != request.expected_version()) {
    return absl::AbortedError(
        absl::StrCat("expected_version: is ", request.expected_version(),
                     ", current version is ", current->version()));
  }
  v1::Person updated = *current;
  FieldMaskUtil::MergeOptions merge;
  merge.set_replace_message_fields(true);
  merge.set_replace_repeated_fields(true);
  FieldMaskUtil::MergeMessageTo(request.person(), request.update_mask(), merge,
                                &updated);
  if (absl::Status s =
          ValidatePerson("person", updated, absl::Now(), options_.limits);
      !s.ok()) {
    return s;
  }
  return store_->UpdatePerson(updated, request.expected_version(), audit);
}

absl::StatusOr<v1::Person> Registry::DoReplaceTemplates(
    const v1::ReplaceTemplatesRequest& request, AuditWrite* audit) {
  if (absl::Status s = CheckRequestId(request.request_id()); !s.ok()) return s;
  if (absl::Status s = RequireSubjectId("subject_id", request.subject_id());
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<v1::Template>> templates =
      StorableTemplates(request.templates(), *matcher_, options_.limits);
  if (!templates.ok()) return templates.status();
  const IdempotencyKey key{request.request_id(), "ReplaceTemplates",
                           Fingerprint(request)};

  WriteLock lock(this, audit);
  // New templates of an ACTIVE person are deduplicated (biometrically: the
  // record's demographics did not change); a pending person is already
  // held by its case.
  v1::Case dedup_case;
  if (options_.dedup.enabled) {
    absl::StatusOr<v1::Person> current =
        store_->GetPerson(request.subject_id());
    if (current.ok() && current->state() == v1::ACTIVE) {
      absl::StatusOr<std::vector<v1::Candidate>> found =
          FindDuplicates(*current, *templates, /*demographic=*/false, nullptr);
      if (!found.ok()) return found.status();
      if (!found->empty()) {
        absl::StatusOr<v1::Case> opened = NewCase("ReplaceTemplates", *found);
        if (!opened.ok()) return opened.status();
        dedup_case = *std::move(opened);
        AuditCandidates(*found, audit);
      }
    }
  }
  // The store checks the person's state after the replay lookup.
  absl::StatusOr<WriteResult> written = store_->ReplaceTemplates(
      key, request.subject_id(), *templates, audit, &dedup_case);
  if (!written.ok()) return written.status();
  if (!written->replayed && !dedup_case.case_id().empty()) {
    cases_opened_.fetch_add(1);
  }
  if (!written->replayed) {
    absl::Status s;
    if (written->person.state() == v1::ACTIVE) {
      s = matcher_->Replace(request.subject_id(), ToAdds(written->templates));
    } else if (written->person.state() == v1::PENDING_ADJUDICATION) {
      matcher_->RemoveSubject(request.subject_id());
      s = pending_->Replace(request.subject_id(), ToAdds(written->templates));
    }
    if (!s.ok()) {
      GalleriesDiverged();
      return s;
    }
  }
  return std::move(written->person);
}

absl::Status Registry::DoDeletePerson(const v1::DeletePersonRequest& request,
                                      AuditWrite* audit) {
  if (absl::Status s = RequireSubjectId("subject_id", request.subject_id());
      !s.ok()) {
    return s;
  }
  if (request.reason().empty()) {
    return absl::InvalidArgumentError(
        "reason: required (why the record is withdrawn)");
  }
  if (request.reason().size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: at most ", kMaxReasonBytes, " bytes"));
  }
  if (absl::Status s =
          ValidateFreeText("reason", request.reason(), kMaxReasonBytes);
      !s.ok()) {
    return s;
  }
  WriteLock lock(this, audit);
  absl::Status s =
      request.erase()
          ? store_->ErasePerson(request.subject_id(), audit)
          : store_->RevokePerson(request.subject_id(), request.reason(), audit);
  // An erase can fail after its commit (the WAL checkpoint that scrubs old
  // pages): the person must leave the galleries whatever the error, since
  // matching an erased person is worse than missing one until restart.
  if (s.ok() || request.erase()) {
    matcher_->RemoveSubject(request.subject_id());
    pending_->RemoveSubject(request.subject_id());
  }
  if (!s.ok() && request.erase()) {
    // If the erase did not commit, an ACTIVE person is now missing from the
    // galleries, and no change in the store says so.
    absl::StatusOr<v1::Person> still = store_->GetPerson(request.subject_id());
    if (!absl::IsNotFound(still.status()) &&
        (!still.ok() || still->state() == v1::ACTIVE)) {
      GalleriesDiverged();
    }
  }
  return s;
}

absl::StatusOr<v1::ListPersonsResponse> Registry::DoListPersons(
    const v1::ListPersonsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: ", request.page_size(), " out of range 0-", kMaxPageSize));
  }
  if (!v1::PersonState_IsValid(request.state())) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: unknown value ", request.state()));
  }
  absl::StatusOr<std::string> after =
      ParsePageToken(request.page_token(), request.state());
  if (!after.ok()) return after.status();
  const int page_size =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  absl::StatusOr<PersonPage> page =
      store_->ListPersons(request.state(), page_size, *after);
  if (!page.ok()) return page.status();
  v1::ListPersonsResponse response;
  size_t page_bytes = 0;
  for (v1::Person& person : page->persons) {
    const size_t bytes = PageEntryBytes(person);
    if (!FitsInPage(page_bytes, response.persons_size(), bytes)) {
      // Ends early: the next page starts at this person.
      response.set_next_page_token(PageToken(
          request.state(),
          response.persons(response.persons_size() - 1).subject_id()));
      return response;
    }
    page_bytes += bytes;
    *response.add_persons() = std::move(person);
  }
  if (!page->last_subject_id.empty()) {
    response.set_next_page_token(
        PageToken(request.state(), page->last_subject_id));
  }
  return response;
}

absl::StatusOr<v1::VerifyResponse> Registry::DoVerify(
    const v1::VerifyRequest& request) {
  if (absl::Status s = CheckProbes(request.probes(), *matcher_); !s.ok()) {
    return s;
  }
  absl::StatusOr<v1::Person> person = Resolve(
      request.subject_id(), request.national_id(), request.issuing_country());
  if (!person.ok()) return person.status();
  if (person->state() != v1::ACTIVE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "subject_id: person is ", v1::PersonState_Name(person->state())));
  }
  absl::StatusOr<matcher::Match> match =
      matcher_->Verify(person->subject_id(), ToProbes(request.probes()));
  if (!match.ok()) return match.status();
  v1::VerifyResponse response;
  response.set_subject_id(person->subject_id());
  response.set_score(match->score);
  response.set_threshold(match->threshold);
  response.set_match(match->score >= match->threshold);
  FillModalityScores(match->modality_scores,
                     response.mutable_modality_scores());
  return response;
}

absl::StatusOr<v1::IdentifyResponse> Registry::DoIdentify(
    const v1::IdentifyRequest& request) {
  if (absl::Status s = CheckProbes(request.probes(), *matcher_); !s.ok()) {
    return s;
  }
  if (request.max_candidates() > kMaxCandidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_candidates: ", request.max_candidates(),
                     " is more than ", kMaxCandidates));
  }
  // Cosines (the mean fusion) lie in [-1, 1]; z scores have no such range.
  const bool cosine_scale =
      matcher_->fusion().rule == matcher::FusionRule::kMean;
  if (request.has_min_score() &&
      (!std::isfinite(request.min_score()) ||
       (cosine_scale &&
        (request.min_score() < -1.0f || request.min_score() > 1.0f)))) {
    return absl::InvalidArgumentError(
        cosine_scale ? "min_score: must be a number in [-1, 1]"
                     : "min_score: must be a finite number");
  }
  if (static_cast<size_t>(request.gallery_size()) > kMaxGallerySubjects) {
    return absl::InvalidArgumentError(
        absl::StrCat("gallery: at most ", kMaxGallerySubjects, " subject ids"));
  }
  for (int i = 0; i < request.gallery_size(); ++i) {
    if (absl::Status s =
            ValidateId(absl::StrCat("gallery[", i, "]"), request.gallery(i));
        !s.ok()) {
      return s;
    }
  }
  matcher::IdentifyOptions options;
  options.max_candidates = request.max_candidates() == 0
                               ? kDefaultCandidates
                               : request.max_candidates();
  if (request.has_min_score()) options.min_score = request.min_score();
  options.restrict_to.assign(request.gallery().begin(),
                             request.gallery().end());
  const std::vector<matcher::Probe> probes = ToProbes(request.probes());
  absl::StatusOr<std::vector<matcher::Match>> matches =
      matcher_->Identify(probes, options);
  if (!matches.ok()) return matches.status();
  v1::IdentifyResponse response;
  response.set_threshold(matcher_->FusedThreshold(probes));
  uint32_t rank = 0;
  for (const matcher::Match& match : *matches) {
    v1::Candidate* candidate = response.add_candidates();
    candidate->set_subject_id(match.subject_id);
    candidate->set_score(match.score);
    candidate->set_rank(++rank);
    FillModalityScores(match.modality_scores,
                       candidate->mutable_modality_scores());
  }
  return response;
}

absl::StatusOr<v1::RotateKeyResponse> Registry::DoRotateKey(
    const v1::RotateKeyRequest& request, std::function<bool()> cancelled) {
  if (!request.new_key_file().empty()) {
    // The path is the server's: a relative one would resolve against
    // whatever folder the server was started in.
    if (!std::filesystem::path(request.new_key_file()).is_absolute()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "new_key_file: ", Quote(request.new_key_file()),
          " is not an absolute path (it names a file on the server)"));
    }
    if (request.batch_size() > 0) {
      return absl::InvalidArgumentError(
          "batch_size: not used with new_key_file (a key-encryption key "
          "rotation re-wraps the data keys only; rotate the data key in "
          "another call)");
    }
    if (cancelled && cancelled()) {
      return absl::CancelledError("new_key_file: not rotated (cancelled)");
    }
    RewrapKeysOptions rewrap;
    rewrap.new_key_file = request.new_key_file();
    absl::StatusOr<RewrapKeysResult> rewrapped = store_->RewrapDataKeys(rewrap);
    if (!rewrapped.ok()) return rewrapped.status();
    absl::StatusOr<DataKey> current = store_->CurrentDataKey();
    if (!current.ok()) return current.status();
    v1::RotateKeyResponse response;
    response.set_key_version(current->version);
    response.set_data_keys_rewrapped(rewrapped->data_keys);
    response.set_key_check(rewrapped->key_check);
    response.set_previous_key_check(rewrapped->previous_key_check);
    return response;
  }
  RotateKeyOptions rotate;
  if (request.batch_size() > 0) {
    rotate.batch_rows = static_cast<int>(std::min<uint32_t>(
        request.batch_size(), static_cast<uint32_t>(kMaxBatchEnrollRequests)));
  }
  rotate.cancelled = std::move(cancelled);
  absl::StatusOr<RotateKeyResult> rotated = store_->RotateDataKey(rotate);
  if (!rotated.ok()) return rotated.status();
  v1::RotateKeyResponse response;
  response.set_key_version(rotated->key_version);
  response.set_templates_reencrypted(rotated->templates_reencrypted);
  for (int64_t version : rotated->retired_versions) {
    response.add_retired_key_versions(version);
  }
  // Best effort, like every snapshot: without it the next start rebuilds
  // the galleries from the store.
  if (options_.snapshots) WriteSnapshot(/*force=*/true).IgnoreError();
  return response;
}

absl::StatusOr<v1::GetStatsResponse> Registry::DoGetStats() {
  absl::StatusOr<std::map<v1::PersonState, int64_t>> counts =
      store_->CountPersons();
  if (!counts.ok()) return counts.status();
  v1::GetStatsResponse response;
  int64_t total = 0;
  for (const auto& [state, count] : *counts) {
    total += count;
    v1::StateCount* by_state = response.add_persons_by_state();
    by_state->set_state(state);
    by_state->set_count(count);
  }
  response.set_persons(total);
  for (const matcher::GalleryInfo& info : matcher_->Info()) {
    v1::GalleryStats* gallery = response.add_galleries();
    gallery->set_modality(static_cast<v1::Modality>(info.spec.modality));
    gallery->set_dimension(info.spec.dimension);
    gallery->set_templates(static_cast<int64_t>(info.templates));
    gallery->set_index_kind(info.index_kind);
    gallery->set_threshold(info.spec.threshold);
    gallery->set_impostor_mean(info.impostor.mean);
    gallery->set_impostor_std(info.impostor.std);
    gallery->set_impostor_scores(static_cast<int64_t>(info.impostor.scores));
    gallery->set_impostor_source(
        std::string(matcher::ImpostorSourceName(info.impostor.source)));
  }
  return response;
}

// Audit: each request method wraps its Do* with the call's record.

namespace {

// Resource strings come from the request: bounded, and their control
// characters escaped, so that a refused request can make neither a large
// record nor one that breaks a line of whatever prints it.
constexpr size_t kMaxResourceBytes = 256;

std::string Clip(const std::string& value) {
  return AuditText(value, kMaxResourceBytes);
}

std::string NationalIdResource(const std::string& issuing_country,
                               const std::string& national_id) {
  if (issuing_country.empty() && national_id.empty()) return "";
  return Clip(absl::StrCat(issuing_country, "/", national_id));
}

AuditWrite NewAudit(const AuditActor& actor) {
  return AuditWrite{AuditEvent::For(actor)};
}

int64_t Micros(const google::protobuf::Timestamp& time) {
  return time.seconds() * 1000000 + time.nanos() / 1000;
}

}  // namespace

absl::Status Registry::Audit(const absl::Status& outcome, AuditWrite& audit) {
  if (audit.sequence != 0) return outcome;  // committed with the write
  audit.event.outcome = static_cast<int>(outcome.code());
  absl::Status written = audit_log_->Append(std::move(audit.event));
  // A failed call stays failed, with its own error.
  if (written.ok() || !outcome.ok()) return outcome;
  return absl::UnavailableError(
      absl::StrCat("audit: the call's audit record could not be written, so "
                   "the call is refused: ",
                   written.message()));
}

absl::StatusOr<v1::EnrollResponse> Registry::Enroll(
    const v1::EnrollRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.request_id = Clip(request.request_id());
  audit.event.national_id = NationalIdResource(
      request.person().issuing_country(), request.person().national_id());
  absl::StatusOr<v1::EnrollResponse> response = DoEnroll(request, &audit);
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::BatchEnrollResponse> Registry::BatchEnroll(
    absl::Span<const v1::EnrollRequest> requests,
    const std::function<bool()>& cancelled, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::BatchEnrollResponse> response =
      DoBatchEnroll(requests, cancelled, &audit);
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::Person> Registry::GetPerson(
    const v1::GetPersonRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.subject_id = Clip(request.subject_id());
  audit.event.national_id =
      NationalIdResource(request.issuing_country(), request.national_id());
  absl::StatusOr<v1::Person> person = Resolve(
      request.subject_id(), request.national_id(), request.issuing_country());
  if (person.ok()) audit.event.subject_id = person->subject_id();
  if (absl::Status s = Audit(person.status(), audit); !s.ok()) return s;
  return person;
}

absl::StatusOr<v1::Person> Registry::UpdatePerson(
    const v1::UpdatePersonRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.subject_id = Clip(request.person().subject_id());
  absl::StatusOr<v1::Person> person = DoUpdatePerson(request, &audit);
  if (absl::Status s = Audit(person.status(), audit); !s.ok()) return s;
  return person;
}

absl::StatusOr<v1::Person> Registry::ReplaceTemplates(
    const v1::ReplaceTemplatesRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.subject_id = Clip(request.subject_id());
  audit.event.request_id = Clip(request.request_id());
  absl::StatusOr<v1::Person> person = DoReplaceTemplates(request, &audit);
  if (absl::Status s = Audit(person.status(), audit); !s.ok()) return s;
  return person;
}

absl::Status Registry::DeletePerson(const v1::DeletePersonRequest& request,
                                    const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.subject_id = Clip(request.subject_id());
  return Audit(DoDeletePerson(request, &audit), audit);
}

absl::StatusOr<v1::ListPersonsResponse> Registry::ListPersons(
    const v1::ListPersonsRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::ListPersonsResponse> response = DoListPersons(request);
  if (response.ok()) {
    for (const v1::Person& person : response->persons()) {
      audit.event.subject_ids.push_back(person.subject_id());
    }
  }
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::VerifyResponse> Registry::Verify(
    const v1::VerifyRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.subject_id = Clip(request.subject_id());
  audit.event.national_id =
      NationalIdResource(request.issuing_country(), request.national_id());
  absl::StatusOr<v1::VerifyResponse> response = DoVerify(request);
  if (response.ok()) audit.event.subject_id = response->subject_id();
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::IdentifyResponse> Registry::Identify(
    const v1::IdentifyRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::IdentifyResponse> response = DoIdentify(request);
  if (response.ok()) {
    for (const v1::Candidate& candidate : response->candidates()) {
      audit.event.subject_ids.push_back(candidate.subject_id());
    }
  }
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::GetStatsResponse> Registry::GetStats(
    const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::GetStatsResponse> response = DoGetStats();
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::RotateKeyResponse> Registry::RotateKey(
    const v1::RotateKeyRequest& request, std::function<bool()> cancelled,
    const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::RotateKeyResponse> response =
      DoRotateKey(request, std::move(cancelled));
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::ListAuditRecordsResponse> Registry::ListAuditRecords(
    const v1::ListAuditRecordsRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::ListAuditRecordsResponse> response =
      DoListAuditRecords(request);
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::VerifyAuditLogResponse> Registry::VerifyAuditLog(
    const v1::VerifyAuditLogRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::VerifyAuditLogResponse> response =
      DoVerifyAuditLog(request);
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::ListAuditRecordsResponse> Registry::DoListAuditRecords(
    const v1::ListAuditRecordsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: ", request.page_size(), " out of range 0-", kMaxPageSize));
  }
  AuditQuery query;
  query.page_size =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  if (absl::Status s = CheckPageTokenSize(request.page_token()); !s.ok()) {
    return s;
  }
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &query.after_sequence) ||
       query.after_sequence <= 0)) {
    return absl::InvalidArgumentError(
        "page_token: not a token this server returned");
  }
  if (request.principal().size() > kMaxPrincipalFilterBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "principal: at most ", kMaxPrincipalFilterBytes, " bytes"));
  }
  query.principal = request.principal();
  // Checked before any arithmetic: seconds far out of range overflow the
  // microseconds the store compares.
  if (request.has_start_time()) {
    if (absl::Status s = ValidateTimestamp("start_time", request.start_time());
        !s.ok()) {
      return s;
    }
    query.start_time_us = Micros(request.start_time());
  }
  if (request.has_end_time()) {
    if (absl::Status s = ValidateTimestamp("end_time", request.end_time());
        !s.ok()) {
      return s;
    }
    query.end_time_us = Micros(request.end_time());
    if (query.end_time_us <= query.start_time_us) {
      return absl::InvalidArgumentError("end_time: must be after start_time");
    }
    // The store reads end_time_us 0 as "no upper bound"; no record was
    // written before 1970.
    if (query.end_time_us <= 0) return v1::ListAuditRecordsResponse();
  }
  absl::StatusOr<AuditPage> page = store_->ListAudit(query);
  if (!page.ok()) return page.status();
  v1::ListAuditRecordsResponse response;
  size_t page_bytes = 0;
  for (const AuditRecord& record : page->records) {
    v1::AuditRecord converted;
    v1::AuditRecord* out = &converted;
    out->set_sequence(record.sequence);
    out->mutable_time()->set_seconds(record.event.time_us / 1000000);
    out->mutable_time()->set_nanos(
        static_cast<int32_t>(record.event.time_us % 1000000) * 1000);
    out->set_principal(record.event.principal);
    out->set_role(record.event.role);
    out->set_method(record.event.method);
    out->set_subject_id(record.event.subject_id);
    out->set_national_id(record.event.national_id);
    out->set_request_id(record.event.request_id);
    out->set_outcome_code(record.event.outcome);
    out->set_outcome(absl::StatusCodeToString(
        static_cast<absl::StatusCode>(record.event.outcome)));
    for (const std::string& id : record.event.subject_ids) {
      out->add_subject_ids(id);
    }
    out->set_prev_hash(HashHex(record.prev_hash));
    out->set_hash(HashHex(record.hash));
    out->set_purpose(record.event.purpose);
    out->set_decision(record.event.decision);
    for (const std::string& name : record.event.disclosed) {
      out->add_disclosed_attributes(name);
    }
    const size_t bytes = PageEntryBytes(converted);
    if (!FitsInPage(page_bytes, response.records_size(), bytes)) {
      // Ends early: the next page starts at this record.
      response.set_next_page_token(absl::StrCat(
          response.records(response.records_size() - 1).sequence()));
      return response;
    }
    page_bytes += bytes;
    *response.add_records() = std::move(converted);
  }
  if (page->last_sequence > 0) {
    response.set_next_page_token(absl::StrCat(page->last_sequence));
  }
  return response;
}

absl::StatusOr<v1::VerifyAuditLogResponse> Registry::DoVerifyAuditLog(
    const v1::VerifyAuditLogRequest& request) {
  AuditAnchor anchor;
  if (request.anchor_sequence() < 0) {
    return absl::InvalidArgumentError("anchor_sequence: must not be negative");
  }
  if (request.anchor_sequence() > 0 || !request.anchor_hash().empty()) {
    if (request.anchor_sequence() == 0) {
      return absl::InvalidArgumentError(
          "anchor_sequence: required with anchor_hash");
    }
    absl::StatusOr<std::string> hash =
        HashFromHex("anchor_hash", request.anchor_hash());
    if (!hash.ok()) return hash.status();
    anchor.sequence = request.anchor_sequence();
    anchor.hash = *std::move(hash);
  }
  absl::StatusOr<AuditVerification> verified =
      VerifyAuditDatabase(store_->path(), anchor);
  if (!verified.ok()) return verified.status();
  v1::VerifyAuditLogResponse response;
  response.set_intact(verified->intact);
  response.set_records_checked(verified->records_checked);
  response.set_head_sequence(verified->head_sequence);
  response.set_head_hash(HashHex(verified->head_hash));
  response.set_first_broken_sequence(verified->first_broken_sequence);
  response.set_reason(verified->reason);
  return response;
}

// Deduplication and adjudication.

matcher::IdentifyOptions Registry::DedupSearch() const {
  matcher::IdentifyOptions search;
  // One more: the person itself may be found (ReplaceTemplates).
  search.max_candidates = options_.dedup.max_candidates + 1;
  if (options_.dedup.threshold > 0) search.min_score = options_.dedup.threshold;
  return search;
}

absl::StatusOr<std::array<std::vector<std::vector<matcher::Match>>, 3>>
Registry::BatchDedupMatches(
    absl::Span<const std::string> subject_ids,
    absl::Span<const std::vector<matcher::Probe>> probe_sets) {
  const matcher::IdentifyOptions search = DedupSearch();
  std::array<std::vector<std::vector<matcher::Match>>, 3> out;
  // One scan of each gallery for the whole batch (the 1:N cost).
  size_t g = 0;
  for (const matcher::Matcher* gallery : {matcher_.get(), pending_.get()}) {
    absl::StatusOr<std::vector<std::vector<matcher::Match>>> found =
        gallery->IdentifyBatch(probe_sets, search);
    if (!found.ok()) return found.status();
    out[g++] = *std::move(found);
  }
  // The earlier items, by one all-pairs pass scored as the main galleries
  // score (their fusion and impostor statistics; no gallery is touched).
  absl::StatusOr<std::vector<std::vector<matcher::Match>>> earlier =
      matcher_->IdentifyAgainstEarlier(subject_ids, probe_sets, search);
  if (!earlier.ok()) return earlier.status();
  out[2] = *std::move(earlier);
  return out;
}

absl::StatusOr<std::vector<v1::Candidate>> Registry::FindDuplicates(
    const v1::Person& person, absl::Span<const v1::Template> templates,
    bool demographic, const BatchSoFar* batch) {
  std::vector<v1::Candidate> found;
  absl::flat_hash_map<std::string, size_t> index;
  const auto candidate = [&](const std::string& subject_id) -> v1::Candidate& {
    const auto [it, inserted] = index.emplace(subject_id, found.size());
    if (inserted) found.emplace_back().set_subject_id(subject_id);
    return found[it->second];
  };
  const DedupOptions& dedup = options_.dedup;
  if (!templates.empty()) {
    // Each gallery's matches: the batch's, or searched here.
    std::vector<std::vector<matcher::Match>> searched;
    std::vector<absl::Span<const matcher::Match>> by_gallery;
    if (batch != nullptr) {
      by_gallery = batch->matches;
    } else {
      const std::vector<matcher::Probe> probes = ToProbes(templates);
      for (const matcher::Matcher* gallery : {matcher_.get(), pending_.get()}) {
        absl::StatusOr<std::vector<matcher::Match>> matches =
            gallery->Identify(probes, DedupSearch());
        if (!matches.ok()) return matches.status();
        searched.push_back(*std::move(matches));
      }
      by_gallery.assign(searched.begin(), searched.end());
    }
    for (absl::Span<const matcher::Match> matches : by_gallery) {
      for (const matcher::Match& match : matches) {
        if (match.subject_id == person.subject_id()) continue;
        const float threshold =
            dedup.threshold > 0 ? dedup.threshold : match.threshold;
        if (match.score < threshold) continue;
        v1::Candidate& c = candidate(match.subject_id);
        c.set_score(match.score);
        c.clear_modality_scores();
        FillModalityScores(match.modality_scores, c.mutable_modality_scores());
        c.add_reasons(v1::BIOMETRIC);
      }
    }
  }
  if (demographic && dedup.demographic_check) {
    absl::StatusOr<std::vector<v1::Person>> stored =
        store_->DemographicCandidates(person);
    if (!stored.ok()) return stored.status();
    std::vector<const v1::Person*> others;
    for (const v1::Person& p : *stored) others.push_back(&p);
    if (batch != nullptr) {
      others.insert(others.end(), batch->persons.begin(), batch->persons.end());
    }
    for (const v1::Person* other : others) {
      if (other->subject_id() == person.subject_id()) continue;
      if (other->national_id() == person.national_id() &&
          other->issuing_country() != person.issuing_country()) {
        candidate(other->subject_id())
            .add_reasons(v1::NATIONAL_ID_OTHER_COUNTRY);
      }
      if (SameDate(*other, person) && NamesMatch(person, *other)) {
        candidate(other->subject_id()).add_reasons(v1::NAME_AND_DATE_OF_BIRTH);
      }
    }
  }
  // A pair an adjudicator decided DISTINCT is not raised again (the subject
  // re-captured, or deduplicated against a new look-alike): only the other
  // candidates count.
  if (!found.empty()) {
    absl::StatusOr<std::vector<std::string>> distinct =
        store_->AdjudicatedDistinct(person.subject_id());
    if (!distinct.ok()) return distinct.status();
    if (!distinct->empty()) {
      const std::set<std::string> drop(distinct->begin(), distinct->end());
      found.erase(std::remove_if(found.begin(), found.end(),
                                 [&drop](const v1::Candidate& c) {
                                   return drop.count(c.subject_id()) > 0;
                                 }),
                  found.end());
    }
  }
  // Biometric candidates by score; demographic-only ones (score 0) after.
  std::stable_sort(found.begin(), found.end(),
                   [](const v1::Candidate& a, const v1::Candidate& b) {
                     const bool a_bio = a.modality_scores_size() > 0;
                     const bool b_bio = b.modality_scores_size() > 0;
                     if (a_bio != b_bio) return a_bio;
                     return a.score() > b.score();
                   });
  if (found.size() > dedup.max_candidates) found.resize(dedup.max_candidates);
  uint32_t rank = 0;
  for (v1::Candidate& c : found) c.set_rank(++rank);
  return found;
}

absl::Status Registry::SyncGalleries(const std::string& subject_id) {
  pending_->RemoveSubject(subject_id);
  absl::StatusOr<v1::Person> person = store_->GetPerson(subject_id);
  if (absl::IsNotFound(person.status())) {
    matcher_->RemoveSubject(subject_id);
    return absl::OkStatus();
  }
  if (!person.ok()) return person.status();
  if (person->state() == v1::ACTIVE) {
    const std::vector<std::string> ids = {subject_id};
    absl::StatusOr<std::vector<TemplateRecord>> templates =
        store_->ActiveTemplatesOf(ids);
    if (!templates.ok()) return templates.status();
    return matcher_->Replace(subject_id, ToAdds(*templates));
  }
  matcher_->RemoveSubject(subject_id);
  if (person->state() == v1::PENDING_ADJUDICATION) {
    absl::StatusOr<std::vector<TemplateRecord>> pending =
        store_->PendingTemplates();
    if (!pending.ok()) return pending.status();
    std::vector<TemplateRecord> own;
    for (TemplateRecord& r : *pending) {
      if (r.subject_id == subject_id) own.push_back(std::move(r));
    }
    if (!own.empty()) return pending_->Add(subject_id, ToAdds(own));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ListCasesResponse> Registry::DoListCases(
    const v1::ListCasesRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: ", request.page_size(), " out of range 0-", kMaxPageSize));
  }
  if (absl::Status s = CheckPageTokenSize(request.page_token()); !s.ok()) {
    return s;
  }
  int64_t after = 0;
  if (!request.page_token().empty()) {
    absl::string_view token = request.page_token();
    const absl::string_view prefix =
        request.include_decided() ? "all:" : "open:";
    if (!absl::ConsumePrefix(&token, prefix) ||
        !absl::SimpleAtoi(token, &after) || after <= 0) {
      return absl::InvalidArgumentError(
          "page_token: not a token of ListCases with this include_decided");
    }
  }
  absl::StatusOr<CasePage> page = store_->ListCases(
      request.include_decided(),
      request.page_size() == 0 ? kDefaultPageSize : request.page_size(), after);
  if (!page.ok()) return page.status();
  v1::ListCasesResponse response;
  size_t page_bytes = 0;
  for (size_t i = 0; i < page->cases.size(); ++i) {
    const size_t bytes = PageEntryBytes(page->cases[i]);
    if (!FitsInPage(page_bytes, i, bytes)) {
      // Ends early: the next page starts at this case.
      response.set_next_page_token(
          CasePageToken(request.include_decided(), page->sequences[i - 1]));
      return response;
    }
    page_bytes += bytes;
    *response.add_cases() = std::move(page->cases[i]);
  }
  if (page->last_sequence != 0) {
    response.set_next_page_token(
        CasePageToken(request.include_decided(), page->last_sequence));
  }
  return response;
}

absl::StatusOr<v1::Case> Registry::DoDecideCase(
    const v1::DecideCaseRequest& request, AuditWrite* audit) {
  if (absl::Status s = CheckRequestId(request.request_id()); !s.ok()) return s;
  if (request.case_id().empty()) {
    return absl::InvalidArgumentError("case_id: required");
  }
  if (absl::Status s = ValidateId("case_id", request.case_id()); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateId("duplicate_of", request.duplicate_of());
      !s.ok()) {
    return s;
  }
  if (request.decision() == v1::WITHDRAWN) {
    return absl::InvalidArgumentError(
        "decision: WITHDRAWN is set by the registry when the person is "
        "revoked or erased, never by DecideCase; one of DISTINCT, DUPLICATE, "
        "FRAUD");
  }
  if (request.decision() != v1::DISTINCT &&
      request.decision() != v1::DUPLICATE && request.decision() != v1::FRAUD) {
    return absl::InvalidArgumentError(
        "decision: required, one of DISTINCT, DUPLICATE, FRAUD");
  }
  if (request.comment().empty()) {
    return absl::InvalidArgumentError(
        "comment: required (why the adjudicator decided so)");
  }
  if (request.comment().size() > kMaxCommentBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("comment: at most ", kMaxCommentBytes, " bytes"));
  }
  if (absl::Status s =
          ValidateFreeText("comment", request.comment(), kMaxCommentBytes);
      !s.ok()) {
    return s;
  }
  if (request.decision() != v1::DUPLICATE &&
      (request.merge_templates() || !request.duplicate_of().empty())) {
    return absl::InvalidArgumentError(
        request.merge_templates()
            ? "merge_templates: only with decision DUPLICATE"
            : "duplicate_of: only with decision DUPLICATE");
  }
  CaseDecision decision;
  decision.case_id = request.case_id();
  decision.decision = request.decision();
  decision.adjudicator = audit->event.principal;
  decision.comment = request.comment();
  decision.request_id = request.request_id();
  decision.fingerprint = Fingerprint(request);
  decision.duplicate_of = request.duplicate_of();
  decision.merge_templates = request.merge_templates();
  // A merge may not give the existing person more templates than Enroll
  // would, nor two of one finger or eye.
  decision.check_merged =
      [limits = options_.limits](absl::Span<const v1::Template> merged) {
        const absl::Status s = ValidateTemplateSet("templates", merged, limits);
        if (s.ok()) return s;
        return absl::InvalidArgumentError(absl::StrCat(
            "merge_templates: the templates duplicate_of would hold (its own, "
            "then the merged ones) break a limit (",
            s.message(), "); decide without merge_templates"));
      };
  audit->event.decision = v1::Decision_Name(request.decision());

  WriteLock lock(this, audit);
  absl::StatusOr<DecideResult> result = store_->DecideCase(decision, audit);
  if (!result.ok()) return result.status();
  if (!result->replayed) {
    for (const std::string& subject_id : result->changed_subjects) {
      if (absl::Status s = SyncGalleries(subject_id); !s.ok()) {
        GalleriesDiverged();
        return s;
      }
    }
  }
  return std::move(result->decided);
}

absl::StatusOr<v1::ListCasesResponse> Registry::ListCases(
    const v1::ListCasesRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::ListCasesResponse> response = DoListCases(request);
  if (response.ok()) {
    for (const v1::Case& c : response->cases()) {
      audit.event.subject_ids.push_back(c.person().subject_id());
    }
  }
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::Case> Registry::GetCase(const v1::GetCaseRequest& request,
                                           const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  const absl::Status checked =
      request.case_id().empty()
          ? absl::InvalidArgumentError("case_id: required")
          : ValidateId("case_id", request.case_id());
  absl::StatusOr<v1::Case> response = checked.ok()
                                          ? store_->GetCase(request.case_id())
                                          : absl::StatusOr<v1::Case>(checked);
  if (response.ok()) {
    audit.event.subject_id = response->person().subject_id();
    for (const v1::CaseCandidate& c : response->candidates()) {
      audit.event.subject_ids.push_back(c.candidate().subject_id());
    }
  }
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::Case> Registry::DecideCase(
    const v1::DecideCaseRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.request_id = Clip(request.request_id());
  absl::StatusOr<v1::Case> response = DoDecideCase(request, &audit);
  return Audited(std::move(response), audit);
}

// PartnerService and receipt signing keys.

namespace {

// The UTC day a daily quota counts in.
std::string UtcDay(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d", time, absl::UTCTimeZone());
}

void SetTimestamp(int64_t micros, google::protobuf::Timestamp* out) {
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

v1::SigningKey PublicKeyOf(const SigningKeyRecord& key) {
  v1::SigningKey out;
  out.set_key_id(key.key_id);
  out.set_algorithm("Ed25519");
  out.set_public_key(key.public_key);
  SetTimestamp(key.valid_from_us, out.mutable_valid_from());
  if (key.valid_until_us != 0) {
    SetTimestamp(key.valid_until_us, out.mutable_valid_until());
  }
  return out;
}

absl::StatusOr<SigningKeyRecord> NewSigningKey(absl::Time now) {
  absl::StatusOr<Ed25519KeyPair> pair = GenerateEd25519Key();
  if (!pair.ok()) return pair.status();
  SigningKeyRecord key;
  key.key_id = SigningKeyId(pair->public_key);
  key.public_key = pair->public_key;
  key.private_key = pair->private_key;
  key.valid_from_us = absl::ToUnixMicros(now);
  return key;
}

std::string DecisionName(v1::VerifyCivilStatusResponse::Decision decision) {
  return v1::VerifyCivilStatusResponse::Decision_Name(decision);
}

}  // namespace

absl::Status Registry::LoadSigningKey() {
  absl::StatusOr<std::string> id = store_->StoreId();
  if (!id.ok()) return id.status();
  issuer_ = *std::move(id);
  absl::MutexLock lock(&signing_mu_);
  absl::StatusOr<std::vector<SigningKeyRecord>> keys = store_->SigningKeys();
  if (!keys.ok()) return keys.status();
  for (SigningKeyRecord& key : *keys) {
    if (key.valid_until_us == 0) {
      signing_key_ = std::move(key);
      return absl::OkStatus();
    }
  }
  // First start (or a store from before receipts): make the first key.
  absl::StatusOr<SigningKeyRecord> key = NewSigningKey(options_.clock());
  if (!key.ok()) return key.status();
  if (absl::Status s = store_->AddSigningKey(*key); !s.ok()) return s;
  signing_key_ = *std::move(key);
  return absl::OkStatus();
}

absl::Status Registry::CheckPartner(const v1::VerifyCivilStatusRequest& request,
                                    const PartnerPolicy& policy) const {
  if (absl::Status s = CheckPartnerRequest(request, policy, options_.clock());
      !s.ok()) {
    return s;
  }
  if (request.probes_size() > 0)
    return CheckProbes(request.probes(), *matcher_);
  return absl::OkStatus();
}

absl::StatusOr<v1::VerifyCivilStatusResponse> Registry::AnswerPartner(
    const v1::VerifyCivilStatusRequest& request, const PartnerPolicy& policy,
    const std::string& principal, AuditEvent* event) {
  absl::StatusOr<v1::Person> found =
      store_->FindPerson(request.national_id(), request.issuing_country());
  if (!found.ok() && !absl::IsNotFound(found.status())) return found.status();
  const v1::Person* person = found.ok() ? &*found : nullptr;
  std::optional<v1::BiometricResult> biometric;
  if (person != nullptr && request.probes_size() > 0 &&
      AnswerableState(person->state())) {
    v1::BiometricResult result;
    result.set_decision(v1::BiometricResult::INCONCLUSIVE);
    // Templates of persons who are not ACTIVE are not in the galleries.
    if (person->state() == v1::ACTIVE) {
      absl::StatusOr<matcher::Match> match =
          matcher_->Verify(person->subject_id(), ToProbes(request.probes()));
      if (match.ok()) {
        result.set_score(match->score);
        result.set_threshold(match->threshold);
        result.set_decision(match->score >= match->threshold
                                ? v1::BiometricResult::MATCH
                                : v1::BiometricResult::NO_MATCH);
      } else if (!absl::IsFailedPrecondition(match.status()) &&
                 !absl::IsNotFound(match.status())) {
        return match.status();
      }
    }
    biometric = result;
  }
  v1::VerifyCivilStatusResponse response =
      EvaluateClaim(request, policy, person, biometric);
  if (person != nullptr) event->subject_id = person->subject_id();
  event->decision = DecisionName(response.decision());
  event->disclosed.assign(response.disclosed().attributes().begin(),
                          response.disclosed().attributes().end());

  v1::ReceiptPayload payload;
  payload.set_request_digest(RequestDigest(request));
  payload.set_request_id(request.request_id());
  payload.set_principal(principal);
  payload.set_purpose(request.purpose());
  payload.set_purpose_text(request.purpose_text());
  payload.set_national_id(request.national_id());
  payload.set_issuing_country(request.issuing_country());
  payload.set_decision(response.decision());
  *payload.mutable_checks() = response.checks();
  if (response.has_biometric()) {
    *payload.mutable_biometric() = response.biometric();
  }
  if (response.has_disclosed()) {
    *payload.mutable_disclosed() = response.disclosed();
  }
  payload.set_issuer(issuer_);
  absl::ReaderMutexLock lock(&signing_mu_);
  // Never dated before the key's validity, and remembered, so that a
  // rotation starts the next key after every receipt of this one.
  const int64_t now_us = std::max(absl::ToUnixMicros(options_.clock()),
                                  signing_key_.valid_from_us);
  int64_t last = last_receipt_us_.load();
  while (last < now_us &&
         !last_receipt_us_.compare_exchange_weak(last, now_us)) {
  }
  SetTimestamp(now_us, payload.mutable_time());
  absl::StatusOr<v1::Receipt> receipt = SignReceipt(
      std::move(payload), signing_key_.key_id, signing_key_.private_key);
  if (!receipt.ok()) return receipt.status();
  *response.mutable_receipt() = *std::move(receipt);
  return response;
}

absl::StatusOr<v1::VerifyCivilStatusResponse> Registry::VerifyCivilStatus(
    const v1::VerifyCivilStatusRequest& request, const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  audit.event.request_id = Clip(request.request_id());
  audit.event.national_id =
      NationalIdResource(request.issuing_country(), request.national_id());
  audit.event.purpose = AuditPurpose(request);
  absl::StatusOr<v1::VerifyCivilStatusResponse> response =
      [&]() -> absl::StatusOr<v1::VerifyCivilStatusResponse> {
    absl::StatusOr<const PartnerPolicy*> policy =
        options_.partner_policies.Find(actor.principal);
    if (!policy.ok()) return policy.status();
    if (absl::Status s = CheckPartner(request, **policy); !s.ok()) return s;
    absl::StatusOr<int64_t> used = store_->ChargeQuota(
        actor.principal, UtcDay(options_.clock()), 1, (*policy)->daily_quota);
    if (!used.ok()) return used.status();
    return AnswerPartner(request, **policy, actor.principal, &audit.event);
  }();
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::VerifyCivilStatusBatchResponse>
Registry::VerifyCivilStatusBatch(
    const v1::VerifyCivilStatusBatchRequest& request, const AuditActor& actor) {
  // Refusals of the whole call: one record.
  auto refuse = [&](const absl::Status& status) -> absl::Status {
    AuditWrite audit = NewAudit(actor);
    return Audit(status, audit);
  };
  absl::StatusOr<const PartnerPolicy*> policy =
      options_.partner_policies.Find(actor.principal);
  if (!policy.ok()) return refuse(policy.status());
  if (request.requests().empty()) {
    return refuse(absl::InvalidArgumentError(
        "requests: at least one request is required"));
  }
  if (static_cast<size_t>(request.requests_size()) > kMaxPartnerBatch) {
    return refuse(absl::InvalidArgumentError(
        absl::StrCat("requests: at most ", kMaxPartnerBatch, " per call, not ",
                     request.requests_size())));
  }
  std::vector<absl::Status> checked;
  int64_t answerable = 0;
  for (const v1::VerifyCivilStatusRequest& item : request.requests()) {
    checked.push_back(CheckPartner(item, **policy));
    if (checked.back().ok()) ++answerable;
  }
  if (answerable > 0) {
    absl::StatusOr<int64_t> used =
        store_->ChargeQuota(actor.principal, UtcDay(options_.clock()),
                            answerable, (*policy)->daily_quota);
    if (!used.ok()) return refuse(used.status());
  }
  v1::VerifyCivilStatusBatchResponse response;
  for (int i = 0; i < request.requests_size(); ++i) {
    const v1::VerifyCivilStatusRequest& item = request.requests(i);
    AuditWrite audit = NewAudit(actor);
    audit.event.request_id = Clip(item.request_id());
    audit.event.national_id =
        NationalIdResource(item.issuing_country(), item.national_id());
    audit.event.purpose = AuditPurpose(item);
    absl::StatusOr<v1::VerifyCivilStatusResponse> answer =
        checked[i].ok()
            ? AnswerPartner(item, **policy, actor.principal, &audit.event)
            : absl::StatusOr<v1::VerifyCivilStatusResponse>(checked[i]);
    const absl::Status audited = Audit(answer.status(), audit);
    // A record that cannot be written fails the whole call: no answer
    // goes out unrecorded.
    if (!audited.ok() && answer.ok()) return audited;
    v1::VerifyCivilStatusBatchItem* out = response.add_results();
    if (answer.ok()) {
      *out->mutable_response() = *std::move(answer);
    } else {
      out->set_error_code(static_cast<int32_t>(answer.status().code()));
      out->set_error_message(
          absl::StrCat("requests[", i, "].", answer.status().message()));
    }
  }
  return response;
}

absl::StatusOr<v1::GetSigningKeysResponse> Registry::GetSigningKeys(
    const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::GetSigningKeysResponse> response =
      [&]() -> absl::StatusOr<v1::GetSigningKeysResponse> {
    absl::StatusOr<std::vector<SigningKeyRecord>> keys = store_->SigningKeys();
    if (!keys.ok()) return keys.status();
    v1::GetSigningKeysResponse out;
    for (const SigningKeyRecord& key : *keys) {
      *out.add_keys() = PublicKeyOf(key);
      if (key.valid_until_us == 0) out.set_current_key_id(key.key_id);
    }
    return out;
  }();
  return Audited(std::move(response), audit);
}

absl::StatusOr<v1::RotateSigningKeyResponse> Registry::RotateSigningKey(
    const AuditActor& actor) {
  AuditWrite audit = NewAudit(actor);
  absl::StatusOr<v1::RotateSigningKeyResponse> response =
      [&]() -> absl::StatusOr<v1::RotateSigningKeyResponse> {
    absl::MutexLock lock(&signing_mu_);
    absl::StatusOr<SigningKeyRecord> key = NewSigningKey(options_.clock());
    if (!key.ok()) return key.status();
    // No receipt is being signed (they hold the lock shared): the old
    // key's validity ends after every receipt it signed, and after it
    // began.
    key->valid_from_us =
        std::max({key->valid_from_us, last_receipt_us_.load() + 1,
                  signing_key_.valid_from_us + 1});
    if (absl::Status s = store_->AddSigningKey(*key); !s.ok()) return s;
    v1::RotateSigningKeyResponse out;
    out.set_previous_key_id(signing_key_.key_id);
    signing_key_ = *std::move(key);
    *out.mutable_key() = PublicKeyOf(signing_key_);
    return out;
  }();
  return Audited(std::move(response), audit);
}

}  // namespace hawiya::enroll
