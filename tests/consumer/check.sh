#!/usr/bin/env bash
# check.sh PROGRAM: runs a build of the consumer (bounded) in a private runtime directory, checks
# its output against consumer.expect, then audits what it left: no process of its tree alive and
# no socket file in its runtime directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
program=$1
version=$(sed -n 's/^project(tractor_cpp VERSION \([0-9.]*\).*/\1/p' "$here/../../CMakeLists.txt")
runtime=$(mktemp -d)
trap 'rm -rf "$runtime"' EXIT

status=0
output=$(XDG_RUNTIME_DIR="$runtime" timeout 60 "$program" 2>&1) || status=$?
expected=$(sed "s/@VERSION@/$version/" "$here/consumer.expect")
if [ "$status" -ne 0 ] || [ "$output" != "$expected" ]; then
  echo "$program: exit $status, output:" >&2
  echo "$output" >&2
  echo "expected:" >&2
  echo "$expected" >&2
  exit 1
fi

# The tree's processes inherit XDG_RUNTIME_DIR: any process still carrying this one is a leak.
leaks=()
for environ in /proc/[0-9]*/environ; do
  # (Kernel threads and processes that ended meanwhile have nothing to read.)
  if { tr '\0' '\n' < "$environ"; } 2>/dev/null | grep -qx "XDG_RUNTIME_DIR=$runtime"; then
    pid=${environ#/proc/}
    leaks+=("pid ${pid%/environ}")
  fi
done
sockets=$(find "$runtime" -type s)
if [ ${#leaks[@]} -gt 0 ] || [ -n "$sockets" ]; then
  echo "$program left behind: ${leaks[*]:-} $sockets" >&2
  exit 1
fi
echo "$program: output as expected, nothing left behind"
