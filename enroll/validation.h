// Validation of client input, exactly as DESIGN.md lists it. Every error is
// INVALID_ARGUMENT with a message that starts with the field path, e.g.
// "person.date_of_birth: month 13 out of range".
#ifndef HAWIYA_ENROLL_VALIDATION_H_
#define HAWIYA_ENROLL_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hawiya/v1/types.pb.h"
#include "matcher/matcher.h"

namespace hawiya::enroll {

// national_id: 1-32 of [0-9A-Za-z-].
absl::Status ValidateNationalId(absl::string_view field,
                                absl::string_view national_id);
// Three upper-case ASCII letters.
absl::Status ValidateCountryCode(absl::string_view field,
                                 absl::string_view code);
// A real calendar date, not after `today`, not before 1900-01-01.
absl::Status ValidateDate(absl::string_view field, const hawiya::v1::Date& date,
                          absl::Time now);

// The client-settable fields of a person (output-only fields are ignored):
// national_id, issuing_country, a given and a family name in at least one
// script (valid UTF-8, <= 128 bytes each part, Arabic names in Arabic
// script), date_of_birth (required), nationality if set, enums in range,
// documents (number, issuing_country, type, expiry_date real if set).
absl::Status ValidatePerson(absl::string_view field,
                            const hawiya::v1::Person& person, absl::Time now);

// Templates: modality configured in `matcher`, dimension equal to the
// configured one, every component finite, norm > 0, quality 0-100.
// Errors name "<field>[i].<sub-field>".
absl::Status ValidateTemplates(absl::string_view field,
                               absl::Span<const hawiya::v1::Template> templates,
                               const matcher::Matcher& matcher);

}  // namespace hawiya::enroll

#endif  // HAWIYA_ENROLL_VALIDATION_H_
