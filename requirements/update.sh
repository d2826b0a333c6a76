#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml (CPython 3.11, Linux x86_64):
#   requirements/lock.txt       core + [embedded,bench,test]: ./run's .venv and CI
#   requirements/lock-core.txt  core only: the production image (deploy/Dockerfile)
# Versions already in lock.txt are kept unless pyproject.toml's ranges exclude them; to move
# one on, name it:  requirements/update.sh --upgrade-package numba   (or --upgrade: all).
# Uses uv's resolver (`uv` on PATH, or $UV; else a pinned uv in a temporary venv).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
UV=${UV:-$(command -v uv || true)}
if [ -z "$UV" ]; then
  tools=$(mktemp -d)
  trap 'rm -rf "$tools"' EXIT
  "${PYTHON:-python3}" -m venv "$tools/venv"
  "$tools/venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
  UV=$tools/venv/bin/uv
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
        --custom-compile-command requirements/update.sh --quiet)
"$UV" pip compile pyproject.toml --extra embedded --extra bench --extra test "${common[@]}" \
  --output-file requirements/lock.txt "$@"
# The core lock is a subset of the full one at the same versions: lock.txt constrains it.
pins=$(mktemp)
sed -n 's/^\([A-Za-z0-9._-]*==[^ ;]*\).*/\1/p' requirements/lock.txt >"$pins"
"$UV" pip compile pyproject.toml "${common[@]}" --constraint "$pins" --no-annotate \
  --output-file requirements/lock-core.txt
rm -f "$pins"
echo "requirements/lock.txt: $(grep -c '^[A-Za-z]' requirements/lock.txt) packages;" \
     "requirements/lock-core.txt: $(grep -c '^[A-Za-z]' requirements/lock-core.txt)"
