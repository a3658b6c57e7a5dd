// Hadamard matrices shipped as data (hadamard_tables.cpp names the source):
// the orders real models need that hadamard.cpp's constructions do not reach.
#pragma once

#include <cstdint>

namespace streamq {

// m rows of m characters, '+' for +1 and '-' for -1; nullptr for an order
// not shipped (52, 156 and 172 are).
const char* const* shipped_hadamard_rows(int64_t m);

}  // namespace streamq
