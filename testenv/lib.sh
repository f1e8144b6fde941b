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
