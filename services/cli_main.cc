// hawiya: command-line client of the Hawiya v1 API.
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "enroll/audit.h"
#include "enroll/backup.h"
#include "enroll/crypto.h"
#include "enroll/receipts.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hawiya/config/config.pb.h"
#include "hawiya/v1/adjudication.grpc.pb.h"
#include "hawiya/v1/admin.grpc.pb.h"
#include "hawiya/v1/audit.grpc.pb.h"
#include "hawiya/v1/enrollment.grpc.pb.h"
#include "hawiya/v1/match.grpc.pb.h"
#include "hawiya/v1/partner.grpc.pb.h"
#include "matcher/eval.h"
#include "matcher/gallery.h"
#include "matcher/matcher.h"
#include "matcher/synthetic.h"
#include "services/config.h"
#include "services/enroll_json.h"
#include "services/flag_check.h"
#include "services/help.h"
#include "services/pki.h"
#include "services/roles.h"
#include "services/synthetic_requests.h"
#include "services/version.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(bool, insecure, false,
          "Plaintext, to a server started with --insecure (loopback only).");
ABSL_FLAG(std::string, pki_dir, "./hawiya-data/pki",
          "Development PKI (the server's DATA_DIR/pki, or `hawiya dev-pki "
          "--out=DIR`) that --cert, --key and --ca default to.");
ABSL_FLAG(std::string, role, "",
          "Which role's development certificate to present (PKI_DIR/ROLE.pem "
          "and .key): registrar, border, partner, adjudicator, auditor or "
          "admin. Default: the command's own role (enroll, get, list, "
          "delete, import: registrar; verify, identify: border; stats, "
          "health: admin).");
ABSL_FLAG(std::string, cert, "",
          "PEM client certificate (mutual TLS), with --key; default "
          "PKI_DIR/ROLE.pem.");
ABSL_FLAG(std::string, key, "", "PEM key of --cert; default PKI_DIR/ROLE.key.");
ABSL_FLAG(std::string, ca, "",
          "PEM CA certificate(s) the server's certificate must chain to; "
          "default PKI_DIR/ca.pem.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, if not the --server "
          "host.");
ABSL_FLAG(std::string, out, "",
          "dev-pki: the folder to write (must not exist); admin gen-key: the "
          "key file to create (mode 0600; never overwritten).");
ABSL_FLAG(std::string, new_key_file, "",
          "admin rotate-key: rotate the key-encryption key to this key file "
          "instead of the data key (an absolute path on the server host).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Deadline per call.");
ABSL_FLAG(std::string, person, "", "enroll: person file (proto3 JSON).");
ABSL_FLAG(std::string, templates, "",
          "enroll: template file (JSON {\"templates\": [...]}, e.g. from "
          "`hawiya synth`).");
ABSL_FLAG(std::string, probes, "",
          "verify/identify: probe template file (same format).");
ABSL_FLAG(std::string, request_id, "",
          "enroll: idempotency key; a random one if empty. Reuse it to "
          "retry safely.");
ABSL_FLAG(std::string, subject_id, "", "get/verify/delete: subject id.");
ABSL_FLAG(std::string, national_id, "", "get/verify: national id.");
ABSL_FLAG(std::string, country, "",
          "get/verify: issuing country of --national_id (e.g. KWT).");
ABSL_FLAG(uint32_t, max_candidates, 10, "identify: candidates (1-100).");
ABSL_FLAG(double, min_score, -1.0,
          "identify: drop candidates below this score (-1: keep all).");
ABSL_FLAG(std::string, state, "",
          "list: only this state (ACTIVE, REVOKED, ...).");
ABSL_FLAG(std::string, reason, "", "delete: why (required).");
ABSL_FLAG(bool, erase, false, "delete: erase every trace instead of revoking.");
ABSL_FLAG(uint64_t, identity, 0, "synth: identity number.");
ABSL_FLAG(uint64_t, capture, 0,
          "synth: capture number (enroll one capture, probe another).");
ABSL_FLAG(std::string, modality, "FACE",
          "synth, eval: FACE, FINGERPRINT or IRIS.");
ABSL_FLAG(int, dimension, 0,
          "synth, eval (one modality): dimension (0: 512 face, 256 others).");
ABSL_FLAG(uint64_t, seed, 42, "synth: seed of the synthetic population.");
ABSL_FLAG(bool, hard, false, "synth: clustered look-alike population.");
ABSL_FLAG(uint64_t, count, 0, "synth-persons: how many persons to write.");
ABSL_FLAG(uint64_t, start, 0, "synth-persons: number of the first person.");
ABSL_FLAG(std::string, file, "",
          "import: JSON Lines file, one proto3 JSON EnrollRequest per line.");
ABSL_FLAG(int, batch, 1000,
          "import: requests per BatchEnroll call (one transaction), "
          "1-10000.");
ABSL_FLAG(int, in_flight, 2,
          "import: BatchEnroll calls streaming at once, 1-8; they still "
          "commit one after the other, in file order.");
ABSL_FLAG(std::string, state_file, "",
          "import: where the resume position is kept (default "
          "FILE.import-state).");
ABSL_FLAG(std::string, data_dir, "",
          "audit verify: verify DIR/hawiya.db offline (no server, no key); "
          "admin backup: the data folder to copy; admin restore: the new "
          "data folder.");
ABSL_FLAG(std::string, from, "", "admin restore: the backup folder.");
ABSL_FLAG(std::string, case_id, "", "cases get/decide: the case.");
ABSL_FLAG(std::string, decision, "",
          "cases decide: DISTINCT, DUPLICATE or FRAUD.");
ABSL_FLAG(std::string, comment, "", "cases decide: why (required).");
ABSL_FLAG(std::string, duplicate_of, "",
          "cases decide DUPLICATE: the candidate it duplicates (default: the "
          "best).");
ABSL_FLAG(bool, merge_templates, false,
          "cases decide DUPLICATE: add the new templates to that subject.");
ABSL_FLAG(bool, include_decided, false, "cases list: decided cases too.");
ABSL_FLAG(std::string, principal, "", "audit list: only this principal.");
ABSL_FLAG(absl::Time, start_time, absl::InfinitePast(),
          "audit list: only records at or after this time (RFC 3339).");
ABSL_FLAG(absl::Time, end_time, absl::InfiniteFuture(),
          "audit list: only records before this time (RFC 3339).");
ABSL_FLAG(int64_t, anchor_sequence, 0,
          "audit verify: a head sequence written down earlier...");
ABSL_FLAG(std::string, anchor_hash, "",
          "audit verify: ...and its head hash (hex): the log must still "
          "hold that record with that hash.");
ABSL_FLAG(std::string, purpose, "",
          "partner verify: BORDER_CROSSING, RESIDENCE_APPLICATION, "
          "MARRIAGE_REGISTRATION, VISA_APPLICATION or SOCIAL_BENEFITS.");
ABSL_FLAG(std::string, purpose_text, "",
          "partner verify: the case or file reference (required).");
ABSL_FLAG(std::string, name_ar, "",
          "partner verify: claimed Arabic name, parts separated by commas: "
          "GIVEN,FAMILY or GIVEN,FATHER,FAMILY or "
          "GIVEN,FATHER,GRANDFATHER,FAMILY.");
ABSL_FLAG(std::string, name_latin, "",
          "partner verify: claimed Latin name, parts as --name_ar.");
ABSL_FLAG(std::string, date_of_birth, "",
          "partner verify: claimed date of birth, YYYY-MM-DD.");
ABSL_FLAG(std::string, sex, "", "partner verify: claimed sex, FEMALE or MALE.");
ABSL_FLAG(std::string, civil_status, "",
          "partner verify: claimed civil status (SINGLE, MARRIED, DIVORCED, "
          "WIDOWED).");
ABSL_FLAG(std::string, receipt_out, "",
          "partner verify: also write the signed receipt (binary "
          "hawiya.v1.Receipt) to this file.");
ABSL_FLAG(std::string, receipt, "",
          "receipt verify: the receipt file (binary or text-format "
          "hawiya.v1.Receipt).");
ABSL_FLAG(std::string, keys, "",
          "receipt verify: the signing keys (a GetSigningKeysResponse in "
          "text format, as `admin signing-keys --out` writes it, or "
          "binary).");
ABSL_FLAG(bool, generate, false,
          "eval: draw the labelled set from the synthetic model "
          "(docs/API.md).");
ABSL_FLAG(std::string, variant, "easy", "eval --generate: easy or hard.");
ABSL_FLAG(double, noise, 0.8,
          "eval --generate: capture noise s of the model (docs/API.md: 0.8; "
          "larger is harder).");
ABSL_FLAG(uint64_t, identities, 10000, "eval --generate: enrolled identities.");
ABSL_FLAG(uint64_t, mated, 1000,
          "eval --generate: mated probes (genuine comparisons, mated "
          "searches).");
ABSL_FLAG(uint64_t, nonmated, 1000,
          "eval --generate: non-mated probes (identities never enrolled).");
ABSL_FLAG(uint64_t, impostors, 100,
          "eval: impostor comparisons per mated probe.");
ABSL_FLAG(std::string, set, "",
          "eval: a labelled set file (lines 'E|P SUBJECT V1 ... Vd', see "
          "docs/ACCURACY.md) instead of --generate.");
ABSL_FLAG(std::string, out_dir, ".",
          "eval: folder for the CSV files and the PNG / SVG plots.");
ABSL_FLAG(std::string, prefix, "eval", "eval: file name prefix in --out_dir.");
ABSL_FLAG(double, target_fmr, 1e-4,
          "eval: verification FMR target (config accuracy_targets wins).");
ABSL_FLAG(double, target_fpir, 1e-3,
          "eval: identification FPIR target (config accuracy_targets wins).");
ABSL_FLAG(uint32_t, max_rank, 10, "eval: candidate list length of searches.");
ABSL_FLAG(std::string, index, "exact",
          "eval: gallery index kind (exact, exact_sq8, hnsw, auto).");
ABSL_FLAG(std::string, config, "",
          "eval: server config (text format); its accuracy_targets, fusion "
          "and the modalities' dimension, threshold and index kind are "
          "used.");
ABSL_FLAG(std::string, modalities, "",
          "eval: comma-separated modalities to generate and fuse (FACE, "
          "FINGERPRINT, IRIS); empty: --modality.");
ABSL_FLAG(std::string, fusion, "",
          "eval: fusion rule, mean or zscore (empty: the config's, else "
          "mean).");
ABSL_FLAG(double, missing, 0.0,
          "eval --generate: fraction of the probe sets lacking one modality "
          "(needs 2+ modalities).");
ABSL_FLAG(bool, plots, true,
          "eval: write the CSV files and the PNG / SVG plots (gnuplot).");

