// ParseEnrollRequestJson against the reference it must equal, protobuf's
// JsonStringToMessage: the same message bit for bit (floats compared through
// the wire encoding, so -0.0 and 0.0 differ) or the same error.
#include "services/enroll_json.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "hawiya/v1/enrollment.pb.h"
#include "matcher/synthetic.h"
#include "services/synthetic_requests.h"

namespace hawiya {
namespace {

using services::ParseEnrollRequestJson;
using services::ParseEnrollRequestJsonSlow;

std::string Bytes(const v1::EnrollRequest& request) {
  std::string bytes;
  EXPECT_TRUE(request.SerializeToString(&bytes));
  return bytes;
}

struct Outcome {
  absl::Status status;
  std::string bytes;  // the message's wire form when status is OK
  bool fast = false;
};

Outcome Fast(absl::string_view json) {
  v1::EnrollRequest request;
  Outcome outcome;
  outcome.status = ParseEnrollRequestJson(json, &request, &outcome.fast);
  if (outcome.status.ok()) outcome.bytes = Bytes(request);
  return outcome;
}

Outcome Slow(absl::string_view json) {
  v1::EnrollRequest request;
  Outcome outcome;
  outcome.status = ParseEnrollRequestJsonSlow(json, &request);
  if (outcome.status.ok()) outcome.bytes = Bytes(request);
  return outcome;
}

// Same status (code and message) and same message as protobuf; returns
// whether the fast path took the line.
bool ExpectSameAsProtobuf(absl::string_view json) {
  const Outcome fast = Fast(json);
  const Outcome slow = Slow(json);
  EXPECT_EQ(fast.status, slow.status) << json;
  EXPECT_EQ(fast.bytes, slow.bytes) << json;
  return fast.fast;
}

std::string SynthLine(
    uint64_t n, const google::protobuf::util::JsonPrintOptions& options = {}) {
  static const matcher::SyntheticModel* const model =
      new matcher::SyntheticModel(matcher::SyntheticOptions{});
  v1::EnrollRequest request = services::SyntheticEnrollRequest(*model, n);
  request.set_request_id(absl::StrCat("synth-42-", n));
  std::string json;
  EXPECT_TRUE(
      google::protobuf::util::MessageToJsonString(request, &json, options)
          .ok());
  return json;
}

// A line with the given text as the vector of one face template.
std::string WithVector(absl::string_view vector) {
  return absl::StrCat(
      R"({"requestId":"r","person":{"nationalId":"N1"},"templates":[)",
      R"({"modality":"FACE","vector":)", vector, R"(,"quality":90}]})");
}

TEST(EnrollJsonTest, SynthPersonsLinesTakeTheFastPathAndMatch) {
  // synth-persons output, as `hawiya import` reads it.
  for (uint64_t n = 0; n < 300; ++n) {
    EXPECT_TRUE(ExpectSameAsProtobuf(SynthLine(n))) << n;
  }
  // Other printers' layouts: indented, snake_case names.
  google::protobuf::util::JsonPrintOptions pretty;
  pretty.add_whitespace = true;
  pretty.preserve_proto_field_names = true;
  pretty.always_print_primitive_fields = true;
  for (uint64_t n = 300; n < 320; ++n) {
    std::string json = SynthLine(n, pretty);
    // One line per request, but keep the spaces and tabs.
    json = absl::StrReplaceAll(json, {{"\n", " "}, {"  ", "\t"}});
    EXPECT_TRUE(ExpectSameAsProtobuf(json)) << n;
  }
}

TEST(EnrollJsonTest, RandomNumberSpellingsMatchProtobuf) {
  absl::BitGen gen;
  for (int line = 0; line < 400; ++line) {
    std::vector<std::string> numbers;
    for (int i = 0; i < 512; ++i) {
      const float f = absl::Gaussian<float>(gen, 0.0f, 0.05f) *
                      std::pow(10.0f, absl::Uniform(gen, -30, 31));
      const double next = std::nextafter(static_cast<double>(f), 1.0);
      switch (absl::Uniform(gen, 0, 11)) {
        case 9:
          // 1-16 significant digits: both sides of the exact fast path.
          numbers.push_back(
              absl::StrFormat("%.*e", absl::Uniform(gen, 0, 16), f));
          break;
        case 10:
          numbers.push_back(
              absl::StrFormat("%.*f", absl::Uniform(gen, 1, 30), f));
          break;
        case 0:
          numbers.push_back(absl::StrFormat("%.9g", f));
          break;
        case 1:
          numbers.push_back(absl::StrFormat("%.17g", f));
          break;
        case 2:
          numbers.push_back(absl::StrFormat("%.6E", f));
          break;
        case 3:
          // Halfway between two floats, where double rounding would bite.
          numbers.push_back(absl::StrFormat(
              "%.25g", (static_cast<double>(f) +
                        std::nextafter(f, std::numeric_limits<float>::max())) /
                           2));
          break;
        case 4:
          numbers.push_back(absl::StrFormat("%.20f", next));
          break;
        case 5:
          numbers.push_back(
              absl::StrCat(absl::Uniform(gen, -20000000, 20000000)));
          break;
        case 6: {
          // Long digit strings with an exponent.
          std::string digits = absl::StrCat(absl::Uniform(gen, 1, 10));
          const int length = absl::Uniform(gen, 1, 30);
          for (int d = 0; d < length; ++d) {
            absl::StrAppend(&digits, absl::Uniform(gen, 0, 10));
          }
          numbers.push_back(absl::StrCat(
              absl::Bernoulli(gen, 0.5) ? "-" : "", digits.substr(0, 1), ".",
              digits.substr(1), "e", absl::Uniform(gen, -45, 39)));
          break;
        }
        case 7:
          numbers.push_back(
              absl::StrCat(absl::Bernoulli(gen, 0.5) ? "-" : "", "0",
                           absl::Bernoulli(gen, 0.5) ? ".0" : "",
                           absl::Bernoulli(gen, 0.5) ? "e7" : ""));
          break;
        default:
          numbers.push_back(absl::StrFormat("%g", f));
      }
    }
    ExpectSameAsProtobuf(
        WithVector(absl::StrCat("[", absl::StrJoin(numbers, ","), "]")));
  }
}

TEST(EnrollJsonTest, NumberEdgeCases) {
  // Taken by the fast path: exponents, signed zeros, integers.
  for (const char* vector :
       {"[1e-3,1E+2,-2.5e-10,0.1e1,5E0]", "[-0]", "[-0.0]", "[0,-0,0.0,-0.0]",
        "[-0e5]", "[1,-7,9999999,-9999999]", "[3.4028234e38,-3.4028234e38]",
        "[1.17549435e-38]", "[1e-50]", "[ 1 , 2 ,\t3 ]", "[0.1]", "[]"}) {
    EXPECT_TRUE(ExpectSameAsProtobuf(WithVector(vector))) << vector;
  }
  // Left to protobuf (accepted or refused), with the same result.
  for (const char* vector : {"[16777217]",
                             "[12345678901234567890]",
                             "[-9223372036854775809]",
                             "[1e39]",
                             "[-1e39]",
                             "[3.4028235e38]",
                             "[1e309]",
                             "[4.9e-324]",
                             "[1e-400]",
                             "[\"NaN\"]",
                             "[\"Infinity\"]",
                             "[\"-Infinity\"]",
                             "[\"1.5\"]",
                             "[\" 1.5\"]",
                             "[NaN]",
                             "[Infinity]",
                             "[1.]",
                             "[.5]",
                             "[01]",
                             "[-01]",
                             "[-]",
                             "[1e]",
                             "[1e+]",
                             "[+1]",
                             "[0x10]",
                             "[1.5.5]",
                             "[1-2]",
                             "[1,]",
                             "[1,,2]",
                             "[,1]",
                             "[1 2]",
                             "[true]",
                             "[null]",
                             "[[1]]",
                             "[{}]",
                             "null",
                             "\"AAAA\"",
                             "1",
                             "{}",
                             "[1",
                             "[1e5x]",
                             "[0.1234567/]",
                             "[0.12345678:]",
                             "[0.1234567:8]"}) {
    EXPECT_FALSE(ExpectSameAsProtobuf(WithVector(vector))) << vector;
  }
}

TEST(EnrollJsonTest, LayoutAndTextEdgeCases) {
  const std::string vector = "[0.5,-0.25,1e-2]";
  // Taken by the fast path.
  for (
      const std::string& json : std::vector<std::string>{
          // Whitespace everywhere JSON allows it.
          absl::StrCat(" \t{ \"requestId\" : \"r\" ,\r\"templates\" :\t[ { "
                       "\"vector\" : ",
                       vector, " } ] } \r"),
          // Templates before the person; vector before the other fields.
          absl::StrCat(R"({"templates":[{"vector":)", vector,
                       R"(,"modality":"FACE"}],"person":{"nationalId":"N1"}})"),
          // Names with escaped quotes and backslashes, Arabic text, a
          // string that looks like a vector, every short escape.
          absl::StrCat(
              R"({"person":{"nameAr":{"given":"محمد \"أبو\" \\ علي",)",
              R"("family":"الصباح"},)",
              R"("nameLatin":{"given":"Mo\"ham\\\"med","family":"]}\"}"},)",
              R"("placeOfBirth":"a\/b\bc\fd\ne\rf\tg"},)",
              R"("templates":[{"algorithm":"\"vector\":[9,9]","vector":)",
              vector, R"(}]})"),
          // Several templates, one without a vector, one with an empty one.
          absl::StrCat(R"({"templates":[{"vector":)", vector,
                       R"(},{"modality":"IRIS"},{"vector":[]},{"vector":)",
                       "[2,3]", R"(}]})"),
          // snake_case names, empty objects and arrays, default values.
          absl::StrCat(R"({"request_id":"x","templates":[{"vector":)", vector,
                       R"(,"position":0}],"person":{"name_ar":{},)",
                       R"("documents":[],"date_of_birth":{"year":0},)",
                       R"("sex":"SEX_UNSPECIFIED","national_id":""}})"),
          // Integers at the ends of their ranges, "-0", enums by name.
          R"({"person":{"dateOfBirth":{"year":-2147483648,"month":2147483647,)"
          R"("day":-0},"version":-9223372036854775808,"sex":"MALE",)"
          R"("documents":[{"type":"PASSPORT"},{}],"state":"REVOKED"},)"
          R"("templates":[{"position":4294967295,"quality":0}]})",
          R"({"person":{"version":9223372036854775807}})",
          // Proto3 JSON's quoted 64-bit integers, and quoted 32-bit ones.
          R"({"person":{"version":"5","dateOfBirth":{"year":"1980","day":"-0"}},)"
          R"("templates":[{"quality":"90","position":"0"}]})",
          R"({"person":{"version":"-9223372036854775808"}})",
      }) {
    EXPECT_TRUE(ExpectSameAsProtobuf(json)) << json;
  }
  // Left to protobuf, with the same result.
  for (const std::string& json : std::vector<std::string>{
           // Escaped keys.
           absl::StrCat(R"({"templates":[{"vect\u006fr":)", vector, "}]}"),
           absl::StrCat(R"({"templat\u0065s":[{"vector":)", vector, "}]}"),
           // \u escapes in values, surrogate pairs and lone halves.
           R"({"person":{"nameAr":{"family":"\u0627\u0644\u0635"}}})",
           R"({"requestId":"\ud83d\ude00"})",
           R"({"requestId":"\uD800"})",
           R"({"requestId":"\u0000"})",
           // Invalid escapes and raw control characters.
           R"({"requestId":"\x41"})",
           R"({"requestId":"\'"})",
           "{\"requestId\":\"a\tb\"}",
           // Invalid UTF-8: a broken sequence, an overlong form, a surrogate.
           "{\"requestId\":\"bad \xC3\x28\"}",
           "{\"requestId\":\"\xC0\xAF\"}",
           "{\"requestId\":\"\xED\xA0\x80\"}",
           // Repeated keys, in either spelling.
           absl::StrCat(R"({"templates":[{"vector":)", vector,
                        R"(,"vector":[1]}]})"),
           absl::StrCat(R"({"templates":[{"vector":)", vector,
                        R"(}],"templates":[{"vector":[1]}]})"),
           R"({"requestId":"a","request_id":"b"})",
           R"({"person":{"nationalId":"a"},"person":{"issuingCountry":"b"}})",
           // Fields EnrollRequest does not have there.
           absl::StrCat(R"({"person":{"templates":[{"vector":)", vector,
                        "}]}}"),
           absl::StrCat(R"({"vector":)", vector, "}"),
           absl::StrCat(R"({"templates":[{"person":{"vector":)", vector,
                        "}}]}"),
           R"({"unknownField":1})",
           R"({"RequestId":"x"})",
           // Nulls.
           absl::StrCat(R"({"templates":[null,{"vector":)", vector, "}]}"),
           R"({"templates":null})",
           R"({"templates":[{"vector":null}]})",
           R"({"person":null})",
           R"({"requestId":null})",
           R"({"person":{"sex":null}})",
           // Values protobuf converts or refuses.
           R"({"person":{"sex":"male"}})",
           R"({"person":{"sex":2}})",
           R"({"person":{"sex":"EAR"}})",
           R"({"person":{"sex":true}})",
           R"({"person":{"version":5.0}})",
           R"({"person":{"version":9223372036854775808}})",
           R"({"person":{"version":-9223372036854775809}})",
           R"({"person":{"dateOfBirth":{"year":1e3}}})",
           R"({"person":{"dateOfBirth":{"year":2147483648}}})",
           R"({"person":{"dateOfBirth":{"year":-2147483649}}})",
           R"({"templates":[{"quality":-1}]})",
           R"({"templates":[{"quality":-0}]})",
           R"({"templates":[{"position":4294967296}]})",
           R"({"templates":[{"quality":"+90"}]})",
           R"({"templates":[{"position":"-0"}]})",
           R"({"templates":[{"quality":" 90"}]})",
           R"({"templates":[{"quality":"90 "}]})",
           R"({"templates":[{"quality":"090"}]})",
           R"({"templates":[{"quality":"9e1"}]})",
           R"({"templates":[{"quality":""}]})",
           R"({"templates":[{"quality":"\u0039"}]})",
           R"({"templates":[{"vector":["1"]}]})",
           R"({"requestId":5})",
           R"({"requestId":true})",
           R"({"person":{"createTime":"2020-01-01T00:00:00Z"}})",
           R"({"person":{"createTime":{}}})",
           R"({"person":{"documents":{}}})",
           R"({"person":{"nameAr":[]}})",
           R"({"person":{"documents":[null]}})",
           // Lenient syntax protobuf takes or refuses.
           absl::StrCat(R"({'templates':[{"vector":)", vector, "}]}"),
           absl::StrCat(R"({templates:[{"vector":)", vector, "}]}"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, ",}]}"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, "},]}"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, "}],}"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, "}]},"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, "}]} x"),
           absl::StrCat(R"({"templates":[{"vector":)", vector, "}]}{}"),
           absl::StrCat("\xEF\xBB\xBF", R"({"templates":[{"vector":)", vector,
                        "}]}"),
           absl::StrCat("\v{\"templates\":[{\"vector\":", vector, "}]}"),
           R"({"requestId" "x"})",
           R"({"requestId":"x" "person":{}})",
           R"({"person":{"sex":"MALE"}} )"
           "\f",
           // Truncated lines and other texts.
           absl::StrCat(R"({"templates":[{"vector":)", vector, "}]"),
           absl::StrCat(R"({"templates":[{"vector":)", vector),
           R"({"requestId":"x)",
           R"({"person": )",
           "",
           "   ",
           "[]",
           "null",
           "\"x\"",
           "1",
           std::string(200, '['),
           absl::StrCat(std::string(80, '['), std::string(80, ']')),
       }) {
    EXPECT_FALSE(ExpectSameAsProtobuf(json)) << json;
  }
}

TEST(EnrollJsonTest, DeepNestingIsLeftToProtobuf) {
  std::string deep = R"({"person":{"nameAr":)";
  for (int i = 0; i < 120; ++i) deep += R"({"a":)";
  deep += "1";
  for (int i = 0; i < 120; ++i) deep += "}";
  deep += R"(},"templates":[{"vector":[1]}]})";
  EXPECT_FALSE(ExpectSameAsProtobuf(deep));
}

}  // namespace
}  // namespace hawiya
