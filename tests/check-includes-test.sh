#!/usr/bin/env bash
# The include-cycle check (tools/check-includes.sh) on trees made to fail it: a cycle between two
# modules of one folder, a cycle between two folders through different modules, a clean tree
# that must pass, an installed header including a runtime-only one; then the real tree, which
# must pass.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
check=$here/tools/check-includes.sh
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

tree() {  # name, then "file: included..." lines
  local root=$scratch/$1 line file
  shift
  mkdir -p "$root"
  for line in "$@"; do
    file=${line%%:*}
    mkdir -p "$root/$(dirname "$file")"
    : >"$root/$file"
    for inc in ${line#*:}; do echo "#include \"tractor/$inc\"" >>"$root/$file"; done
  done
  echo "$root"
}

expect() {  # status, output pattern, check args...
  local want=$1 pattern=$2 out status
  shift 2
  set +e
  out=$("$check" "$@" 2>&1)
  status=$?
  set -e
  if [ "$status" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAILED: check-includes $* gave $status (wanted $want, output matching '$pattern'):"
    echo "$out"
    exit 1
  fi
}

modules=$(tree modules "kj-runtime/actor/a.h: kj-runtime/actor/b.h" \
                       "kj-runtime/actor/b.cpp: kj-runtime/actor/a.h" "kj-runtime/actor/b.h:")
expect 1 "kj-runtime/actor/b.cpp:1: kj-runtime/actor/b -> kj-runtime/actor/a" --modules "$modules"
expect 0 "no include cycle between folders" --folders "$modules"

folders=$(tree folders "kj-runtime/net/x.h: spawn/y.h" "spawn/z.cpp: kj-runtime/net/w.h" \
                       "spawn/y.h:" "kj-runtime/net/w.h:")
expect 1 "include cycles between folders, through: kj-runtime/net spawn" --folders "$folders"
expect 0 "no include cycle between modules" --modules "$folders"

internal=$(tree internal "kj-runtime/async/c.cpp: kj-runtime/async/c-internal.h" \
                         "kj-runtime/async/c-internal.h: kj-runtime/async/c.h" \
                         "kj-runtime/async/c.h: kj-runtime/async/d.h" "kj-runtime/async/d.h:")
expect 0 "no include cycle between modules" --all "$internal"

leaky=$(tree leaky "kj-runtime/wire/p.h: kj-runtime/wire/q-internal.h" "kj-runtime/wire/q-internal.h:")
expect 1 "kj-runtime/wire/p.h:1:#include \"tractor/kj-runtime/wire/q-internal.h\"" --all "$leaky"

expect 0 "no installed header includes an -internal.h" --all "$here"
echo "check-includes: finds cycles between modules and folders, passes this tree"