namespace {

namespace v1 = hawiya::v1;
using google::protobuf::Message;

constexpr char kUsage[] =
    "command-line client of the Hawiya identity service.\n"
    "\n"
    "Usage: hawiya COMMAND [--server=127.0.0.1:50051] [flags]\n"
    "\n"
    "Calls use mutual TLS: the client certificate of the command's role from\n"
    "the development PKI (--pki_dir=./hawiya-data/pki, which hawiya-server\n"
    "writes on first start) unless --cert/--key/--ca say otherwise, or\n"
    "--role picks another role's; --insecure for a plaintext server.\n"
    "\n"
    "Commands:\n"
    "  enroll    --person=P.json [--templates=T.json] [--request_id=ID]\n"
    "  get       --subject_id=S | --national_id=N --country=C\n"
    "  verify    (--subject_id=S | --national_id=N --country=C) "
    "--probes=T.json\n"
    "  identify  --probes=T.json [--max_candidates=10] [--min_score=S]\n"
    "  list      [--state=ACTIVE]\n"
    "  delete    --subject_id=S --reason=TEXT [--erase]\n"
    "  stats     persons by state; per gallery templates, index, threshold\n"
    "            and the impostor statistics zscore fusion uses (source\n"
    "            CONFIGURED, GALLERY or MODEL)\n"
    "  health\n"
    "  admin gen-key --out=FILE\n"
    "            writes a new key-encryption key (32 random bytes, mode 0600)\n"
    "            for the server's key_file; local, no server involved\n"
    "  admin backup --data_dir=DIR --out=NEWDIR\n"
    "            copies DIR's store (one consistent read, beside a running\n"
    "            server, on the server's host) into NEWDIR with a manifest:\n"
    "            SHA-256, counts, audit head, key check; never the key\n"
    "  admin restore --from=BACKUP --data_dir=NEWDIR\n"
    "            checks a backup (SHA-256, integrity, audit chain up to its\n"
    "            head) and installs it as NEWDIR's store (NEWDIR new or\n"
    "            empty); serve it with the same key_file\n"
    "  admin rotate-key [--new_key_file=/ABS/PATH]\n"
    "            makes a new data key and re-encrypts every template\n"
    "            under it, online; prints the new key version. With\n"
    "            --new_key_file (a file on the server, from gen-key):\n"
    "            re-wraps the data keys under that key-encryption key\n"
    "            instead; then set key_file in the server's config to it\n"
    "  import    --file=P.jsonl [--batch=1000] [--in_flight=2] "
    "[--state_file=F]\n"
    "            enrolls one proto3 JSON EnrollRequest per line, --batch "
    "lines\n"
    "            per transaction; resumes after the last acknowledged batch\n"
    "            (F, default P.jsonl.import-state, which also records a hash\n"
    "            of the imported lines so another file is never skipped "
    "into);\n"
    "            a line without request_id gets one from its content, so\n"
    "            re-running is safe; progress on stderr; --in_flight calls\n"
    "            stream at once but commit one after the other, in order\n"
    "  synth     --identity=I [--capture=K] [--modality=FACE] [--hard]\n"
    "            writes a synthetic template file (model: docs/API.md)\n"
    "  synth-persons --count=N [--start=0]\n"
    "            writes N synthetic EnrollRequests (JSON Lines) for import\n"
    "  audit list [--principal=P] [--start_time=T] [--end_time=T]\n"
    "            the audit log, oldest first (role auditor; times RFC 3339)\n"
    "  audit verify [--data_dir=DIR] [--anchor_sequence=N "
    "--anchor_hash=H]\n"
    "            walks the audit log's hash chain; with --data_dir offline,\n"
    "            reading DIR/hawiya.db (no server, no key), else through the\n"
    "            server (role auditor). Prints one line: intact with the\n"
    "            head sequence and hash to write down as a later anchor\n"
    "            (exit 0), or the first broken record and why (exit 1)\n"
    "  admin signing-keys [--out=FILE]\n"
    "            the receipt signing public keys (any role); --out also\n"
    "            saves them (text format) for `receipt verify`\n"
    "  admin rotate-signing-key\n"
    "            makes a new receipt signing key current; the old one stays\n"
    "            published, so its receipts keep verifying\n"
    "  partner verify --national_id=N --country=C --purpose=P\n"
    "            --purpose_text=TEXT [--request_id=ID] [--name_ar=G,F]\n"
    "            [--name_latin=G,F] [--date_of_birth=YYYY-MM-DD] [--sex=S]\n"
    "            [--civil_status=S] [--probes=T.json] [--receipt_out=FILE]\n"
    "            cross-border civil-status check (role partner); prints the\n"
    "            answer and its receipt; exit 0 MATCH, 1 any other decision\n"
    "  cases list [--include_decided]\n"
    "            possible-duplicate cases raised at enrollment, oldest first\n"
    "            (role adjudicator)\n"
    "  cases get --case_id=C\n"
    "            the new person, each candidate's scores, reasons and record\n"
    "  cases decide --case_id=C --decision=DISTINCT|DUPLICATE|FRAUD\n"
    "            --comment=TEXT [--duplicate_of=S] [--merge_templates]\n"
    "            [--request_id=ID]  a final decision (FAILED_PRECONDITION,\n"
    "            exit 19, if the case is already decided)\n"
    "  receipt verify --receipt=FILE --keys=FILE\n"
    "            checks a receipt's signature offline against saved signing\n"
    "            keys and prints its payload; exit 0 valid, 1 not\n"
    "  eval      (--generate [--variant=easy|hard] [--identities=N]\n"
    "            [--mated=M] [--nonmated=K] [--seed=S] [--noise=0.8]\n"
    "            [--modalities=FACE,FINGERPRINT,IRIS] [--missing=0]\n"
    "            | --set=FILE)\n"
    "            [--modality=FACE] [--fusion=mean|zscore] [--impostors=100]\n"
    "            [--max_rank=10] [--index=exact] [--config=F]\n"
    "            [--target_fmr=1e-4] [--target_fpir=1e-3] [--out_dir=.]\n"
    "            [--prefix=eval]\n"
    "            measures accuracy locally through the real matcher (no\n"
    "            server) on the fused score: a probe is all of a subject's\n"
    "            probe templates; FMR/FNMR at thresholds, FPIR/FNIR at ranks,\n"
    "            each modality beside the fusion, the thresholds meeting the\n"
    "            targets and config lines to paste (zscore: fused_threshold\n"
    "            and impostor_stats); writes CSVs and DET (a curve per\n"
    "            modality and the fused one) / FNIR-vs-FPIR plots (PNG, SVG;\n"
    "            needs gnuplot). See docs/ACCURACY.md\n"
    "  dev-pki   --out=DIR\n"
    "            writes a development PKI (ca.pem, server.pem/.key, and\n"
    "            ROLE.pem/.key per role, URI SAN hawiya://dev/ROLE) into DIR,\n"
    "            which must not exist; never for production\n"
    "\n"
    "Responses are printed as proto3 JSON on stdout.\n"
    "Exit codes: 0 success (verify: match; identify: a candidate at or above\n"
    "the threshold); 1 verify no match / identify no hit / audit verify\n"
    "broken chain; 2 usage error;\n"
    "3 unreadable or invalid input file (import: names FILE:LINE; also a\n"
    "certificate or key file); 10+N the\n"
    "server answered gRPC status code N (13 INVALID_ARGUMENT, 15 NOT_FOUND,\n"
    "16 ALREADY_EXISTS, 19 FAILED_PRECONDITION, 20 ABORTED, 24 UNAVAILABLE;\n"
    "import: names the FILE:LINE of the failed request or batch).";

constexpr int kExitNegative = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInput = 3;
constexpr int kExitRpcBase = 10;

// --- Usage errors -----------------------------------------------------------
// Every usage error is one line on stderr ending in a pointer to the
// command's help, and exit code 2. Abseil's parser would exit 1 (the code of
// a negative answer) on an unknown flag or a bad value, so FlagProblem finds
// those before absl::ParseCommandLine runs.

// The commands that take a subcommand, and their subcommands.
const std::map<std::string, std::string>& CommandGroups() {
  static const auto* groups = new std::map<std::string, std::string>{
      {"admin",
       "(gen-key, backup, restore, rotate-key, signing-keys, "
       "rotate-signing-key)"},
      {"audit", "(list, verify)"},
      {"partner", "(verify)"},
      {"receipt", "(verify)"},
      {"cases", "(list, get, decide)"}};
  return *groups;
}

// The command a usage error's pointer names ("audit verify"); empty before
// one is known.
std::string& UsageCommand() {
  static auto* command = new std::string();
  return *command;
}

// The command named by the positional arguments `words` ("get", "audit
// verify"); empty if none.
std::string CommandOf(const std::vector<std::string>& words) {
  if (words.empty()) return "";
  if (CommandGroups().count(words[0]) > 0 && words.size() >= 2) {
    return absl::StrCat(words[0], " ", words[1]);
  }
  return words[0];
}

int Usage(const std::string& problem) {
  const std::string help =
      UsageCommand().empty()
          ? "hawiya --help"
          : absl::StrCat("hawiya ", UsageCommand(), " --help");
  std::fprintf(stderr, "hawiya: %s (see '%s')\n", problem.c_str(),
               help.c_str());
  return kExitUsage;
}

// The first usage error of argv, or empty; sets UsageCommand() from the
// positional arguments (services/flag_check.h).
std::string FlagProblem(int argc, char** argv) {
  std::vector<std::string> words;
  std::string problem =
      hawiya::services::FlagProblem(argc, argv, "cli_main", &words);
  UsageCommand() = CommandOf(words);
  return problem;
}
// --- end of usage errors ----------------------------------------------------

void Print(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::fputs(json.c_str(), stdout);
}

// Reads a proto3 JSON file into `message`; false (with a message) on error.
bool ReadJson(const std::string& path, Message* message) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "hawiya: cannot read %s\n", path.c_str());
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  const auto status =
      google::protobuf::util::JsonStringToMessage(text.str(), message);
  if (!status.ok()) {
    std::fprintf(stderr, "hawiya: %s: %s\n", path.c_str(),
                 std::string(status.message()).c_str());
    return false;
  }
  return true;
}

int RpcFailed(const grpc::Status& status) {
  std::fprintf(stderr, "hawiya: %s: %s\n",
               absl::StrFormat("code %d", status.error_code()).c_str(),
               status.error_message().c_str());
  return kExitRpcBase + status.error_code();
}

