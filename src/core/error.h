// The one error path of streamq: library code throws these, `main` maps them
// to exit codes (InputError -> 2, anything else -> 1). Never exit() from a library.
#pragma once

#include <stdexcept>
#include <string>

namespace streamq {

// Bad input or usage: a missing/corrupt file, a wrong flag, a tensor of the
// wrong shape. The message must name the file, tensor or flag involved.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
};

// A memory request a budget cannot grant (host --host-mem-limit, device
// --gpu-mem-limit). An InputError because the remedy is the user's (a larger
// limit, a smaller chunk): the CLI exits 2. The message names what asked,
// how much, and which flag to raise.
class BudgetError : public InputError {
 public:
  explicit BudgetError(const std::string& what) : InputError(what) {}
};

// A failure of streamq itself or of the machine (I/O error, numerical failure
// that retries could not fix). Also carries context in its message.
class InternalError : public std::runtime_error {
 public:
  explicit InternalError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace streamq
