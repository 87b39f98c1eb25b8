// Compiles one C example as C++17 (EXAMPLE_SOURCE names it): the examples are written in the
// common subset of C and C++, so a C++ agent can copy them as they are.
#include EXAMPLE_SOURCE
