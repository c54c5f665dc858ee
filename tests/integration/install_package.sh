#!/usr/bin/env bash
# `cmake --install` into a temporary prefix (no root needed): exactly the expected files
# (programs, the systemd unit, example topologies, manual pages; nothing from tests/), the
# unit's ExecStart= names the installed vswitchd, `systemd-analyze verify` accepts the unit
# with no complaint (man pages found), and both installed programs print a complete --help.
source "$(dirname "$0")/lib.sh"
build=$(dirname "$BIN")
[[ -f $build/cmake_install.cmake ]] || fail "no cmake_install.cmake in $build"
prefix="$WORK/prefix"
cmake --install "$build" --prefix "$prefix" >"$WORK/install.log" 2>&1 || fail "cmake --install: $(cat "$WORK/install.log")"

unit="lib/systemd/system/vswitchd@.service"
expected=(bin/vswitchctl bin/vswitchd "$unit" share/man/man1/vswitchctl.1 share/man/man8/vswitchd.8)
for c in "$ROOT"/configs/*.toml; do expected+=("share/vswitch/configs/$(basename "$c")"); done
diff <(printf '%s\n' "${expected[@]}" | sort) <(cd "$prefix" && find . -type f -o -type l | sed 's#^\./##' | sort) \
  >"$WORK/files.diff" || fail "installed files differ from the expected list (< expected, > installed):
$(cat "$WORK/files.diff")"
[[ -x $prefix/bin/vswitchd && -x $prefix/bin/vswitchctl ]] || fail "the programs are not executable"
pass "cmake --install puts exactly the programs, the unit, the examples and the man pages"

grep -qx "ExecStart=$prefix/bin/vswitchd --config /etc/vswitch/%i.toml" "$prefix/$unit" ||
  fail "ExecStart does not name the installed vswitchd: $(grep ExecStart "$prefix/$unit")"
for key in Type=notify RuntimeDirectory=vswitch RuntimeDirectoryMode=0755 Restart=on-failure KillMode=mixed \
           'ExecReload=/bin/kill -HUP $MAINPID' RestartPreventExitStatus=2; do
  grep -qxF "$key" "$prefix/$unit" || fail "the unit lacks $key"
done
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (scripts/setup.sh installs systemd)"
command -v man >/dev/null || fail "man is missing (scripts/setup.sh installs man-db)"
# Warnings (an unknown key, a bad value) do not change the exit status: any output fails.
MANPATH="$prefix/share/man" systemd-analyze verify "$prefix/$unit" >"$WORK/verify.log" 2>&1 ||
  fail "systemd-analyze verify: $(cat "$WORK/verify.log")"
[[ ! -s $WORK/verify.log ]] || fail "systemd-analyze verify complained: $(cat "$WORK/verify.log")"
pass "systemd-analyze verify accepts the installed unit"

# --help: exit 0, and every option, subcommand, signal, file and exit status named.
"$prefix/bin/vswitchd" --help >"$WORK/d.help" || fail "vswitchd --help exited $?"
for w in "--config FILE" "--help" SIGINT SIGTERM SIGHUP NOTIFY_SOCKET READY=1 RELOADING=1 STOPPING=1 \
         /run/vswitch/lock/NAME.lock "mode 0755" "exit status" "  0  " "  1  " "  2  "; do
  grep -qF -- "$w" "$WORK/d.help" || fail "vswitchd --help does not mention \"$w\""
done
"$prefix/bin/vswitchctl" --help >"$WORK/c.help" || fail "vswitchctl --help exited $?"
for w in "--config FILE" --json --help ports fdb stats channels "exit status" "  0  " "  1  " "  2  "; do
  grep -qF -- "$w" "$WORK/c.help" || fail "vswitchctl --help does not mention \"$w\""
done
# A wrong invocation is a usage error (2) on both.
set +e
"$prefix/bin/vswitchd" --bogus 2>/dev/null; d=$?
"$prefix/bin/vswitchctl" --bogus 2>/dev/null; c=$?
set -e
[[ $d -eq 2 && $c -eq 2 ]] || fail "usage errors exit $d (vswitchd) and $c (vswitchctl), expected 2"
pass "installed vswitchd and vswitchctl print a complete --help"
