#!/usr/bin/env bash
# Set up, build and run tractor for C++ on Debian 12.
#
#   ./build.sh sample   install what is missing, build, run the flagship sample (samples/rpc_daemon)
#   ./build.sh test     install what is missing, build with g++ and clang (warnings are errors),
#                       run the whole test suite with each
#
# Environment: BUILD_DIR (default build), JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ clang pkg-config capnproto libcapnp-dev libseccomp-dev doctest-dev)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

configure_and_build() {  # dir, C compiler, C++ compiler, [targets...]
  local dir=$1 cc=$2 cxx=$3
  shift 3
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRACTOR_WERROR=ON \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
  cmake --build "$dir" -j "${JOBS:-$(nproc)}" ${1:+--target "$@"}
}

run_tests() {  # dir
  (cd "$1" && ctest --output-on-failure --timeout 300 -j "${JOBS:-$(nproc)}")
}

install_missing
case "${1:-}" in
  sample)
    configure_and_build "${BUILD_DIR:-build}" gcc g++ rpc_daemon
    "${BUILD_DIR:-build}/samples/rpc_daemon"
    ;;
  test)
    echo "== g++"
    configure_and_build "${BUILD_DIR:-build}" gcc g++
    run_tests "${BUILD_DIR:-build}"
    echo "== clang"
    configure_and_build "${BUILD_DIR:-build}-clang" clang clang++
    run_tests "${BUILD_DIR:-build}-clang"
    ;;
  *)
    echo "usage: $0 sample|test" >&2
    exit 2
    ;;
esac
