#!/usr/bin/env bash
# Re-resolve the hash locks from pyproject.toml, for what CI and the Dockerfile run: Linux
# x86_64, CPython 3.11. Needs uv (pip install uv). How and when: docs/contract.md, 9.
set -euo pipefail
cd "$(dirname "$0")/.."
# The build backend is locked too, so that `pip install --no-build-isolation` builds leadstream
# with the hashed hatchling instead of fetching one unchecked; editables is what hatchling
# asks for to build it editable (`pip install -e .`).
build=$(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
build="$build"$'\n'editables
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
    --custom-compile-command requirements/refresh.sh "$@")
echo "$build" | uv pip compile pyproject.toml - "${common[@]}" -o requirements/runtime.txt
# The test lock is the runtime lock plus the test extra, at the same versions.
echo "$build" | uv pip compile pyproject.toml - --extra test -c requirements/runtime.txt \
    "${common[@]}" -o requirements/test.txt