// Prints every page of a List call, 1000 items a page: `call(request,
// &response)` sends one page request. Exit code as the commands return.
template <typename Response, typename Request, typename Call>
int PrintAllPages(Request request, const Call& call) {
  request.set_page_size(1000);
  do {
    Response response;
    grpc::Status status = call(request, &response);
    if (!status.ok()) return RpcFailed(status);
    Print(response);
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return 0;
}

class Client {
 public:
  Client(const std::string& server,
         std::shared_ptr<grpc::ChannelCredentials> credentials,
         const grpc::ChannelArguments& args)
      : channel_(grpc::CreateCustomChannel(server, credentials, args)) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(
        std::chrono::system_clock::now() +
        absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
    return context;
  }
  v1::EnrollmentService::Stub& enrollment() { return *enrollment_; }
  v1::MatchService::Stub& match() { return *match_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  v1::AuditService::Stub& audit() { return *audit_; }
  v1::PartnerService::Stub& partner() { return *partner_; }
  v1::AdjudicationService::Stub& adjudication() { return *adjudication_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EnrollmentService::Stub> enrollment_ =
      v1::EnrollmentService::NewStub(channel_);
  std::unique_ptr<v1::MatchService::Stub> match_ =
      v1::MatchService::NewStub(channel_);
  std::unique_ptr<v1::AdminService::Stub> admin_ =
      v1::AdminService::NewStub(channel_);
  std::unique_ptr<v1::AuditService::Stub> audit_ =
      v1::AuditService::NewStub(channel_);
  std::unique_ptr<v1::AdjudicationService::Stub> adjudication_ =
      v1::AdjudicationService::NewStub(channel_);
  std::unique_ptr<v1::PartnerService::Stub> partner_ =
      v1::PartnerService::NewStub(channel_);
  std::unique_ptr<grpc::health::v1::Health::Stub> health_ =
      grpc::health::v1::Health::NewStub(channel_);
};

std::string RandomRequestId() {
  absl::BitGen gen;
  return absl::StrFormat("cli-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

// Reads --flag's template file into `out`.
bool ReadTemplates(const std::string& path,
                   google::protobuf::RepeatedPtrField<v1::Template>* out) {
  hawiya::config::TemplateFile file;
  if (!ReadJson(path, &file)) return false;
  *out = file.templates();
  return true;
}

int Enroll(Client& client) {
  v1::EnrollRequest request;
  if (absl::GetFlag(FLAGS_person).empty()) return Usage("enroll: --person");
  if (!ReadJson(absl::GetFlag(FLAGS_person), request.mutable_person())) {
    return kExitInput;
  }
  if (!absl::GetFlag(FLAGS_templates).empty() &&
      !ReadTemplates(absl::GetFlag(FLAGS_templates),
                     request.mutable_templates())) {
    return kExitInput;
  }
  request.set_request_id(absl::GetFlag(FLAGS_request_id).empty()
                             ? RandomRequestId()
                             : absl::GetFlag(FLAGS_request_id));
  v1::EnrollResponse response;
  grpc::Status status =
      client.enrollment().Enroll(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  // Enrolled, but not searchable until an adjudicator decides: say so where
  // a person at the counter looks, not only in the JSON.
  if (!response.case_id().empty()) {
    std::fprintf(stderr,
                 "hawiya: held for adjudication (PENDING_ADJUDICATION), case "
                 "%s with %d candidate(s): hawiya cases get --case_id=%s\n",
                 response.case_id().c_str(), response.duplicates_size(),
                 response.case_id().c_str());
  }
  return 0;
}

bool HasClaim() {
  return !absl::GetFlag(FLAGS_subject_id).empty() ||
         !absl::GetFlag(FLAGS_national_id).empty();
}

int Get(Client& client) {
  if (!HasClaim()) return Usage("get: --subject_id or --national_id");
  v1::GetPersonRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_national_id(absl::GetFlag(FLAGS_national_id));
  request.set_issuing_country(absl::GetFlag(FLAGS_country));
  v1::Person response;
  grpc::Status status =
      client.enrollment().GetPerson(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int Verify(Client& client) {
  if (!HasClaim()) return Usage("verify: --subject_id or --national_id");
  if (absl::GetFlag(FLAGS_probes).empty()) return Usage("verify: --probes");
  v1::VerifyRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_national_id(absl::GetFlag(FLAGS_national_id));
  request.set_issuing_country(absl::GetFlag(FLAGS_country));
  if (!ReadTemplates(absl::GetFlag(FLAGS_probes), request.mutable_probes())) {
    return kExitInput;
  }
  v1::VerifyResponse response;
  grpc::Status status =
      client.match().Verify(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return response.match() ? 0 : kExitNegative;
}

int Identify(Client& client) {
  if (absl::GetFlag(FLAGS_probes).empty()) return Usage("identify: --probes");
  v1::IdentifyRequest request;
  if (!ReadTemplates(absl::GetFlag(FLAGS_probes), request.mutable_probes())) {
    return kExitInput;
  }
  request.set_max_candidates(absl::GetFlag(FLAGS_max_candidates));
  if (absl::GetFlag(FLAGS_min_score) > -1.0) {
    request.set_min_score(static_cast<float>(absl::GetFlag(FLAGS_min_score)));
  }
  v1::IdentifyResponse response;
  grpc::Status status =
      client.match().Identify(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  const bool hit = response.candidates_size() > 0 &&
                   response.candidates(0).score() >= response.threshold();
  // The candidates are printed whether or not they reach the threshold:
  // one line says which it is.
  if (hit) {
    std::fprintf(stderr, "hawiya: hit: %s (score %.4f, threshold %.4f)\n",
                 response.candidates(0).subject_id().c_str(),
                 response.candidates(0).score(), response.threshold());
  } else if (response.candidates_size() > 0) {
    std::fprintf(stderr,
                 "hawiya: no hit: the best score %.4f is below the threshold "
                 "%.4f\n",
                 response.candidates(0).score(), response.threshold());
  } else {
    std::fprintf(stderr, "hawiya: no hit: no candidate\n");
  }
  return hit ? 0 : kExitNegative;
}

int List(Client& client) {
  v1::ListPersonsRequest request;
  const std::string state = absl::GetFlag(FLAGS_state);
  if (!state.empty()) {
    v1::PersonState value;
    if (!v1::PersonState_Parse(state, &value)) {
      return Usage(
          "list: --state must be ACTIVE, PENDING_ADJUDICATION, "
          "REVOKED or DECEASED");
    }
    request.set_state(value);
  }
  return PrintAllPages<v1::ListPersonsResponse>(
      request, [&client](const auto& page, v1::ListPersonsResponse* response) {
        return client.enrollment().ListPersons(client.Context().get(), page,
                                               response);
      });
}

int Delete(Client& client) {
  if (absl::GetFlag(FLAGS_subject_id).empty()) {
    return Usage("delete: --subject_id");
  }
  v1::DeletePersonRequest request;
  request.set_subject_id(absl::GetFlag(FLAGS_subject_id));
  request.set_reason(absl::GetFlag(FLAGS_reason));
  request.set_erase(absl::GetFlag(FLAGS_erase));
  google::protobuf::Empty response;
  grpc::Status status = client.enrollment().DeletePerson(client.Context().get(),
                                                         request, &response);
  if (!status.ok()) return RpcFailed(status);
  return 0;
}

int Stats(Client& client) {
  v1::GetStatsResponse response;
  grpc::Status status = client.admin().GetStats(
      client.Context().get(), v1::GetStatsRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int GenKey() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Usage("admin gen-key: --out=FILE is required");
  if (absl::Status s = hawiya::enroll::CreateKeyFile(out); !s.ok()) {
    std::fprintf(stderr, "hawiya: %s\n", std::string(s.message()).c_str());
    return kExitInput;
  }
  std::fprintf(stderr,
               "hawiya: wrote %s; keep it apart from the data and back it "
               "up: without it the store cannot be opened\n",
               out.c_str());
  return 0;
}

// Offline or beside a running server: reads DATA_DIR/hawiya.db only.
int Backup() {
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (data_dir.empty() || out.empty()) {
    return Usage("admin backup: --data_dir=DIR and --out=NEWDIR are required");
  }
  std::fprintf(stderr, "hawiya: backing up %s/hawiya.db to %s ...\n",
               data_dir.c_str(), out.c_str());
  absl::StatusOr<hawiya::enroll::BackupManifest> manifest =
      hawiya::enroll::BackupDataDir(data_dir, out);
  if (!manifest.ok()) {
    std::fprintf(stderr, "hawiya: admin backup: %s\n",
                 std::string(manifest.status().message()).c_str());
    return kExitInput;
  }
  std::printf("backup %s: %s\n", out.c_str(),
              hawiya::enroll::BackupSummary(*manifest).c_str());
  std::fprintf(stderr,
               "hawiya: the key-encryption key is not in the backup: keep "
               "the key file with key check %s where you can find it\n",
               manifest->kek_check.c_str());
  return 0;
}

int Restore() {
  const std::string from = absl::GetFlag(FLAGS_from);
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (from.empty() || data_dir.empty()) {
    return Usage(
        "admin restore: --from=BACKUP and --data_dir=NEWDIR are required");
  }
  absl::StatusOr<hawiya::enroll::BackupManifest> manifest =
      hawiya::enroll::RestoreDataDir(from, data_dir);
  if (!manifest.ok()) {
    std::fprintf(stderr, "hawiya: admin restore: %s\n",
                 std::string(manifest.status().message()).c_str());
    return kExitInput;
  }
  std::printf("restored %s into %s: %s\n", from.c_str(), data_dir.c_str(),
              hawiya::enroll::BackupSummary(*manifest).c_str());
  std::fprintf(stderr,
               "hawiya: start hawiya-server --data_dir=%s with key_file set "
               "to the key with key check %s; it rebuilds the galleries from "
               "the store\n",
               data_dir.c_str(), manifest->kek_check.c_str());
  return 0;
}

int RotateKey(Client& client) {
  v1::RotateKeyResponse response;
  // Re-encrypting every template takes a while; the --timeout default is
  // for single requests.
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::hours(24));
  v1::RotateKeyRequest request;
  request.set_new_key_file(absl::GetFlag(FLAGS_new_key_file));
  grpc::Status status =
      client.admin().RotateKey(context.get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  if (!request.new_key_file().empty()) {
    std::fprintf(stderr,
                 "hawiya: the data keys are now wrapped by %s; set key_file "
                 "in the server's config to it before the next start (the "
                 "old key file no longer opens the store; keep it only as "
                 "long as backups made before this rotation)\n",
                 request.new_key_file().c_str());
  }
  return 0;
}

int Health(Client& client) {
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status =
      client.health().Check(client.Context().get(),
                            grpc::health::v1::HealthCheckRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : kExitNegative;
}

void SetTime(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(time);
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

// --- adjudication ----------------------------------------------------------

int CasesList(Client& client) {
  v1::ListCasesRequest request;
  request.set_include_decided(absl::GetFlag(FLAGS_include_decided));
  return PrintAllPages<v1::ListCasesResponse>(
      request, [&client](const auto& page, v1::ListCasesResponse* response) {
        return client.adjudication().ListCases(client.Context().get(), page,
                                               response);
      });
}

int CasesGet(Client& client) {
  if (absl::GetFlag(FLAGS_case_id).empty()) {
    return Usage("cases get: --case_id");
  }
  v1::GetCaseRequest request;
  request.set_case_id(absl::GetFlag(FLAGS_case_id));
  v1::Case response;
  grpc::Status status =
      client.adjudication().GetCase(client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int CasesDecide(Client& client) {
  if (absl::GetFlag(FLAGS_case_id).empty() ||
      absl::GetFlag(FLAGS_comment).empty()) {
    return Usage("cases decide: --case_id, --decision and --comment");
  }
  v1::Decision decision = v1::DECISION_UNSPECIFIED;
  if (!v1::Decision_Parse(absl::GetFlag(FLAGS_decision), &decision) ||
      decision == v1::DECISION_UNSPECIFIED || decision == v1::WITHDRAWN) {
    return Usage(
        "cases decide: --decision must be DISTINCT, DUPLICATE or FRAUD");
  }
  v1::DecideCaseRequest request;
  // A retried command (same flags) replays instead of being refused.
  request.set_request_id(absl::GetFlag(FLAGS_request_id).empty()
                             ? absl::StrCat("decide-",
                                            absl::GetFlag(FLAGS_case_id), "-",
                                            absl::GetFlag(FLAGS_decision))
                             : absl::GetFlag(FLAGS_request_id));
  request.set_case_id(absl::GetFlag(FLAGS_case_id));
  request.set_decision(decision);
  request.set_comment(absl::GetFlag(FLAGS_comment));
  request.set_duplicate_of(absl::GetFlag(FLAGS_duplicate_of));
  request.set_merge_templates(absl::GetFlag(FLAGS_merge_templates));
  v1::Case response;
  grpc::Status status = client.adjudication().DecideCase(client.Context().get(),
                                                         request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

int AuditList(Client& client) {
  v1::ListAuditRecordsRequest request;
  request.set_principal(absl::GetFlag(FLAGS_principal));
  if (absl::GetFlag(FLAGS_start_time) != absl::InfinitePast()) {
    SetTime(absl::GetFlag(FLAGS_start_time), request.mutable_start_time());
  }
  if (absl::GetFlag(FLAGS_end_time) != absl::InfiniteFuture()) {
    SetTime(absl::GetFlag(FLAGS_end_time), request.mutable_end_time());
  }
  return PrintAllPages<v1::ListAuditRecordsResponse>(
      request,
      [&client](const auto& page, v1::ListAuditRecordsResponse* response) {
        return client.audit().ListAuditRecords(client.Context().get(), page,
                                               response);
      });
}

// One line on stdout; exit 0 if intact, else 1.
int AuditVerdict(bool intact, int64_t records, int64_t head_sequence,
                 const std::string& head_hash, int64_t broken,
                 const std::string& reason) {
  if (intact) {
    std::printf(
        "audit log intact: %lld records, head sequence %lld, head hash %s\n",
        static_cast<long long>(records), static_cast<long long>(head_sequence),
        head_hash.c_str());
    return 0;
  }
  std::printf(
      "audit log BROKEN at record %lld: %s (records 1..%lld check out)\n",
      static_cast<long long>(broken), reason.c_str(),
      static_cast<long long>(head_sequence));
  return kExitNegative;
}

// Offline: reads DATA_DIR/hawiya.db read-only; needs neither server nor key.
int AuditVerifyOffline() {
  hawiya::enroll::AuditAnchor anchor;
  if (absl::GetFlag(FLAGS_anchor_sequence) != 0 ||
      !absl::GetFlag(FLAGS_anchor_hash).empty()) {
    absl::StatusOr<std::string> hash = hawiya::enroll::HashFromHex(
        "--anchor_hash", absl::GetFlag(FLAGS_anchor_hash));
    if (!hash.ok() || absl::GetFlag(FLAGS_anchor_sequence) <= 0) {
      return Usage(
          "audit verify: --anchor_sequence (positive) and --anchor_hash (64 "
          "hex digits) go together");
    }
    anchor = {absl::GetFlag(FLAGS_anchor_sequence), *std::move(hash)};
  }
  const std::string db =
      (std::filesystem::path(absl::GetFlag(FLAGS_data_dir)) / "hawiya.db")
          .string();
  absl::StatusOr<hawiya::enroll::AuditVerification> result =
      hawiya::enroll::VerifyAuditDatabase(db, anchor);
  if (!result.ok()) {
    std::fprintf(stderr, "hawiya: audit verify: %s\n",
                 std::string(result.status().message()).c_str());
    return kExitInput;
  }
  return AuditVerdict(result->intact, result->records_checked,
                      result->head_sequence,
                      hawiya::enroll::HashHex(result->head_hash),
                      result->first_broken_sequence, result->reason);
}

int AuditVerify(Client& client) {
  v1::VerifyAuditLogRequest request;
  request.set_anchor_sequence(absl::GetFlag(FLAGS_anchor_sequence));
  request.set_anchor_hash(absl::GetFlag(FLAGS_anchor_hash));
  v1::VerifyAuditLogResponse response;
  // A walk of the whole log: longer than single requests.
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::hours(1));
  grpc::Status status =
      client.audit().VerifyAuditLog(context.get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  return AuditVerdict(response.intact(), response.records_checked(),
                      response.head_sequence(), response.head_hash(),
                      response.first_broken_sequence(), response.reason());
}

int Synth() {
  v1::Modality modality;
  if (!v1::Modality_Parse(absl::GetFlag(FLAGS_modality), &modality) ||
      modality == v1::MODALITY_UNSPECIFIED) {
    return Usage("synth: --modality must be FACE, FINGERPRINT or IRIS");
  }
  hawiya::matcher::SyntheticOptions options;
  options.dimension = absl::GetFlag(FLAGS_dimension) > 0
                          ? absl::GetFlag(FLAGS_dimension)
                          : (modality == v1::FACE ? 512 : 256);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.hard = absl::GetFlag(FLAGS_hard);
  const hawiya::matcher::SyntheticModel model(options);
  const std::vector<float> vector = model.Capture(absl::GetFlag(FLAGS_identity),
                                                  absl::GetFlag(FLAGS_capture));
  hawiya::config::TemplateFile file;
  v1::Template* t = file.add_templates();
  t->set_modality(modality);
  t->set_position(modality == v1::FACE ? 0 : 1);
  t->mutable_vector()->Assign(vector.begin(), vector.end());
  t->set_quality(90);
  t->set_algorithm("hawiya-synthetic/1");
  Print(file);
  return 0;
}

// --- synth-persons and import ---------------------------------------------

hawiya::matcher::SyntheticModel FaceModel() {
  hawiya::matcher::SyntheticOptions options;
  if (absl::GetFlag(FLAGS_dimension) > 0) {
    options.dimension = absl::GetFlag(FLAGS_dimension);
  }
  options.seed = absl::GetFlag(FLAGS_seed);
  options.hard = absl::GetFlag(FLAGS_hard);
  return hawiya::matcher::SyntheticModel(options);
}

int SynthPersons() {
  if (absl::GetFlag(FLAGS_count) == 0) {
    return Usage("synth-persons: --count");
  }
  const hawiya::matcher::SyntheticModel model = FaceModel();
  const uint64_t start = absl::GetFlag(FLAGS_start);
  const uint64_t end = start + absl::GetFlag(FLAGS_count);
  std::string json;
  for (uint64_t n = start; n < end; ++n) {
    v1::EnrollRequest request =
        hawiya::services::SyntheticEnrollRequest(model, n);
    // A pure function of (seed, n): regenerating the file and importing it
    // again replays instead of colliding.
    request.set_request_id(
        absl::StrCat("synth-", model.options().seed, "-", n));
    json.clear();
    if (!google::protobuf::util::MessageToJsonString(request, &json).ok()) {
      std::fprintf(stderr, "hawiya: cannot print request %llu\n",
                   static_cast<unsigned long long>(n));
      return kExitInput;
    }
    json.push_back('\n');
    if (std::fwrite(json.data(), 1, json.size(), stdout) != json.size()) {
      std::fprintf(stderr, "hawiya: write to stdout failed\n");
      return kExitInput;
    }
  }
  return std::fflush(stdout) == 0 ? 0 : kExitInput;
}

// Lines are numbered from 1, as editors and compilers do.
int64_t CountLines(std::ifstream& in) {
  int64_t lines = 0;
  bool open_line = false;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    const std::streamsize n = in.gcount();
    // memchr is vectorised: this pass over the file is all before the first
    // batch can be sent.
    const char* end = buffer + n;
    for (const char* p = buffer;
         (p = static_cast<const char*>(std::memchr(p, '\n', end - p))) !=
         nullptr;
         ++p) {
      ++lines;
    }
    open_line = buffer[n - 1] != '\n';
  }
  return lines + (open_line ? 1 : 0);
}

// The state file holds "next_line=N": every line before N is committed.
// SHA-256 over a stream of lines, readable at any point: the import state
// names the content it has committed, not just a line number, so a different
// file at the same path is never skipped into.
class LineDigest {
 public:
  LineDigest() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~LineDigest() { EVP_MD_CTX_free(ctx_); }
  LineDigest(const LineDigest&) = delete;
  LineDigest& operator=(const LineDigest&) = delete;

  void Add(const std::string& line) {
    EVP_DigestUpdate(ctx_, line.data(), line.size());
    EVP_DigestUpdate(ctx_, "\n", 1);
  }
  // Hex digest of the lines added so far; more may be added afterwards.
  std::string Hex() const {
    EVP_MD_CTX* copy = EVP_MD_CTX_new();
    EVP_MD_CTX_copy_ex(copy, ctx_);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(copy, digest, &length);
    EVP_MD_CTX_free(copy);
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(digest), length));
  }

 private:
  EVP_MD_CTX* ctx_;
};

// A request id for a line without one: the same line always gets the same
// id (a re-run replays), different lines get different ones.
std::string ContentRequestId(const std::string& line) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(line.data(), line.size(), digest, &length, EVP_sha256(), nullptr);
  return absl::StrCat("import:",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(digest), 16)));
}

// Where an import stands: lines before next_line are committed, and
// prefix_sha256 is the LineDigest of exactly those lines.
struct ImportState {
  int64_t next_line = 1;
  std::string prefix_sha256;
};

std::optional<ImportState> ReadState(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ImportState{};  // no state: start at the top
  ImportState state;
  std::string line;
  std::getline(in, line);
  absl::string_view text = line;
  if (!absl::ConsumePrefix(&text, "next_line=") ||
      !absl::SimpleAtoi(text, &state.next_line) || state.next_line < 1) {
    return std::nullopt;
  }
  std::getline(in, line);
  text = line;
  if (!absl::ConsumePrefix(&text, "prefix_sha256=") || text.size() != 64) {
    return std::nullopt;
  }
  state.prefix_sha256 = std::string(text);
  return state;
}

// Temp file + fsync + rename, so a crash leaves the old position or the new
// one, never a torn file (which could skip or repeat nothing worse than a
// replay, but would stop the next run).
bool WriteState(const std::string& path, const ImportState& state) {
  const std::string temp = path + ".tmp";
  FILE* out = std::fopen(temp.c_str(), "w");
  if (out == nullptr) return false;
  const bool written = std::fprintf(out, "next_line=%lld\nprefix_sha256=%s\n",
                                    static_cast<long long>(state.next_line),
                                    state.prefix_sha256.c_str()) > 0 &&
                       std::fflush(out) == 0 && fsync(fileno(out)) == 0;
  if (std::fclose(out) != 0 || !written) return false;
  return std::rename(temp.c_str(), path.c_str()) == 0;
}

std::string EtaText(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(d);
  return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
}

// Progress on stderr: a bar redrawn in place on a terminal; otherwise (a log
// file) a line every 5%, which stays readable.
class Progress {
 public:
  Progress(int64_t total, int64_t done)
      : total_(total),
        start_done_(done),
        tty_(isatty(STDERR_FILENO) == 1),
        start_(absl::Now()) {}

  void Update(int64_t done) {
    const int64_t step = total_ > 0 ? done * 20 / total_ : 20;
    if (!tty_ && step == last_step_ && done < total_) return;
    last_step_ = step;
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    const double rate =
        seconds > 0 ? static_cast<double>(done - start_done_) / seconds : 0;
    const std::string eta =
        rate > 0
            ? EtaText(absl::Seconds(static_cast<double>(total_ - done) / rate))
            : "-";
    const int percent =
        total_ > 0 ? static_cast<int>(done * 100 / total_) : 100;
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled =
          total_ > 0 ? static_cast<int>(done * kWidth / total_) : kWidth;
      std::fprintf(stderr, "\r[%s%s] %lld/%lld lines %3d%%  %.0f/s  ETA %s ",
                   std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_),
                   percent, rate, eta.c_str());
    } else {
      std::fprintf(stderr,
                   "hawiya: import %lld/%lld lines (%d%%), %.0f/s, ETA %s\n",
                   static_cast<long long>(done), static_cast<long long>(total_),
                   percent, rate, eta.c_str());
    }
    std::fflush(stderr);
  }

  void Done() {
    if (tty_) std::fputc('\n', stderr);
  }

 private:
  const int64_t total_;
  const int64_t start_done_;
  const bool tty_;
  const absl::Time start_;
  int64_t last_step_ = -1;
};

// Parsed lines for one BatchEnroll call, or the input error that ends the
// import after every earlier batch is committed.
struct ImportBatch {
  int64_t seq = 0;  // 0, 1, 2, ... in file order
  std::vector<v1::EnrollRequest> requests;
  std::vector<int64_t> lines;  // line of requests[i]
  int64_t next_line = 0;       // first line after the batch
  std::string prefix_sha256;   // LineDigest of the lines before next_line
  std::string error;           // "FILE:LINE: why"
};

// Reads and parses the file on its own thread, a few batches ahead, so JSON
// parsing overlaps the streaming and the commits of earlier batches.
class BatchReader {
 public:
  // `digest` holds the lines before next_line; the reader continues it.
  BatchReader(std::ifstream in, std::string path, int64_t next_line,
              int batch_size, LineDigest* digest)
      : in_(std::move(in)),
        digest_(digest),
        path_(std::move(path)),
        line_(next_line - 1),
        batch_size_(batch_size) {
    thread_ = std::thread([this] { Run(); });
  }
  ~BatchReader() {
    Stop();
    thread_.join();
  }

  // Parses no further batch: Next() returns those already parsed, then
  // nullopt.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }

  // The next batch, in file order; nullopt at the end of the file. Callable
  // from several threads, each batch going to one of them.
  std::optional<ImportBatch> Next() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](BatchReader* r) {
          r->mu_.AssertHeld();  // Await evaluates conditions under mu_
          return !r->ready_.empty() || r->finished_;
        },
        this));
    if (ready_.empty()) return std::nullopt;
    ImportBatch batch = std::move(ready_.front());
    ready_.pop_front();
    return batch;
  }

 private:
  // Enough for every sender to pick up its next batch without waiting.
  static constexpr size_t kAhead = 4;

  void Run() {
    bool more = true;
    while (more) {
      ImportBatch batch = Parse();
      more = batch.error.empty() && !batch.requests.empty();
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](BatchReader* r) {
            r->mu_.AssertHeld();
            return r->ready_.size() < kAhead || r->stopping_;
          },
          this));
      if (stopping_) break;
      if (!batch.requests.empty() || !batch.error.empty()) {
        ready_.push_back(std::move(batch));
      }
    }
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }

  ImportBatch Parse() {
    ImportBatch batch;
    batch.seq = seq_++;
    std::string text;
    while (static_cast<int>(batch.requests.size()) < batch_size_ &&
           std::getline(in_, text)) {
      ++line_;
      if (absl::StripAsciiWhitespace(text).empty()) {
        digest_->Add(text);
        continue;
      }
      v1::EnrollRequest request;
      // Exactly JsonStringToMessage's result, about 10x faster.
      const absl::Status status =
          hawiya::services::ParseEnrollRequestJson(text, &request);
      if (!status.ok()) {
        batch.error = absl::StrCat(path_, ":", line_, ": ",
                                   std::string(status.message()));
        // The bad line is where the next run must start.
        batch.next_line = line_;
        batch.prefix_sha256 = digest_->Hex();
        return batch;
      }
      digest_->Add(text);
      if (request.request_id().empty()) {
        request.set_request_id(ContentRequestId(text));
      }
      batch.requests.push_back(std::move(request));
      batch.lines.push_back(line_);
    }
    if (batch.error.empty() && in_.bad()) {
      batch.error = absl::StrCat(path_, ":", line_ + 1, ": read error");
    }
    batch.next_line = line_ + 1;
    batch.prefix_sha256 = digest_->Hex();
    return batch;
  }

  std::ifstream in_;
  LineDigest* const digest_;  // used by the reader thread only
  const std::string path_;
  int64_t line_;  // last line read
  int64_t seq_ = 0;
  const int batch_size_;
  std::thread thread_;
  absl::Mutex mu_;
  std::deque<ImportBatch> ready_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// What became of one batch.
struct BatchOutcome {
  ImportBatch batch;
  grpc::Status status;  // of the BatchEnroll call, if there were requests
  int responses = 0;
};

// Sends the reader's batches on `in_flight` threads, one BatchEnroll call
// each. Every call streams its requests at once, but is half-closed (the
// server commits on half-close) only when every earlier batch has been
// acknowledged: so the next batches travel and are buffered by the server
// while it commits the current one, yet commits still happen one after the
// other in file order, with the same outcome as one batch at a time (the
// first of two lines with one national id wins, whatever the timing). A call
// whose turn never comes, because an earlier batch failed, is cancelled
// before its half-close, so the server commits nothing of it.
class BatchSender {
 public:
  BatchSender(Client& client, BatchReader& reader, int in_flight)
      : client_(client), reader_(reader) {
    for (int i = 0; i < in_flight; ++i) {
      lanes_.emplace_back([this] { Run(); });
    }
  }
  // Cancels the calls not yet half-closed and joins the threads.
  ~BatchSender() {
    {
      absl::MutexLock lock(&mu_);
      failed_seq_ = -1;
    }
    reader_.Stop();
    for (std::thread& lane : lanes_) lane.join();
  }

  // The outcome of batch `seq`, waiting for it; nullopt if there is none
  // (the file ended before it). REQUIRES: called for 0, 1, 2, ... in turn.
  std::optional<BatchOutcome> Outcome(int64_t seq) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, seq]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> bool {
      return outcomes_.count(seq) > 0 || lanes_done_ == lanes_.size();
    };
    mu_.Await(absl::Condition(&ready));
    auto it = outcomes_.find(seq);
    if (it == outcomes_.end()) return std::nullopt;
    BatchOutcome outcome = std::move(it->second);
    outcomes_.erase(it);
    return outcome;
  }

 private:
  void Run() {
    while (std::optional<ImportBatch> batch = reader_.Next()) {
      const int64_t seq = batch->seq;
      {
        absl::MutexLock lock(&mu_);
        if (failed_seq_ < seq) break;  // an earlier batch failed
      }
      BatchOutcome outcome;
      if (!batch->requests.empty()) Send(*batch, &outcome);
      const bool ok = outcome.status.ok() && batch->error.empty();
      outcome.batch = *std::move(batch);
      absl::MutexLock lock(&mu_);
      if (ok) {
        acknowledged_ = seq + 1;
      } else {
        failed_seq_ = std::min(failed_seq_, seq);
      }
      outcomes_.emplace(seq, std::move(outcome));
    }
    absl::MutexLock lock(&mu_);
    ++lanes_done_;
  }

  void Send(const ImportBatch& batch, BatchOutcome* outcome) {
    std::unique_ptr<grpc::ClientContext> context = client_.Context();
    v1::BatchEnrollResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::EnrollRequest>> writer =
        client_.enrollment().BatchEnroll(context.get(), &response);
    bool open = true;
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      // Buffered but for the last one: gRPC may then pack several requests
      // into one write to the socket.
      grpc::WriteOptions options;
      if (i + 1 < batch.requests.size()) options.set_buffer_hint();
      // false: the call is over; Finish says why.
      if (!writer->Write(batch.requests[i], options)) {
        open = false;
        break;
      }
    }
    if (open) {
      bool turn;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this, seq = batch.seq]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> bool {
          return acknowledged_ == seq || failed_seq_ < seq;
        };
        mu_.Await(absl::Condition(&ready));
        turn = acknowledged_ == batch.seq;
      }
      if (turn) {
        writer->WritesDone();
      } else {
        context->TryCancel();
      }
    }
    outcome->status = writer->Finish();
    outcome->responses = response.responses_size();
    if (outcome->status.ok() &&
        static_cast<size_t>(outcome->responses) != batch.requests.size()) {
      outcome->status = grpc::Status(grpc::StatusCode::INTERNAL,
                                     "server answered a different number of "
                                     "requests than were sent");
    }
  }

  Client& client_;
  BatchReader& reader_;
  std::vector<std::thread> lanes_;
  absl::Mutex mu_;
  // Batches before this one are committed.
  int64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  // The first batch that failed (or -1 once stopping): later ones are not
  // committed.
  int64_t failed_seq_ ABSL_GUARDED_BY(mu_) =
      std::numeric_limits<int64_t>::max();
  std::map<int64_t, BatchOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
  size_t lanes_done_ ABSL_GUARDED_BY(mu_) = 0;
};

