#include "tests/testing/fixtures.h"

#include "absl/strings/str_cat.h"
#include "services/synthetic_requests.h"

namespace hawiya::testing {

v1::EnrollRequest MakeEnrollRequest(const matcher::SyntheticModel& model,
                                    uint64_t n) {
  v1::EnrollRequest request = services::SyntheticEnrollRequest(model, n);
  request.set_request_id(absl::StrCat("enroll-", n));
  return request;
}

v1::EnrollRequest EnrollRequestWithFaces(const matcher::SyntheticModel& model,
                                         int faces) {
  v1::EnrollRequest request = MakeEnrollRequest(model, 1);
  request.clear_templates();
  for (int i = 0; i < faces; ++i) {
    *request.add_templates() =
        services::SyntheticFaceTemplate(model, 1, static_cast<uint64_t>(i));
  }
  return request;
}

}  // namespace hawiya::testing
