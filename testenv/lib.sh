# shellcheck shell=bash
# Shared settings for testenv/build, testenv/up and testenv/down: pinned versions and cache paths.
# Sourced, never executed.

K8S_VERSION="${CAPSTAN_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${CAPSTAN_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${CAPSTAN_KWOK_VERSION:-v0.7.0}"

CAPSTAN_CACHE="${CAPSTAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}"
TESTENV_CACHE="$CAPSTAN_CACHE/testenv"
K8S_BIN="$TESTENV_CACHE/k8s-$K8S_VERSION/bin"
ETCD_BIN="$TESTENV_CACHE/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$TESTENV_CACHE/kwok-$KWOK_VERSION/bin"

testenv_log() { printf 'testenv: %s\n' "$*" >&2; }
testenv_die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# run_step NAME FIX CMD...: runs CMD with its output in a log under $STEP_LOG_DIR; on failure names the
# step, the log's last lines and the fix instead of printing a wall of Go output. $STEP_OWNER names the
# script in messages.
run_step() {
  local name="$1" fix="$2"; shift 2
  mkdir -p "$STEP_LOG_DIR"
  local log="$STEP_LOG_DIR/$(date +%Y%m%dT%H%M%S)-${name//[^A-Za-z0-9.]/-}.log"
  testenv_log "$name ..."
  local start=$SECONDS
  if ! "$@" >"$log" 2>&1; then
    printf '\n%s: step "%s" failed.\n' "$STEP_OWNER" "$name" >&2
    printf '  last lines of %s:\n' "$log" >&2
    tail -n 8 "$log" | sed 's/^/    /' >&2
    printf '  fix: %s\n' "$fix" >&2
    exit 1
  fi
  testenv_log "$name done in $((SECONDS - start))s"
}
