#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup.sh), builds, and runs every test:
#   1. ctest on the normal build (which also compiles every header on its own): unit, fuzz corpora,
#      stress (two processes, lost-wakeup hunt) and the spin model of the handshake (correct model
#      passes, every mutation is caught); clang-tidy over the libraries and programs; then the
#      integration tests (vswitchd, TAPs in namespaces, iperf3; as root) and a 60 s generator soak,
#      the VM demo with arm64 guests (label vm_arm64),
#      then short runs of both soak scripts (label soak);
#   2. the concurrency tests again on a ThreadSanitizer build (clang);
#   3. the unit tests and fuzz corpora on an AddressSanitizer + UBSan build (clang), then
#      each libFuzzer target for FUZZ_SECONDS (default 30);
#   4. the GenMC models of the handshakes, virtqueue notification, stats seqlock and a port
#      turned on during a peer's pass under IMM
#      (ARMv8-class) and RC11, each mutant rejected (skipped, saying so, without GenMC);
#   5. the libraries and unit tests built for aarch64 and run under qemu-user.
# Every stage runs; the script fails at the end if any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# The system's programs first: every stage runs the Debian packages scripts/setup.sh
# installs, never a per-user shim placed ahead of them on PATH (a pyenv shim for python3
# costs about a second a start, and the tests start it hundreds of times).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
jobs=$(nproc)
failed=()

stage() { echo; echo "==== $* ===="; }

stage "setup and build"
scripts/setup.sh || { echo "setup failed"; exit 1; }

stage "ctest: normal build (unit, model, fuzz corpora, stress)"
(cd build && ctest --output-on-failure -j "$jobs" -L 'unit|model|fuzz') || failed+=("unit/model")
(cd build && ctest --output-on-failure -L stress) || failed+=("stress")

stage "clang-tidy: the checks of .clang-tidy over shm/, endpoints/, vswitch/, every finding an error"
scripts/clang-tidy.sh build || failed+=("clang-tidy")

stage "integration: vswitchd with TAP endpoints in network namespaces, iperf3, kill -9, generator soak"
if [[ $(id -u) -ne 0 ]]; then
  echo "not root: the namespace/TAP tests are skipped (each says so); the generator soak runs"
fi
(cd build && ctest --output-on-failure -L integration) || failed+=("integration")

stage "arm64 guests: scripts/vm-demo.sh --arch arm64 (Cortex-A53 virt guests under TCG on vhost-user endpoints)"
(cd build && ctest --output-on-failure -L vm_arm64) || failed+=("vm-arm64")

stage "soaks: short runs of scripts/soak.sh (segments rolling over as past iperf3's 24 h limit, a frozen endpoint caught) and scripts/soak-vm.sh (4 guests)"
(cd build && ctest --output-on-failure -L soak) || failed+=("soak")

stage "ThreadSanitizer build: concurrency tests"
# Only the tests this stage runs are built (a TSan build finds nothing by compiling; the
# programs and the other tests would be a third of CI's build time for nothing). The
# test names are their targets' names.
tsan_tests='shm_ring_lost_wakeup|shm_ring_two_process|shm_frame_ring|vswitch_endpoint|vswitch_event_log|vswitch_capture|vswitch_stats'
if cmake -S . -B build-tsan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DVSWITCH_SANITIZE=thread \
      -DVSWITCH_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
   tsan_targets=$(cd build-tsan && ctest -N -R "$tsan_tests" | sed -n 's/^ *Test *#[0-9]*: //p') &&
   [[ -n $tsan_targets ]] &&
   # shellcheck disable=SC2086  # one target per word
   cmake --build build-tsan --target $tsan_targets; then
  # The full lost-wakeup hunt under TSan (about a minute; it sees data races, not lost
  # wakeups: those are the watchdog's and the model's job). The two-process test runs a
  # fraction: TSan sees only the parent's half of it.
  (cd build-tsan && VSWITCH_STRESS_SCALE=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
     ctest --output-on-failure -R 'shm_ring_lost_wakeup') || failed+=("tsan")
  (cd build-tsan && VSWITCH_STRESS_SCALE=0.05 TSAN_OPTIONS="halt_on_error=1" \
     ctest --output-on-failure -R 'shm_ring_two_process') || failed+=("tsan-two-process")
  (cd build-tsan && TSAN_OPTIONS="halt_on_error=1" ctest --output-on-failure -R 'shm_frame_ring|vswitch_endpoint|vswitch_event_log|vswitch_capture|vswitch_stats') ||
    failed+=("tsan-ring-endpoint")
else
  failed+=("tsan-build")
fi

stage "AddressSanitizer + UBSan build: unit tests, fuzz corpora, then each fuzzer for ${FUZZ_SECONDS:=30} s"
if cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DVSWITCH_SANITIZE=address \
      -DVSWITCH_FUZZ=ON -DVSWITCH_BUILD_BENCH=OFF -DVSWITCH_HEADER_CHECK=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
   cmake --build build-asan; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build-asan && ctest --output-on-failure -j "$jobs" -L 'unit|fuzz') || failed+=("asan")
  mkdir -p build-asan/fuzz-artifacts
  for target in ring_consumer topology virtqueue vhost_user_message net_offload capture_reader; do
    work=$(mktemp -d)   # new inputs land here, not in the committed corpus
    if ! build-asan/bin/fuzz_$target -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
           -artifact_prefix=build-asan/fuzz-artifacts/$target- "$work" tests/fuzz/corpus/$target \
           > build-asan/fuzz-$target.log 2>&1; then
      tail -40 build-asan/fuzz-$target.log
      failed+=("fuzz-$target")
    else
      grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" build-asan/fuzz-$target.log | tail -1
    fi
    rm -rf "$work"
  done
else
  failed+=("asan-build")
fi

stage "GenMC: ring handshakes, virtqueue notification, stats seqlock, port turn-on under IMM and RC11, with mutants"
(cd build && ctest --output-on-failure -L genmc | tee genmc-ctest.log) || failed+=("genmc")
if grep -q "Skipped" build/genmc-ctest.log; then
  echo "GenMC stage SKIPPED: GenMC not found (no build-genmc/, no tarball, no genmc on PATH)"
fi

stage "aarch64 cross build under qemu-user"
scripts/cross-aarch64.sh || failed+=("aarch64")

echo
if ((${#failed[@]})); then
  echo "test.sh: FAILED stages: ${failed[*]}"
  exit 1
fi
echo "test.sh: all stages passed"