// The file line an error names: requests[i] of the batch if the server said
// which, else the batch's first line.
int64_t FailedLine(const ImportBatch& batch, const std::string& message) {
  absl::string_view text = message;
  size_t index = 0;
  if (absl::ConsumePrefix(&text, "requests[")) {
    const size_t close = text.find(']');
    if (close != absl::string_view::npos &&
        absl::SimpleAtoi(text.substr(0, close), &index) &&
        index < batch.lines.size()) {
      return batch.lines[index];
    }
  }
  return batch.lines.front();
}

int Import(Client& client) {
  const std::string path = absl::GetFlag(FLAGS_file);
  if (path.empty()) return Usage("import: --file");
  const int batch_size = absl::GetFlag(FLAGS_batch);
  if (batch_size < 1 || batch_size > 10000) {
    return Usage("import: --batch must be 1-10000");
  }
  const int in_flight = absl::GetFlag(FLAGS_in_flight);
  if (in_flight < 1 || in_flight > 8) {
    return Usage("import: --in_flight must be 1-8");
  }
  const std::string state_path = absl::GetFlag(FLAGS_state_file).empty()
                                     ? path + ".import-state"
                                     : absl::GetFlag(FLAGS_state_file);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "hawiya: cannot read %s\n", path.c_str());
    return kExitInput;
  }
  const int64_t total = CountLines(in);
  in.clear();
  in.seekg(0);
  const std::optional<ImportState> state = ReadState(state_path);
  if (!state.has_value()) {
    std::fprintf(stderr, "hawiya: %s: not an import state file\n",
                 state_path.c_str());
    return kExitInput;
  }
  const int64_t next_line = state->next_line;
  // Skipping committed lines is a plain scan (no parsing, no RPC), hashed to
  // check that they are the lines the state file says were committed.
  LineDigest digest;
  std::string skipped;
  for (int64_t line = 1; line < next_line && std::getline(in, skipped);
       ++line) {
    digest.Add(skipped);
  }
  ImportState committed{next_line, digest.Hex()};
  if (next_line > 1 && committed.prefix_sha256 != state->prefix_sha256) {
    std::fprintf(stderr,
                 "hawiya: %s: lines 1-%lld of %s are not the ones it recorded "
                 "as imported (another file at this path?); delete it to "
                 "import from the first line (re-sent lines replay)\n",
                 state_path.c_str(), static_cast<long long>(next_line - 1),
                 path.c_str());
    return kExitInput;
  }

  if (next_line > total) {
    std::fprintf(stderr, "hawiya: %s: all %lld lines already imported (%s)\n",
                 path.c_str(), static_cast<long long>(total),
                 state_path.c_str());
  }
  Progress progress(total, std::min(next_line - 1, total));
  int64_t acknowledged = 0;
  int64_t done = std::min(next_line - 1, total);
  {
    BatchReader reader(std::move(in), path, next_line, batch_size, &digest);
    BatchSender sender(client, reader, in_flight);
    progress.Update(done);
    // Outcomes in file order: the state file only ever moves past batches
    // that were acknowledged, and every batch before them.
    for (int64_t seq = 0;; ++seq) {
      std::optional<BatchOutcome> outcome = sender.Outcome(seq);
      if (!outcome.has_value()) break;
      const ImportBatch& batch = outcome->batch;
      if (!batch.requests.empty()) {
        const grpc::Status& status = outcome->status;
        if (!status.ok()) {
          progress.Done();
          std::fprintf(
              stderr,
              "hawiya: %s:%lld: code %d: %s\n"
              "hawiya: nothing of lines %lld-%lld was imported; "
              "run again to resume at line %lld\n",
              path.c_str(),
              static_cast<long long>(FailedLine(batch, status.error_message())),
              status.error_code(), status.error_message().c_str(),
              static_cast<long long>(batch.lines.front()),
              static_cast<long long>(batch.lines.back()),
              static_cast<long long>(batch.lines.front()));
          return kExitRpcBase + status.error_code();
        }
        // Replays included: the response does not tell them apart.
        acknowledged += outcome->responses;
        committed = {batch.next_line, batch.prefix_sha256};
        if (!WriteState(state_path, committed)) {
          progress.Done();
          std::fprintf(stderr, "hawiya: cannot write %s\n", state_path.c_str());
          return kExitInput;
        }
        done = std::min(batch.next_line - 1, total);
        progress.Update(done);
      }
      if (!batch.error.empty()) {
        progress.Done();
        std::fprintf(stderr, "hawiya: %s\n", batch.error.c_str());
        return kExitInput;
      }
    }
  }
  if (!WriteState(state_path, committed)) {
    std::fprintf(stderr, "hawiya: cannot write %s\n", state_path.c_str());
    return kExitInput;
  }
  progress.Update(total);
  progress.Done();
  std::printf("{\"file\": \"%s\", \"lines\": %lld, \"acknowledged\": %lld}\n",
              path.c_str(), static_cast<long long>(total),
              static_cast<long long>(acknowledged));
  return 0;
}

