#!/usr/bin/env bash
# Checks one GenMC model of tests/model/genmc/ under IMM (the hardware model covering
# ARMv8 and POWER) and RC11 (the C11 model), the correct code and every mutant.
#   check.sh MODEL [WORKDIR]      MODEL: ring_handshake | virtqueue_notify | stats_seqlock | port_turn_on
# The correct model (and each of its modes) must pass under both; each mutant must be
# rejected under IMM, and under RC11 as the table below expects (a release/acquire pair
# whose loss only shows as load buffering is allowed by IMM, forbidden by RC11), and on its
# own assertion. The one survivor, [A2] weakened, is listed and explained in the table.
#
# GenMC: a build cached in <repo>/build-genmc/ (git-ignored; $GENMC_CACHE_DIR overrides),
# else one built there from the source tarball at $GENMC_TARBALL, else at
# <repo>/../shared/tools/genmc-0.10.1.tar.gz, else `genmc` on PATH. None of them: prints
# "GenMC check SKIPPED" and exits 77.
set -euo pipefail
model=${1:?usage: check.sh MODEL [WORKDIR]}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
work=${2:-}
if [[ -z "$work" ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
version=genmc-0.10.1
cache=${GENMC_CACHE_DIR:-$repo/build-genmc}
src="$cache/$version"
per_run_timeout=${GENMC_RUN_TIMEOUT:-300}

build_genmc() {  # $1: tarball; builds into $src, once, under a lock
  local tarball=$1
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock -w 3600 9 || { echo "genmc: could not take the build lock" >&2; return 1; }
  if [[ -x "$src/genmc" && -e "$src/.built" ]]; then flock -u 9; return 0; fi
  local packages=(autoconf automake make clang llvm-dev libclang-dev libffi-dev zlib1g-dev libedit-dev)
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "genmc: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
  echo "genmc: building $version from $tarball into $src (several minutes, once)"
  rm -rf "$src"
  tar -xzf "$tarball" -C "$cache"
  (cd "$src" && autoreconf --install && ./configure && make -j"$(nproc)") > "$cache/build.log" 2>&1 || {
    echo "genmc: build failed, the end of $cache/build.log:" >&2
    tail -n 30 "$cache/build.log" >&2
    return 1
  }
  touch "$src/.built"
  flock -u 9
}

genmc=""
tarball=""
for t in "${GENMC_TARBALL:-}" "$repo/../shared/tools/$version.tar.gz"; do
  if [[ -n "$t" && -f "$t" ]]; then tarball=$t; break; fi
done
if [[ -x "$src/genmc" && -e "$src/.built" ]]; then
  genmc="$src/genmc"
elif [[ -n "$tarball" ]]; then
  build_genmc "$tarball"
  genmc="$src/genmc"
elif command -v genmc >/dev/null; then
  genmc=$(command -v genmc)
else
  echo "GenMC check SKIPPED: GenMC not found (no build in $cache, no $version.tar.gz at" \
       "\$GENMC_TARBALL or $repo/../shared/tools, no genmc on PATH)"
  exit 77
fi

# variant | compiler defines | expected under -imm | expected under -rc11
# (pass: no error in any execution; fail: GenMC reports the assertion violation)
case "$model" in
  ring_handshake)
    variants=(
      "correct||pass|pass"
      "no_f1|-DMUTANT_NO_F1|fail|fail|data-available lost wakeup"
      "no_f2|-DMUTANT_NO_F2|fail|fail|data-available lost wakeup"
      "no_f3|-DMUTANT_NO_F3|fail|fail|free-send lost wakeup"
      "no_f4|-DMUTANT_NO_F4|fail|fail|free-send lost wakeup"
      "no_recheck|-DMUTANT_NO_RECHECK|fail|fail|data-available lost wakeup"
      "no_space_recheck|-DMUTANT_NO_SPACE_RECHECK|fail|fail|free-send lost wakeup"
      "r1_relaxed|-DMUTANT_R1_RELAXED|fail|fail|([R1]/[A1])"
      "a1_relaxed|-DMUTANT_A1_RELAXED|fail|fail|([R1]/[A1])"
      # The consumer's copy-out load may pass its relaxed tail store (load buffering): IMM
      # allows it, RC11 forbids every po-rf cycle, so only IMM catches it.
      "r2_relaxed|-DMUTANT_R2_RELAXED|fail|pass|([R2]/[A2])"
      # The one survivor, kept visible: the producer's store into the freed slot is
      # control-dependent on its tail load (the has_space() branch), and IMM, like ARMv8,
      # never lets a store pass the load its branch depends on; RC11 forbids the
      # load-buffering cycle. [A2] is required by ISO C++ alone, whose relaxed loads do
      # not order dependent stores.
      "a2_relaxed|-DMUTANT_A2_RELAXED|pass|pass"
    ) ;;
  virtqueue_notify)
    variants=(
      "correct||pass|pass"
      "correct_flags|-DFLAG_MODE|pass|pass"
    )
    for mode in "event_idx|" "flags|-DFLAG_MODE"; do
      for m in "NO_VF1|lost interrupt" "NO_VF2|lost kick" "NO_DEVICE_RECHECK|lost kick" \
               "VR_RELAXED|([VR])" "VA_RELAXED|([VA])" "NO_DRIVER_KICK_MB|lost kick" \
               "NO_DRIVER_CB_MB|lost interrupt" "NO_DRIVER_RECHECK|lost interrupt"; do
        name=${m%%|*}
        variants+=("${name,,}_${mode%%|*}|${mode#*|} -DMUTANT_$name|fail|fail|${m#*|}")
      done
    done ;;
  stats_seqlock)
    variants=(
      "correct||pass|pass"
      "no_s1_writer_fence|-DMUTANT_NO_S1_WRITER_FENCE|fail|fail|torn or mixed"
      "no_s1_reader_fence|-DMUTANT_NO_S1_READER_FENCE|fail|fail|torn or mixed"
      "s2_writer_relaxed|-DMUTANT_S2_WRITER_RELAXED|fail|fail|torn or mixed"
      "s2_reader_relaxed|-DMUTANT_S2_READER_RELAXED|fail|fail|torn or mixed"
      "no_odd_check|-DMUTANT_NO_ODD_CHECK|fail|fail|torn or mixed"
      "no_seq_recheck|-DMUTANT_NO_SEQ_RECHECK|fail|fail|torn or mixed"
    ) ;;
  port_turn_on)
    variants=(
      "correct||pass|pass"
      "own_slice_first|-DMUTANT_OWN_SLICE_FIRST|fail|fail|dropped the new run"
      "no_second_look|-DMUTANT_NO_SECOND_LOOK|fail|fail|dropped the new run"
      "p_acq_relaxed|-DMUTANT_P_ACQ_RELAXED|fail|fail|dropped the new run"
      "r1_relaxed|-DMUTANT_R1_RELAXED|fail|fail|before its bytes"
      "a1_relaxed|-DMUTANT_A1_RELAXED|fail|fail|before its bytes"
    ) ;;
  *) echo "unknown model $model" >&2; exit 2 ;;
