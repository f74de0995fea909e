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

}  // namespace hawiya::testing
