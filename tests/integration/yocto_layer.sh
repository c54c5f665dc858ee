#!/usr/bin/env bash
# scripts/yocto/check-layer.sh on the layer (must pass) and on three broken copies (each
# must fail, naming the problem): a unit name the build does not install, a file the
# recipe installs but no package ships, a dependency with no recipe anywhere. The aarch64
# cross build goes to build-yocto/ (incremental after the first run).
source "$(dirname "$0")/lib.sh"
command -v aarch64-linux-gnu-g++ >/dev/null || fail "aarch64-linux-gnu-g++ is missing (scripts/setup.sh installs it)"
check="$ROOT/scripts/yocto/check-layer.sh"
bash "$check" >"$WORK/ok.log" 2>&1 || fail "check-layer.sh failed on the layer: $(tail -20 "$WORK/ok.log")"
grep -q "check-layer: OK" "$WORK/ok.log" || fail "no OK from check-layer.sh"
pass "the layer: recipe builds for aarch64, every installed file packaged, the unit is SYSTEMD_SERVICE's"

# broken NAME EXPECTED SED_SCRIPT: a copy of the layer whose vswitch recipe SED_SCRIPT edits must fail with EXPECTED.
broken() {
  local name=$1 want=$2 script=$3 file=recipes-net/vswitch/vswitch_0.1.0.bb
  rm -rf "$WORK/meta-vswitch"
  cp -r "$ROOT/scripts/yocto/meta-vswitch" "$WORK/meta-vswitch"
  sed -i "$script" "$WORK/meta-vswitch/$file"
  ! cmp -s "$ROOT/scripts/yocto/meta-vswitch/$file" "$WORK/meta-vswitch/$file" || fail "$name: the edit changed nothing"
  if LAYER="$WORK/meta-vswitch" bash "$check" >"$WORK/broken.log" 2>&1; then
    fail "check-layer.sh passed a layer with $name"
  fi
  grep -qF -- "$want" "$WORK/broken.log" || fail "$name: expected \"$want\", got: $(tail -5 "$WORK/broken.log")"
}
broken "a wrong unit name" "SYSTEMD_SERVICE vswitchd.service: /lib/systemd/system/vswitchd.service is not installed" \
  's/^SYSTEMD_SERVICE:${PN} = .*/SYSTEMD_SERVICE:${PN} = "vswitchd.service"/'
broken "an unshipped file" "installed but not shipped in any package: /usr/lib/vswitch-extra/x" \
  's|^    install -d ${D}${sysconfdir}/vswitch$|&\n    install -d ${D}/usr/lib/vswitch-extra \&\& touch ${D}/usr/lib/vswitch-extra/x|'
broken "a dependency without a recipe" "DEPENDS libfoo: neither in openembedded-core/meta-oe nor in this layer" \
  's/^DEPENDS = "boost tomlplusplus concurrentqueue"$/DEPENDS = "boost tomlplusplus concurrentqueue libfoo"/'
pass "check-layer.sh catches a wrong unit name, an unshipped file and a dependency without a recipe"
