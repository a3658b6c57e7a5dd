// streamq command-line entry point (placeholder until the CLI lands).
#include <cstdio>
int main() { std::puts("streamq"); return 0; }