// --- partners and receipts ------------------------------------------------

// "G,F" / "G,F,FAM" / "G,F,GF,FAM" into parts; false if malformed.
bool ParseName(const std::string& text, v1::PersonName* name) {
  std::vector<std::string> parts = absl::StrSplit(text, ',');
  for (std::string& part : parts) {
    part = std::string(absl::StripAsciiWhitespace(part));
  }
  switch (parts.size()) {
    case 2:
      name->set_given(parts[0]);
      name->set_family(parts[1]);
      return true;
    case 3:
      name->set_given(parts[0]);
      name->set_father(parts[1]);
      name->set_family(parts[2]);
      return true;
    case 4:
      name->set_given(parts[0]);
      name->set_father(parts[1]);
      name->set_grandfather(parts[2]);
      name->set_family(parts[3]);
      return true;
    default:
      return false;
  }
}

// Reads a message from a file in text format, else binary.
bool ReadMessage(const std::string& path, Message* message) {
  absl::StatusOr<std::string> bytes = hawiya::services::ReadFile(path);
  if (!bytes.ok()) {
    std::fprintf(stderr, "hawiya: %s\n",
                 std::string(bytes.status().message()).c_str());
    return false;
  }
  // Binary files are not text: the text parser's complaints about them
  // are not the user's concern.
  class Silent : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int, int, const std::string&) override {}
  } silent;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&silent);
  if (parser.ParseFromString(*bytes, message) && !bytes->empty()) return true;
  message->Clear();
  if (message->ParseFromString(*bytes) && !bytes->empty()) return true;
  std::fprintf(stderr, "hawiya: %s: not a %s (text format or binary)\n",
               path.c_str(), message->GetTypeName().c_str());
  return false;
}