esac

bad=0
printf '%-28s %-6s %-8s %-8s %8s %8s  %s\n' variant model expected result seconds execs assertion
for v in "${variants[@]}"; do
  [[ "$v" == \#* ]] && continue
  IFS='|' read -r name defines want_imm want_rc11 want_msg <<<"$v"
  for mm in imm rc11; do
    want=$want_imm; [[ $mm == rc11 ]] && want=$want_rc11
    log="$work/$model.$name.$mm.log"
    start=$(date +%s.%N)
    rc=0
    # shellcheck disable=SC2086
    timeout "$per_run_timeout" "$genmc" "-$mm" --disable-estimation -- $defines "$here/$model.c" >"$log" 2>&1 || rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    execs=$(sed -n 's/.*complete executions explored: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    msg=$(sed -n 's/^Assertion violation: .*&& "\(.*\)"$/\1/p' "$log" | head -n 1)
    if ((rc == 0)) && grep -q "No errors were detected" "$log"; then
      got=pass
    elif ((rc != 0 && rc != 124)) && grep -q "Verification unsuccessful" "$log" &&
         [[ -n "$msg" && "$msg" == *"${want_msg:-}"* ]]; then
      got=fail
    else
      got="error(rc=$rc)"
    fi
    printf '%-28s %-6s %-8s %-8s %8s %8s  %s\n' "$name" "$mm" "$want" "$got" "$secs" "${execs:--}" "$msg"
    if [[ "$got" == pass && "$want" == pass && "$name" != correct* ]]; then
      echo "  note: mutant '$name' survives under -$mm, as the table above expects and explains"
    fi
    if [[ "$got" != "$want" ]]; then
      bad=1
      if [[ "$got" == pass ]]; then
        echo "  FAIL: mutant '$name' survives under -$mm: the model does not depend on what it removes"
      elif [[ "$got" == fail ]]; then
        echo "  FAIL: '$name' has a violating execution under -$mm:"
      else
        echo "  FAIL: GenMC did not finish normally, or another assertion failed than '${want_msg:-}':"
      fi
      [[ "$got" == pass ]] || tail -n 60 "$log" | sed 's/^/    /'
    fi
  done
done
if ((bad)); then
  echo "FAIL: $model (logs in $work)"
  exit 1
fi
echo "PASS: $model: correct model verified under IMM and RC11, every mutant as the table expects"
