// PCRE2 wrapper for the tokenizer (see regex.h). Match scratch
// (match data, JIT stack) is per thread so one Regex serves concurrent encodes.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "src/tokenizer/regex.h"

#include <pcre2.h>

#include "src/core/error.h"
#include "src/tokenizer/utf8.h"

namespace streamq::tok {

namespace {

// A generous JIT stack: patterns like \s+(?!\S) on long whitespace runs
// overflow PCRE2's 32 KiB default.
constexpr size_t kJitStackMax = 8u << 20;

struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, kJitStackMax, nullptr);
    if (!data || !context || !jit_stack) throw InternalError("tokenizer regex: out of memory for PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_at = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_at, nullptr);
  if (!code)
    throw InputError("tokenizer regex '" + pattern + "' does not compile at offset " + std::to_string(err_at) +
                     ": " + pcre2_message(err));
  // JIT is an optimisation only: without it pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  auto* code = static_cast<pcre2_code*>(code_);
  MatchScratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t at = 0;
  while (at <= text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), at, PCRE2_NO_UTF_CHECK, s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      throw InputError("tokenizer regex '" + pattern_ + "' failed on a text of " + std::to_string(text.size()) +
                       " bytes: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
    const size_t start = ov[0], end = ov[1];
    if (end > start) {
      out.emplace_back(start, end);
      at = end;
    } else {
      // An empty match yields nothing (the reference drops empty pieces);
      // step one character so the scan moves on.
      if (start >= text.size()) break;
      at = start + utf8_len(static_cast<unsigned char>(text[start]));
    }
  }
  return out;
}

bool Regex::matches_at(std::string_view text, size_t offset) const {
  MatchScratch& s = scratch();
  const int rc = pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(text.data()),
                             text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, s.data, s.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw InputError("tokenizer regex '" + pattern_ + "' failed: " + pcre2_message(rc));
  return true;
}

}  // namespace streamq::tok
