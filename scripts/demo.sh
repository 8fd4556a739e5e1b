#!/usr/bin/env bash
# make demo: the main job.  Until the LoRA issue lands it inspects the
# stories260K model when ../shared is present.
set -euo pipefail
sh=${ET_SHARED:-../shared}
if [ -f "$sh/models/stories260K/stories260K.gguf" ]; then
  ./edgetune inspect "$sh/models/stories260K/stories260K.gguf"
else
  echo "demo: $sh not found; nothing to show yet"
fi
