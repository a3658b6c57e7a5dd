// What a resumed job (--workdir) may run with that differs from the run that
// started it, as data (exllamav3's (arg, can_override, default) list): flags
// that decide the output bytes are frozen in the manifest and a rerun with
// another value is refused naming the field; operational flags may change.
// `streamq status` prints this table; tests/tools/test_resume_rules.cpp checks
// that every `streamq quantize` flag has a row.
#pragma once

#include <span>
#include <string>

namespace streamq {

struct ResumeRule {
  const char* flag;   // "--bits"
  bool can_override;  // a resumed job may run with another value
  const char* why;    // what it decides (fixed) or why any value gives the same bytes
};

std::span<const ResumeRule> resume_rules();
// The row of `flag` ("--bits"), or null.
const ResumeRule* find_resume_rule(const std::string& flag);
// The table as `streamq status` prints it: the flags that may change on
// resume, then the frozen ones, each with its reason.
std::string describe_resume_rules();

}  // namespace streamq