bool WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  if (!out) {
    std::fprintf(stderr, "hawiya: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

int PartnerVerify(Client& client) {
  v1::VerifyCivilStatusRequest request;
  if (absl::GetFlag(FLAGS_national_id).empty() ||
      absl::GetFlag(FLAGS_country).empty()) {
    return Usage("partner verify: --national_id and --country");
  }
  request.set_national_id(absl::GetFlag(FLAGS_national_id));
  request.set_issuing_country(absl::GetFlag(FLAGS_country));
  v1::Purpose purpose;
  if (!v1::Purpose_Parse(absl::GetFlag(FLAGS_purpose), &purpose) ||
      purpose == v1::PURPOSE_UNSPECIFIED) {
    return Usage(
        "partner verify: --purpose=BORDER_CROSSING (or another "
        "hawiya.v1.Purpose)");
  }
  request.set_purpose(purpose);
  request.set_purpose_text(absl::GetFlag(FLAGS_purpose_text));
  request.set_request_id(absl::GetFlag(FLAGS_request_id).empty()
                             ? RandomRequestId()
                             : absl::GetFlag(FLAGS_request_id));
  if (!absl::GetFlag(FLAGS_name_ar).empty() &&
      !ParseName(absl::GetFlag(FLAGS_name_ar), request.mutable_name_ar())) {
    return Usage("partner verify: --name_ar: 2 to 4 comma-separated parts");
  }
  if (!absl::GetFlag(FLAGS_name_latin).empty() &&
      !ParseName(absl::GetFlag(FLAGS_name_latin),
                 request.mutable_name_latin())) {
    return Usage("partner verify: --name_latin: 2 to 4 comma-separated parts");
  }
  if (const std::string dob = absl::GetFlag(FLAGS_date_of_birth);
      !dob.empty()) {
    std::vector<std::string> parts = absl::StrSplit(dob, '-');
    int year = 0, month = 0, day = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &year) ||
        !absl::SimpleAtoi(parts[1], &month) ||
        !absl::SimpleAtoi(parts[2], &day)) {
      return Usage("partner verify: --date_of_birth=YYYY-MM-DD");
    }
    request.mutable_date_of_birth()->set_year(year);
    request.mutable_date_of_birth()->set_month(month);
    request.mutable_date_of_birth()->set_day(day);
  }
  if (const std::string sex = absl::GetFlag(FLAGS_sex); !sex.empty()) {
    v1::Sex value;
    if (!v1::Sex_Parse(sex, &value)) {
      return Usage("partner verify: --sex=FEMALE or MALE");
    }
    request.set_sex(value);
  }
  if (const std::string status = absl::GetFlag(FLAGS_civil_status);
      !status.empty()) {
    v1::CivilStatus value;
    if (!v1::CivilStatus_Parse(status, &value)) {
      return Usage(
          "partner verify: --civil_status=SINGLE, MARRIED, DIVORCED or "
          "WIDOWED");
    }
    request.set_civil_status(value);
  }
  if (!absl::GetFlag(FLAGS_probes).empty() &&
      !ReadTemplates(absl::GetFlag(FLAGS_probes), request.mutable_probes())) {
    return kExitInput;
  }
  v1::VerifyCivilStatusResponse response;
  grpc::Status status = client.partner().VerifyCivilStatus(
      client.Context().get(), request, &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  if (!absl::GetFlag(FLAGS_receipt_out).empty() &&
      !WriteBytes(absl::GetFlag(FLAGS_receipt_out),
                  response.receipt().SerializeAsString())) {
    return kExitInput;
  }
  return response.decision() == v1::VerifyCivilStatusResponse::MATCH
             ? 0
             : kExitNegative;
}

int SigningKeys(Client& client) {
  v1::GetSigningKeysResponse response;
  grpc::Status status = client.admin().GetSigningKeys(
      client.Context().get(), v1::GetSigningKeysRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(response, &text);
    if (!WriteBytes(out, text)) return kExitInput;
  }
  return 0;
}

int RotateSigningKey(Client& client) {
  v1::RotateSigningKeyResponse response;
  grpc::Status status = client.admin().RotateSigningKey(
      client.Context().get(), v1::RotateSigningKeyRequest(), &response);
  if (!status.ok()) return RpcFailed(status);
  Print(response);
  return 0;
}

// Offline: no server, no key but the public ones in --keys.
int ReceiptVerify() {
  if (absl::GetFlag(FLAGS_receipt).empty() ||
      absl::GetFlag(FLAGS_keys).empty()) {
    return Usage("receipt verify: --receipt=FILE and --keys=FILE");
  }
  v1::Receipt receipt;
  v1::GetSigningKeysResponse keys;
  if (!ReadMessage(absl::GetFlag(FLAGS_receipt), &receipt) ||
      !ReadMessage(absl::GetFlag(FLAGS_keys), &keys)) {
    return kExitInput;
  }
  absl::StatusOr<v1::ReceiptPayload> payload =
      hawiya::enroll::VerifyReceipt(receipt, keys);
  if (!payload.ok()) {
    std::fprintf(stderr, "hawiya: receipt INVALID: %s\n",
                 std::string(payload.status().message()).c_str());
    return kExitNegative;
  }
  Print(*payload);
  std::fprintf(stderr, "hawiya: receipt valid: signed by %s\n",
               receipt.key_id().c_str());
  return 0;
}

// --- transport security --------------------------------------------------

// The role each command acts in, choosing its default certificate.
std::string CommandRole(const std::string& command) {
  if (command == "verify" || command == "identify") return "border";
  if (absl::StartsWith(command, "partner ")) return "partner";
  if (command == "stats" || command == "health" ||
      command == "admin rotate-key" || command == "admin signing-keys" ||
      command == "admin rotate-signing-key") {
    return "admin";
  }
  if (absl::StartsWith(command, "audit ")) return "auditor";
  if (absl::StartsWith(command, "cases ")) return "adjudicator";
  return "registrar";
}

// Channel credentials for `command` from the flags; nullptr after printing
// why if there are none (exit code in *exit_code).
std::shared_ptr<grpc::ChannelCredentials> Credentials(
    const std::string& command, grpc::ChannelArguments* args, int* exit_code) {
  const std::string cert = absl::GetFlag(FLAGS_cert);
  const std::string key = absl::GetFlag(FLAGS_key);
  const std::string ca = absl::GetFlag(FLAGS_ca);
  if (absl::GetFlag(FLAGS_insecure)) {
    if (!cert.empty() || !key.empty() || !ca.empty()) {
      *exit_code = Usage("--insecure excludes --cert, --key and --ca");
      return nullptr;
    }
    return grpc::InsecureChannelCredentials();
  }
  if (cert.empty() != key.empty()) {
    *exit_code = Usage("--cert and --key go together");
    return nullptr;
  }
  std::string role = absl::GetFlag(FLAGS_role);
  if (role.empty()) role = CommandRole(command);
  if (!hawiya::services::IsRole(role)) {
    *exit_code = Usage("--role: unknown role '" + role + "'");
    return nullptr;
  }
  const hawiya::services::DevPkiPaths dev =
      hawiya::services::DevPkiRolePaths(absl::GetFlag(FLAGS_pki_dir), role);
  grpc::SslCredentialsOptions options;
  for (const auto& [path, pem] :
       {std::pair(cert.empty() ? dev.cert : cert, &options.pem_cert_chain),
        std::pair(key.empty() ? dev.key : key, &options.pem_private_key),
        std::pair(ca.empty() ? dev.ca : ca, &options.pem_root_certs)}) {
    absl::StatusOr<std::string> text = hawiya::services::ReadFile(path);
    if (!text.ok()) {
      std::fprintf(stderr,
                   "hawiya: %s (start hawiya-server once without --insecure "
                   "to write DATA_DIR/pki and point --pki_dir at it, or pass "
                   "--cert, --key and --ca, or --insecure)\n",
                   std::string(text.status().message()).c_str());
      *exit_code = kExitInput;
      return nullptr;
    }
    *pem = *std::move(text);
  }
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    args->SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  return grpc::SslCredentials(options);
}

// --- eval -----------------------------------------------------------------

// Mean and standard deviation of `scores` (0, 0 if empty).
std::pair<double, double> MeanSd(const std::vector<float>& scores) {
  double mean = 0, var = 0;
  for (float s : scores) mean += s;
  mean /= static_cast<double>(std::max<size_t>(1, scores.size()));
  for (float s : scores) var += (s - mean) * (s - mean);
  return {
      mean,
      std::sqrt(var / static_cast<double>(std::max<size_t>(1, scores.size())))};
}

int Eval() {
  namespace m = hawiya::matcher;
  // The modalities evaluated: --modalities, else --modality (a --set file
  // brings its own).
  std::vector<m::Modality> modalities;
  {
    const std::string list = absl::GetFlag(FLAGS_modalities).empty()
                                 ? absl::GetFlag(FLAGS_modality)
                                 : absl::GetFlag(FLAGS_modalities);
    for (absl::string_view name : absl::StrSplit(list, ',')) {
      absl::StatusOr<m::Modality> modality = m::ParseModalityName(name);
      if (!modality.ok()) {
        return Usage(
            absl::StrCat("eval: --modalities: ", modality.status().message()));
      }
      if (absl::c_linear_search(modalities, *modality)) {
        return Usage(absl::StrCat("eval: --modalities: ", name, " twice"));
      }
      modalities.push_back(*modality);
    }
  }
  const bool generate = absl::GetFlag(FLAGS_generate);
  if (generate == !absl::GetFlag(FLAGS_set).empty()) {
    return Usage("eval: exactly one of --generate and --set=FILE");
  }
  const std::string variant = absl::GetFlag(FLAGS_variant);
  if (variant != "easy" && variant != "hard") {
    return Usage("eval: --variant must be easy or hard");
  }
  if (absl::GetFlag(FLAGS_max_rank) == 0 ||
      absl::GetFlag(FLAGS_max_rank) > 100) {
    return Usage("eval: --max_rank must be in [1, 100]");
  }
  absl::StatusOr<m::IndexKind> kind =
      m::ParseIndexKind(absl::GetFlag(FLAGS_index));
  if (!kind.ok())
    return Usage(absl::StrCat("eval: --index: ", kind.status().message()));

  // Specs, fusion and targets: the defaults, or the config's (read and
  // checked as the server does); --index for a modality whose config names
  // no index kind, --fusion over the config's rule.
  auto config_error = [](const absl::Status& status) {
    std::fprintf(stderr, "hawiya eval: config: %s\n",
                 std::string(status.message()).c_str());
    return kExitInput;
  };
  absl::StatusOr<hawiya::config::ServerConfig> config =
      hawiya::services::LoadConfig(absl::GetFlag(FLAGS_config));
  if (!config.ok()) return config_error(config.status());
  absl::StatusOr<std::vector<m::ModalitySpec>> specs =
      hawiya::services::ModalitySpecs(*config);
  if (!specs.ok()) return config_error(specs.status());
  absl::StatusOr<m::FusionOptions> fusion =
      hawiya::services::FusionOptions(*config);
  if (!fusion.ok()) return config_error(fusion.status());
  for (m::ModalitySpec& spec : *specs) {
    bool configured_kind = false;
    for (const hawiya::config::ModalityConfig& mc : config->modalities()) {
      configured_kind |= mc.modality() == static_cast<int>(spec.modality) &&
                         !mc.index().kind().empty();
    }
    if (!configured_kind) spec.index.kind = *kind;
  }
  if (!absl::GetFlag(FLAGS_fusion).empty()) {
    absl::StatusOr<m::FusionRule> rule =
        m::ParseFusionRule(absl::GetFlag(FLAGS_fusion));
    if (!rule.ok()) {
      return Usage(absl::StrCat("eval: --fusion: ", rule.status().message()));
    }
    if (*rule != fusion->rule) {
      fusion->rule = *rule;
      fusion->fused_threshold = std::numeric_limits<float>::quiet_NaN();
    }
  }
  double target_fmr = absl::GetFlag(FLAGS_target_fmr);
  double target_fpir = absl::GetFlag(FLAGS_target_fpir);
  if (config->accuracy_targets().verification_fmr() > 0) {
    target_fmr = config->accuracy_targets().verification_fmr();
  }
  if (config->accuracy_targets().identification_fpir() > 0) {
    target_fpir = config->accuracy_targets().identification_fpir();
  }
  if (!(target_fmr > 0 && target_fmr < 1) ||
      !(target_fpir > 0 && target_fpir < 1)) {
    return Usage("eval: targets must be in (0, 1)");
  }
  auto spec_of = [&specs](m::Modality modality) -> m::ModalitySpec& {
    return *absl::c_find_if(*specs, [modality](const m::ModalitySpec& s) {
      return s.modality == modality;
    });
  };
  if (absl::GetFlag(FLAGS_dimension) > 0) {
    if (modalities.size() != 1) {
      return Usage("eval: --dimension needs exactly one modality");
    }
    spec_of(modalities[0]).dimension = absl::GetFlag(FLAGS_dimension);
  }
  const double missing = absl::GetFlag(FLAGS_missing);

  absl::StatusOr<m::EvalSet> set;
  if (generate) {
    m::GenerateOptions options;
    options.identities = absl::GetFlag(FLAGS_identities);
    options.mated_probes = absl::GetFlag(FLAGS_mated);
    options.nonmated_probes = absl::GetFlag(FLAGS_nonmated);
    options.seed = absl::GetFlag(FLAGS_seed);
    options.hard = variant == "hard";
    options.modalities.clear();
    for (m::Modality modality : modalities) {
      options.modalities.push_back({modality, spec_of(modality).dimension});
    }
    options.capture_noise = static_cast<float>(absl::GetFlag(FLAGS_noise));
    options.missing_probe_fraction = missing;
    set = m::GenerateSet(options);
    if (!set.ok()) {
      return Usage(absl::StrCat("eval: ", set.status().message()));
    }
  } else {
    if (missing != 0) return Usage("eval: --missing is for --generate");
    std::ifstream in(absl::GetFlag(FLAGS_set));
    if (!in) {
      std::fprintf(stderr, "hawiya eval: cannot open %s\n",
                   absl::GetFlag(FLAGS_set).c_str());
      return kExitInput;
    }
    set = m::ReadSet(in);
    if (!set.ok()) {
      std::fprintf(stderr, "hawiya eval: %s: %s\n",
                   absl::GetFlag(FLAGS_set).c_str(),
                   std::string(set.status().message()).c_str());
      return kExitInput;
    }
    modalities.clear();
    for (const auto& [modality, dimension] : set->dimensions) {
      modalities.push_back(modality);
      spec_of(modality).dimension = dimension;
    }
  }

  m::EvalOptions options;
  for (m::Modality modality : modalities) {
    options.matcher.modalities.push_back(spec_of(modality));
  }
  options.matcher.fusion = *fusion;
  const m::FusionRule rule = fusion->rule;
  const bool zscore = rule == m::FusionRule::kZScore;
  options.impostors_per_probe = absl::GetFlag(FLAGS_impostors);
  options.seed = absl::GetFlag(FLAGS_seed) + 1;
  options.max_rank = absl::GetFlag(FLAGS_max_rank);
  const absl::Time start = absl::Now();
  options.progress = [start](absl::string_view phase, size_t done,
                             size_t total) {
    if (total < 2000) return;
    std::fprintf(stderr, "eval: %s %zu/%zu (%.0f s)\n",
                 std::string(phase).c_str(), done, total,
                 absl::ToDoubleSeconds(absl::Now() - start));
  };
  absl::StatusOr<m::EvalScores> scores = m::RunEval(*set, options);
  if (!scores.ok()) {
    std::fprintf(stderr, "hawiya eval: %s\n",
                 std::string(scores.status().message()).c_str());
    return kExitInput;
  }
  // The configured fused threshold when every modality is probed, as the
  // matcher derives it.
  float configured = 0.0f;
  {
    absl::StatusOr<std::unique_ptr<m::Matcher>> empty =
        m::Matcher::Open(options.matcher);
    if (!empty.ok()) {
      std::fprintf(stderr, "hawiya eval: %s\n",
                   std::string(empty.status().message()).c_str());
      return kExitInput;
    }
    std::vector<m::Probe> all;
    for (m::Modality modality : modalities) all.push_back({modality, {}});
    configured = (*empty)->FusedThreshold(all);
  }

  // The model's analytic expectations (easy variant, matcher/synthetic.h):
  // impostor cosines are those of independent random directions (exactly
  // m::ModelImpostorTail; fused, m::ModelFusedImpostorTail), and for a
  // gallery of N, FPIR(t) = 1 - (1 - FMR(t))^N. Under zscore only with the
  // model's impostor statistics (mean 0, std 1/sqrt(d)).
  std::vector<int> dimensions;
  bool model_stats = true;
  for (const m::ModalitySpec& spec : options.matcher.modalities) {
    dimensions.push_back(spec.dimension);
    model_stats &= spec.impostor_mean == 0.0f && spec.impostor_std <= 0.0f;
  }
  const bool model = generate && variant == "easy" && (!zscore || model_stats);
  const double n = static_cast<double>(scores->gallery_size);
  auto model_fmr = [&](float t) {
    return dimensions.size() == 1 && !zscore
               ? m::ModelImpostorTail(t, dimensions[0])
               : m::ModelFusedImpostorTail(t, dimensions, rule);
  };
  auto model_fpir = [&](float t) {
    return -std::expm1(n * std::log1p(-model_fmr(t)));
  };
  const auto [genuine_mean, genuine_sd] = MeanSd(scores->genuine);
  const auto [impostor_mean, impostor_sd] = MeanSd(scores->impostor);
  const float t_fmr = m::ThresholdForFmr(*scores, target_fmr);
  const float t_fpir = m::ThresholdForFpir(*scores, target_fpir);
  const size_t max_rank = scores->max_rank;

  std::vector<std::string> described;
  for (const m::ModalitySpec& spec : options.matcher.modalities) {
    described.push_back(
        absl::StrCat(m::ModalityName(spec.modality), " d=", spec.dimension));
  }
  const std::string source =
      generate ? absl::StrCat(
                     "generated ", variant, " seed ", absl::GetFlag(FLAGS_seed),
                     " noise ", absl::GetFlag(FLAGS_noise),
                     missing > 0 ? absl::StrCat(" missing ", missing) : "")
               : absl::GetFlag(FLAGS_set);
  std::printf(
      "hawiya eval: %s, %s, index %s, fusion %s\n",
      absl::StrJoin(described, ", ").c_str(), source.c_str(),
      std::string(m::IndexKindName(options.matcher.modalities[0].index.kind))
          .c_str(),
      std::string(m::FusionRuleName(rule)).c_str());
  std::printf("gallery %zu subjects; %zu mated and %zu non-mated searches\n",
              scores->gallery_size, scores->mated.size(),
              scores->nonmated_best.size());
  const char* scale =
      zscore ? "fused z" : (modalities.size() > 1 ? "fused mean" : "cosine");
  std::printf(
      "1:1 %s scores: genuine %zu (mean %.4f, sd %.4f), impostor %zu (mean "
      "%.4f, sd %.4f)\n",
      scale, scores->genuine.size(), genuine_mean, genuine_sd,
      scores->impostor.size(), impostor_mean, impostor_sd);
  if (modalities.size() > 1 || zscore) {
    for (const m::ModalityComparisons& c : scores->modalities) {
      const auto [g_mean, g_sd] = MeanSd(c.genuine);
      const auto [i_mean, i_sd] = MeanSd(c.impostor);
      std::printf(
          "  %-11s cosines: genuine %zu (mean %.4f, sd %.4f), impostor %zu "
          "(mean %.4f, sd %.4f)\n",
          std::string(m::ModalityName(c.modality)).c_str(), c.genuine.size(),
          g_mean, g_sd, c.impostor.size(), i_mean, i_sd);
    }
  }
  std::printf("\n");
  std::vector<float> thresholds =
      zscore ? std::vector<float>{2.0f, 3.0f, 3.5f, 4.0f, 4.5f,
                                  5.0f, 5.5f, 6.0f, 7.0f, 8.0f}
             : std::vector<float>{0.10f, 0.15f, 0.20f, 0.25f, 0.30f,
                                  0.35f, 0.40f, 0.45f, 0.50f};
  thresholds.push_back(configured);
  thresholds.push_back(t_fmr);
  thresholds.push_back(t_fpir);
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()),
                   thresholds.end());
  std::printf("%-10s %-11s %-11s %-11s %-11s %-11s %-11s%s\n", "threshold",
              "FMR", "FNMR", "FPIR", "FNIR@1",
              absl::StrCat("FNIR@", max_rank).c_str(),
              model ? "FMR(model)" : "", model ? " FPIR(model)" : "");
  for (float t : thresholds) {
    std::printf("%-10.4f %-11.3g %-11.3g %-11.3g %-11.3g %-11.3g", t,
                m::Fmr(*scores, t), m::Fnmr(*scores, t), m::Fpir(*scores, t),
                m::Fnir(*scores, t, 1), m::Fnir(*scores, t, max_rank));
    if (model) std::printf(" %-10.3g %-11.3g", model_fmr(t), model_fpir(t));
    std::printf("%s\n", t == configured ? "  (configured)" : "");
  }
  if (modalities.size() > 1) {
    // Each modality alone (its cosine) beside the fusion, at the FMR target:
    // what fusing buys.
    std::printf("\nat FMR %g, each modality alone and fused (1:1):\n",
                target_fmr);
    std::printf("  %-18s %-10s %-11s %-11s\n", "scores", "threshold", "FMR",
                "FNMR");
    for (const m::ModalityComparisons& c : scores->modalities) {
      const m::EvalScores one = m::OneModality(*scores, c.modality);
      const float t = m::ThresholdForFmr(one, target_fmr);
      std::printf("  %-18s %-10.4f %-11.3g %-11.3g\n",
                  absl::StrCat(m::ModalityName(c.modality), " cosine").c_str(),
                  t, m::Fmr(one, t), m::Fnmr(one, t));
    }
    std::printf("  %-18s %-10.4f %-11.3g %-11.3g\n",
                absl::StrCat("fused ", m::FusionRuleName(rule)).c_str(), t_fmr,
                m::Fmr(*scores, t_fmr), m::Fnmr(*scores, t_fmr));
  }
  std::printf(
      "\nverification_fmr %g: threshold %.4f (FMR %.3g, FNMR %.3g on %zu "
      "impostor / %zu genuine)\n",
      target_fmr, t_fmr, m::Fmr(*scores, t_fmr), m::Fnmr(*scores, t_fmr),
      scores->impostor.size(), scores->genuine.size());
  if (target_fmr * static_cast<double>(scores->impostor.size()) < 10) {
    std::printf(
        "  (fewer than 10 impostor scores above it: raise --impostors or "
        "--mated to resolve this target)\n");
  }
  std::printf(
      "identification_fpir %g at gallery %zu: threshold %.4f (FPIR %.3g, "
      "FNIR@1 %.3g on %zu non-mated / %zu mated)\n",
      target_fpir, scores->gallery_size, t_fpir, m::Fpir(*scores, t_fpir),
      m::Fnir(*scores, t_fpir, 1), scores->nonmated_best.size(),
      scores->mated.size());
  if (target_fpir * static_cast<double>(scores->nonmated_best.size()) < 10) {
    std::printf(
        "  (fewer than 10 non-mated searches above it: raise --nonmated to "
        "resolve this target)\n");
  }

  // Config lines. The measured impostor statistics of each modality (its
  // cosines over the impostor comparisons it took part in).
  const float threshold = std::max(t_fmr, t_fpir);
  std::string stats_lines;
  std::string stats_note;
  for (const m::ModalityComparisons& c : scores->modalities) {
    const m::ImpostorStats measured =
        m::ImpostorStatistics(m::OneModality(*scores, c.modality));
    const std::string name(m::ModalityName(c.modality));
    absl::StrAppendFormat(&stats_lines,
                          " impostor_stats { modality: %s mean: %.5f std: "
                          "%.5f }",
                          name, measured.mean, measured.std);
    // The fused z scores above used the statistics the matcher had (the
    // config's, the gallery's own estimate or the model's); say so if the
    // measured ones differ by more than 5% of a standard deviation.
    const m::ImpostorEstimate& used = c.normalized_with;
    if (zscore && (std::abs(measured.mean - used.mean) > 0.05 * used.std ||
                   std::abs(measured.std / used.std - 1.0) > 0.05)) {
      absl::StrAppendFormat(&stats_note, " %s (%s: mean %.5f std %.5f)", name,
                            m::ImpostorSourceName(used.source), used.mean,
                            used.std);
    }
  }
  std::printf(
      "\n# config lines to paste (one threshold serves Verify and "
      "Identify: the stricter of the two above)\n");
  if (zscore) {
    std::printf(
        "# fused_threshold: the decision threshold on the fused z score, for "
        "any combination of probed modalities;\n"
        "# impostor_stats: each modality's measured impostor cosine mean and "
        "sd, which z-normalise its score\n"
        "fusion { rule: \"zscore\" fused_threshold: %.4f%s }\n",
        threshold, stats_lines.c_str());
    if (!stats_note.empty()) {
      std::printf(
          "# note: the fused scores above were computed with other "
          "statistics:%s;\n"
          "# with the measured ones pasted, re-run with --config to measure "
          "fused_threshold on their scale\n",
          stats_note.c_str());
    }
  } else {
    if (modalities.size() > 1) {
      std::printf(
          "# under rule mean the fused threshold is the mean of the probed "
          "modalities' thresholds:\n"
          "# each set to %.4f makes it %.4f for every combination (whose "
          "FMR still\n"
          "# depends on which modalities were probed; rule zscore keeps one "
          "FMR)\n",
          threshold, threshold);
    } else {
      std::printf("# threshold: the decision threshold on the cosine\n");
    }
    for (m::Modality modality : modalities) {
      std::printf("modalities { modality: %s threshold: %.4f }\n",
                  std::string(m::ModalityName(modality)).c_str(), threshold);
    }
    std::printf(
        "# impostor_stats: measured impostor cosine mean and sd (used by "
        "rule zscore only)\n"
        "fusion {%s }\n",
        stats_lines.c_str());
  }
  std::printf(
      "accuracy_targets { verification_fmr: %g identification_fpir: %g }\n",
      target_fmr, target_fpir);

  if (absl::GetFlag(FLAGS_plots)) {
    std::error_code error;
    std::filesystem::create_directories(absl::GetFlag(FLAGS_out_dir), error);
    std::vector<std::string> names;
    for (m::Modality modality : modalities) {
      names.push_back(std::string(m::ModalityName(modality)));
    }
    const std::string what =
        absl::StrCat(absl::StrJoin(names, "+"),
                     modalities.size() > 1 || zscore
                         ? absl::StrCat(" ", m::FusionRuleName(rule))
                         : "");
    const std::string title =
        generate ? absl::StrCat(what, " synthetic ", variant,
                                " s=", absl::GetFlag(FLAGS_noise), ", ",
                                scores->gallery_size, " identities")
                 : absl::StrCat(what, " ", absl::GetFlag(FLAGS_set));
    const absl::Status written =
        m::WriteCurves(*scores, absl::GetFlag(FLAGS_out_dir),
                       absl::GetFlag(FLAGS_prefix), title);
    if (!written.ok()) {
      std::fprintf(stderr, "hawiya eval: %s\n",
                   std::string(written.message()).c_str());
      return kExitInput;
    }
  }
  return 0;
}

