#!/usr/bin/env bash
# Set up, build and run tractor for C++ on Debian 12.
#
#   ./build.sh sample   install what is missing, build, run the flagship sample (samples/rpc_daemon)
#   ./build.sh test     install what is missing; check that no include cycle joins two folders
#                       (layers) or two modules (tools/check-includes.sh); build with g++, clang
#                       (warnings are errors) and with AddressSanitizer +
#                       UndefinedBehaviorSanitizer; run the whole
#                       test suite with each, and the multi-process tests once more with the
#                       forkserver spawn backend; install the g++ build to a scratch prefix and
#                       build and run tests/consumer against it (CMake, pkg-config) and with
#                       FetchContent; then build the libFuzzer targets (preset fuzz, clang) and
#                       fuzz each for FUZZ_SECONDS (default 45) from its seed corpus: any
#                       crash, sanitizer report, hang (-timeout) or memory blow-up fails
#
# The builds are the CMake presets of CMakePresets.json (gcc, clang, asan).
# Environment: JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ clang pkg-config capnproto libcapnp-dev libseccomp-dev doctest-dev
          iproute2 libclang-rt-14-dev)

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

configure_and_build() {  # preset, [targets...]
  local preset=$1
  shift
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "${JOBS:-$(nproc)}" ${1:+--target "$@"}
}

run_tests() {  # preset
  ctest --preset "$1" -j "${JOBS:-$(nproc)}"
}

check_package() {
  # tests/consumer, a project of its own, built the three ways a user can: against the installed
  # package with CMake and with pkg-config, and with FetchContent of this checkout.
  local prefix="$PWD/build/package-prefix"
  rm -rf "$prefix" build/consumer-*
  cmake --install build --prefix "$prefix" >/dev/null
  cmake -S tests/consumer -B build/consumer-cmake -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build build/consumer-cmake
  tests/consumer/check.sh build/consumer-cmake/consumer
  PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C tests/consumer OUT="$PWD/build/consumer-make"
  tests/consumer/check.sh build/consumer-make/consumer
  cmake -S tests/consumer -B build/consumer-fetch -G Ninja -DTRACTOR_CONSUMER_FETCH="$PWD" \
    >/dev/null
  cmake --build build/consumer-fetch -j "${JOBS:-$(nproc)}"
  tests/consumer/check.sh build/consumer-fetch/consumer
}

run_fuzzers() {
  # A bounded run of each fuzz target from a scratch copy of its seeds (new inputs stay out of
  # the repository); findings are written to build-fuzz/findings and fail the step.
  local work=build-fuzz/fuzz-work
  mkdir -p build-fuzz/findings
  for target in incoming payload; do
    rm -rf "$work/$target"
    mkdir -p "$work/$target"
    build-fuzz/tractor-fuzz-$target -max_total_time="${FUZZ_SECONDS:-45}" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/findings/$target- \
      "$work/$target" "tests/fuzz/corpus/$target" 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|stat::)|ERROR|SUMMARY"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz target $target found a bug" >&2; exit 1; }
  done
}

install_missing
case "${1:-}" in
  sample)
    configure_and_build gcc rpc_daemon
    build/samples/rpc_daemon
    ;;
  test)
    echo "== include layers"
    tools/check-includes.sh
    for preset in gcc clang asan; do
      echo "== $preset"
      configure_and_build "$preset"
      run_tests "$preset"
    done
    echo "== gcc, forkserver spawn backend"
    TRACTOR_SPAWN_METHOD=forkserver ctest --preset gcc -j "${JOBS:-$(nproc)}" -L "multiproc|scale"
    echo "== package: tests/consumer against the installed prefix, with pkg-config, FetchContent"
    check_package
    echo "== fuzz"
    configure_and_build fuzz
    run_fuzzers
    ;;
  *)
    echo "usage: $0 sample|test" >&2
    exit 2
    ;;
esac
