#!/usr/bin/env bash
# Regenerate the locks that the README's two commands install, from the ranges in this folder:
#   requirements/core.in -> requirements.txt        requirements/dev.in -> requirements-dev.txt
# Needs pip-tools (`pip install pip-tools`, in any environment) and pip's access to the local torch 2.13.0 CPU
# build. `--upgrade` takes the newest versions the ranges allow; without it, the versions already locked are kept
# where the ranges still allow them. Afterwards: run the suite in a fresh environment (.ci/run) and commit the locks.
set -euo pipefail
cd "$(dirname "$0")/.."
compile() {  # compile IN OUT: one lock; torch's local CPU tag (+cpu) dropped so the CUDA build of 2.13.0 satisfies it
  CUSTOM_COMPILE_COMMAND="requirements/lock.sh" pip-compile --quiet --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links "${@:3}" --output-file "$2" "$1"
  sed -i 's/^torch==\([0-9.]*\)+cpu$/torch==\1/' "$2"
}
compile requirements/dev.in requirements-dev.txt "$@"
compile requirements/core.in requirements.txt --constraint requirements-dev.txt  # the same versions as the tests ran
