#!/usr/bin/env bash
# Installs streamq's build dependencies from Debian. Idempotent: prints nothing
# and touches nothing when every package is already present.
set -euo pipefail

# Why each package is here:
#   cmake, g++, make, pkg-config  - the build itself
#   libtbb-dev                    - oneTBB parallel loops in the CPU backend
#   libboost-program-options-dev  - the streamq CLI's flag parsing
#   libgtest-dev                  - the test suite
#   libopenblas-dev, liblapacke-dev - CPU GEMM (cblas) and Cholesky/inverse (LAPACKE)
#   nlohmann-json3-dev            - safetensors headers, config.json, reports
#   libzstd-dev                   - compressed activation store
#   liburing-dev                  - io_uring reads/writes of the activation store
#   libxxhash-dev                 - checksums of stored chunks and checkpoint files
#   libpcre2-dev                  - tokenizer pre-tokenizer regexes (Unicode properties)
#   libicu-dev                    - tokenizer normalizers (NFC/NFD/NFKC/NFKD, Unicode lowercase)
#   libsleef-dev                  - vectorized float pow for the MSE clip search's candidate bound
#   python3-numpy                 - the gptq_export_numpy test: an independent numpy reader of
#                                   exported GPTQ checkpoints (tests/export/gptq_unpack.py)
packages=(cmake g++ make pkg-config libtbb-dev libboost-program-options-dev libgtest-dev
          libopenblas-dev liblapacke-dev nlohmann-json3-dev libzstd-dev liburing-dev
          libxxhash-dev libpcre2-dev libicu-dev libsleef-dev python3-numpy)
# --fuzz (scripts/fuzz.sh): Debian's default clang and its runtime libraries,
# which hold libFuzzer and the sanitizers' runtimes. Not needed by CI, whose
# sanitizer build (scripts/sanitize.sh) uses g++ and replays the fuzz corpora
# without libFuzzer.
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
