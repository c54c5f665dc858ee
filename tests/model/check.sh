#!/usr/bin/env bash
# Model-checks tests/model/handshake.pml with spin.
#   check.sh VARIANT WORKDIR
# VARIANT "correct" must verify with no errors; every other variant removes one fence or
# one re-check and must be caught (spin reports an invalid end state: a lost wakeup).
set -euo pipefail
variant=$1
work=${2:-$(mktemp -d)}
here=$(cd "$(dirname "$0")" && pwd)
declare -A defines=(
  [correct]=""
  [correct_cap2]="-DN=5 -DCAP=2"
  [no_producer_fence]="-DNO_PRODUCER_FENCE"
  [no_consumer_fence]="-DNO_CONSUMER_FENCE"
  [no_recheck]="-DNO_RECHECK"
  [no_space_producer_fence]="-DNO_SPACE_PRODUCER_FENCE"
  [no_space_consumer_fence]="-DNO_SPACE_CONSUMER_FENCE"
  [no_space_recheck]="-DNO_SPACE_RECHECK"
)
[[ -v defines[$variant] ]] || { echo "unknown variant $variant" >&2; exit 2; }
dir="$work/$variant"
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
cp "$here/handshake.pml" .
# shellcheck disable=SC2086
spin ${defines[$variant]} -a handshake.pml > spin.log
cc -O2 -DSAFETY -DNOFAIR -w -o pan pan.c
./pan -m100000 > pan.log 2>&1 || true
errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log | head -1)
states=$(sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p' pan.log | head -1)
if [[ -z "$errors" ]]; then
  echo "spin did not finish:"; cat pan.log; exit 1
fi
if [[ "$variant" == correct* ]]; then
  if grep -q "max search depth too small" pan.log; then
    echo "FAIL: search depth too small, the state space was not covered"; cat pan.log; exit 1
  fi
  if [[ "$errors" == 0 ]]; then
    echo "PASS: correct handshake verified ($states states), no lost wakeup"
    exit 0
  fi
  echo "FAIL: the correct handshake has a counterexample:"; cat pan.log
  spin -t -p handshake.pml | tail -40 || true
  exit 1
fi
if [[ "$errors" != 0 ]]; then
  echo "PASS: spin caught the lost wakeup in '$variant' ($(grep -m1 -o 'invalid end state\|assertion violated' pan.log || echo error))"
  exit 0
fi
echo "FAIL: mutation '$variant' was not caught: the model no longer tests this fence/re-check"
cat pan.log
exit 1
