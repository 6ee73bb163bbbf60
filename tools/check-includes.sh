#!/usr/bin/env bash
# tools/check-includes.sh [--folders | --modules | --all] [ROOT]
#
# Fails if the runtime's includes form a cycle: between folders (kj-runtime/async, wire, net and
# actor, spawn, supervise, devx: the layers, of which a lower one never includes a higher one)
# and between modules (a module is name.h with its name.cpp and name-internal.h), and that no
# installed header includes an -internal.h one. All three by default. A cycle is printed with the #include lines that make it. ROOT is the source tree (by
# default the one this script is in). Needs only bash, grep, sed, awk and coreutils' tsort;
# build.sh runs it before building, and tests/check-includes-test.sh checks that it finds cycles.
set -euo pipefail
what=${1:---all}
cd "${2:-$(dirname "$0")/..}"

module() { local m=${1%.*}; echo "${m%-internal}"; }

edges() {
  # "from-module to-module file:line" for every include of another module of ours.
  local f n target
  for f in $(find kj-runtime spawn supervise devx \( -name '*.h' -o -name '*.cpp' \) 2>/dev/null |
             sort); do
    while IFS=: read -r n target; do
      target=${target#*\"tractor/}
      target=${target%%\"*}
      case $target in schema/* | version.h) continue ;; esac
      [ "$(module "$target")" = "$(module "$f")" ] && continue
      echo "$(module "$f") $(module "$target") $f:$n"
    done < <(grep -nE '^#include "tractor/' "$f" || true)
  done
}

check() {  # level (folders | modules), edges file
  local level=$1 all=$2 pairs members
  if [ "$level" = folders ]; then
    pairs=$(awk '{ a = $1; b = $2; sub(/\/[^\/]*$/, "", a); sub(/\/[^\/]*$/, "", b);
                   if (a != b) print a, b, $3 }' "$all")
  else
    pairs=$(cat "$all")
  fi
  members=$(cut -d' ' -f1,2 <<<"$pairs" | sort -u | tsort 2>&1 >/dev/null |
            grep -v 'input contains a loop' | sed 's/^tsort: //' | sort -u || true)
  if [ -z "$members" ]; then
    echo "no include cycle between $level"
    return 0
  fi
  echo "include cycles between $level, through: $(echo $members)"
  echo "  made by these includes:"
  awk -v m="$(echo $members)" 'BEGIN { n = split(m, a, " "); for (i = 1; i <= n; i++) in_[a[i]] = 1 }
       ($1 in in_) && ($2 in in_) { print "    " $3 ": " $1 " -> " $2 }' <<<"$pairs"
  return 1
}

check_internal() {
  # An installed header (not -internal.h) must not include a runtime-only one: it would not be
  # there once installed.
  local bad
  bad=$(grep -nE '^#include "tractor/[^"]*-internal\.h"' \
          $(find kj-runtime spawn supervise devx -name '*.h' ! -name '*-internal.h' 2>/dev/null) \
          tractor.h 2>/dev/null || true)
  if [ -z "$bad" ]; then
    echo "no installed header includes an -internal.h"
    return 0
  fi
  echo "installed headers that include a runtime-only one:"
  sed 's/^/    /' <<<"$bad"
  return 1
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
edges >"$tmp"
status=0
case $what in
  --folders) check folders "$tmp" || status=1 ;;
  --modules) check modules "$tmp" || status=1 ;;
  --all)
    check folders "$tmp" || status=1
    check modules "$tmp" || status=1
    check_internal || status=1
    ;;
  *) sed -n 2,10p "$0"; exit 2 ;;
esac
exit $status