int DevPki() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Usage("dev-pki: --out");
  const absl::Status status = hawiya::services::WriteDevPki(out);
  if (!status.ok()) {
    std::fprintf(stderr, "hawiya: dev-pki: %s\n",
                 std::string(status.message()).c_str());
    return absl::IsAlreadyExists(status) ? kExitUsage : kExitInput;
  }
  std::fprintf(stderr,
               "hawiya: wrote a development PKI to %s (never for "
               "production)\n",
               out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hawiya::services::HandleVersion(argc, argv, "hawiya");
  hawiya::services::HandleHelp(argc, argv, kUsage);
  if (const std::string problem = FlagProblem(argc, argv); !problem.empty()) {
    return Usage(problem);
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // The groups take a subcommand; every other command stands alone.
  const std::map<std::string, std::string>& groups = CommandGroups();
  const bool group = args.size() >= 2 && groups.count(args[1]) > 0;
  if (args.size() != (group ? 3u : 2u)) {
    if (!group) UsageCommand().clear();
    return Usage(
        args.size() < 2 ? "missing COMMAND"
        : group ? absl::StrCat(args[1], ": one subcommand ", groups.at(args[1]))
                : "one COMMAND only");
  }
  const std::string command =
      group ? absl::StrCat(args[1], " ", args[2]) : std::string(args[1]);
  if (command == "admin gen-key") return GenKey();
  if (command == "admin backup") return Backup();
  if (command == "admin restore") return Restore();
  if (command == "audit verify" && !absl::GetFlag(FLAGS_data_dir).empty()) {
    return AuditVerifyOffline();
  }
  if (command == "receipt verify") return ReceiptVerify();
  if (command == "synth") return Synth();
  if (command == "synth-persons") return SynthPersons();
  if (command == "dev-pki") return DevPki();
  if (command == "eval") return Eval();
  const std::map<std::string, int (*)(Client&)> calls = {
      {"enroll", Enroll},
      {"get", Get},
      {"verify", Verify},
      {"identify", Identify},
      {"list", List},
      {"delete", Delete},
      {"stats", Stats},
      {"health", Health},
      {"import", Import},
      {"admin rotate-key", RotateKey},
      {"admin signing-keys", SigningKeys},
      {"admin rotate-signing-key", RotateSigningKey},
      {"partner verify", PartnerVerify},
      {"audit list", AuditList},
      {"audit verify", AuditVerify},
      {"cases list", CasesList},
      {"cases get", CasesGet},
      {"cases decide", CasesDecide}};
  auto call = calls.find(command);
  if (call == calls.end()) {
    UsageCommand() = group ? std::string(args[1]) : "";
    return Usage("unknown COMMAND '" + command + "'");
  }
  grpc::ChannelArguments channel_args;
  int exit_code = 0;
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      Credentials(command, &channel_args, &exit_code);
  if (credentials == nullptr) return exit_code;
  Client client(absl::GetFlag(FLAGS_server), credentials, channel_args);
  return call->second(client);
}
