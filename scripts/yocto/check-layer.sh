#!/usr/bin/env bash
# What can be checked of scripts/yocto/meta-vswitch without BitBake (it cannot run here):
#  1. the layer's structure, and each recipe's assignments parse (a subset of BitBake's
#     syntax: =, ?=, ??=, :=, +=, .=, :append/:prepend/:remove, line continuations);
#  2. the vswitch recipe: PV matches project(VERSION), DEPENDS and inherit as required, a
#     recipe in the layer for every dependency that openembedded-core / meta-oe lack;
#  3. do_configure/do_compile/do_install reproduced as cmake.bbclass runs them, with the
#     recipe's EXTRA_OECMAKE and OE's install directories, cross-compiled for aarch64
#     (cmake/aarch64-linux-gnu.cmake; the header-only dependencies exposed as
#     scripts/cross-aarch64.sh does) into a DESTDIR, then the recipe's do_install:append;
#  4. every installed file falls into one of the recipe's packages (FILES, with
#     bitbake.conf's defaults and the systemd class: nothing "installed but not shipped"),
#     the programs land in ${PN}, the unit SYSTEMD_SERVICE names is the one installed, its
#     ExecStart= is the installed vswitchd, the instance's topology and CONFFILES exist;
#  5. the programs are AArch64 ELF; GoogleTest installs nothing even when a cross build
#     has the tests on.
# No recipe linter is packaged in Debian or npm (oelint-adv is on PyPI only): none runs.
# Build folder: build-yocto/ (BUILD_DIR=... to change). Exit 0 when every check passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
layer=${LAYER:-scripts/yocto/meta-vswitch}  # LAYER=...: check another copy (the tests check broken ones)
build=${BUILD_DIR:-build-yocto}
work=$(mktemp -d /tmp/vswitch-yocto.XXXXXX)
trap 'rm -rf "$work"' EXIT

for tool in aarch64-linux-gnu-g++ aarch64-linux-gnu-readelf cmake ninja python3; do
  command -v "$tool" >/dev/null || { echo "check-layer: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

# Steps 1, 2 and the variables for 3-4, from one Python pass over the recipes. It prints
# shell assignments (VAR=value, quoted) for the rest of this script.
python3 - "$layer" "$root" >"$work/vars.sh" <<'PY'
import os, re, shlex, sys
layer, root = sys.argv[1], sys.argv[2]
errors = []
def err(m): errors.append(m)

def parse(path):
    """Assignments and shell functions of a recipe, BitBake-style (subset)."""
    text = open(path).read()
    lines, buf = [], ""
    for raw in text.split("\n"):
        if buf == "" and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        lines.append(buf + raw)
        buf = ""
    ops, funcs, inherits, i = [], {}, [], 0
    while i < len(lines):
        l = lines[i].strip()
        i += 1
        if not l:
            continue
        m = re.match(r'^([\w:${}.-]+)\s*\(\)\s*\{$', l)
        if m:
            body = []
            while i < len(lines) and lines[i].strip() != "}":
                body.append(lines[i]); i += 1
            if i == len(lines):
                err(f"{path}: function {m.group(1)} has no closing brace")
            i += 1
            funcs[m.group(1)] = "\n".join(body)
            continue
        m = re.match(r'^inherit\s+(.+)$', l)
        if m:
            inherits += m.group(1).split(); continue
        m = re.match(r'^(require|include)\s+(\S+)$', l)
        if m:
            continue
        m = re.match(r'^([A-Za-z0-9_${}.:/+-]+?)(\[[\w-]+\])?\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"$', l)
        if not m:
            err(f"{path}: cannot parse: {l}")
            continue
        ops.append((m.group(1), m.group(2), m.group(3), m.group(4)))
    return ops, funcs, inherits

def evaluate(ops, base):
    d = dict(base)
    appends = []
    for name, flag, op, val in ops:
        if flag:
            d[name + flag] = val
            continue
        suffix = None
        for s in (":append", ":prepend", ":remove"):
            if name.endswith(s):
                name, suffix = name[: -len(s)], s
        if suffix:
            appends.append((name, suffix, val)); continue
        cur = d.get(name)
        if op == "=" or op == ":=": d[name] = val
        elif op == "?=": d.setdefault(name, val)
        elif op == "??=": d.setdefault(name, val)
        elif op == "+=": d[name] = (cur + " " + val) if cur else val
        elif op == "=+": d[name] = (val + " " + cur) if cur else val
        elif op == ".=": d[name] = (cur or "") + val
        elif op == "=.": d[name] = val + (cur or "")
    for name, s, val in appends:
        cur = d.get(name, "")
        if s == ":append": d[name] = cur + val
        elif s == ":prepend": d[name] = val + cur
        else: d[name] = " ".join(w for w in cur.split() if w not in expand(d, val).split())
    return d

def expand(d, v, depth=0):
    if depth > 20: raise RuntimeError("recursive expansion: " + v)
    def sub(m):
        k = m.group(1)
        return expand(d, d[k], depth + 1) if k in d else m.group(0)
    out = re.sub(r'\$\{([A-Za-z0-9_:+-]+)\}', sub, v)
    return out

# 1. Layer structure.
conf = os.path.join(layer, "conf/layer.conf")
if not os.path.isfile(conf): err("no conf/layer.conf")
else:
    ops, _, _ = parse(conf)
    names = {o[0] for o in ops}
    for need in ("BBPATH", "BBFILES", "BBFILE_COLLECTIONS", "BBFILE_PATTERN_vswitch", "BBFILE_PRIORITY_vswitch",
                 "LAYERSERIES_COMPAT_vswitch", "LAYERDEPENDS_vswitch"):
        if need not in names: err(f"layer.conf: {need} not set")
recipes = []
for dirpath, _, files in os.walk(layer):
    recipes += [os.path.join(dirpath, f) for f in files if f.endswith((".bb", ".bbappend", ".inc"))]
for r in recipes:
    parse(r)  # syntax
if not os.path.isfile(os.path.join(layer, "README.md")): err("no README.md in the layer")

# OE's defaults (bitbake.conf), for a target without usrmerge.
base = {
    "prefix": "/usr", "exec_prefix": "/usr", "base_prefix": "", "bindir": "/usr/bin", "sbindir": "/usr/sbin",
    "libdir": "/usr/lib", "libexecdir": "/usr/libexec", "includedir": "/usr/include", "datadir": "/usr/share",
    "sysconfdir": "/etc", "localstatedir": "/var", "sharedstatedir": "/com", "docdir": "/usr/share/doc",
    "mandir": "/usr/share/man", "infodir": "/usr/share/info", "base_bindir": "/bin", "base_sbindir": "/sbin",
    "base_libdir": "/lib", "nonarch_base_libdir": "/lib", "systemd_system_unitdir": "/lib/systemd/system",
    "systemd_unitdir": "/lib/systemd", "SOLIBS": ".so.*", "SOLIBSDEV": ".so", "WORKDIR": "/work",
    "D": "/image", "THISDIR": "/layer",
}
cands = [r for r in recipes if re.search(r'/vswitch_[0-9.]+\.bb$', r)]
if len(cands) != 1:
    err(f"expected one recipes-*/vswitch/vswitch_<version>.bb, found {cands}")
    print("\n".join("check-layer: " + e for e in errors), file=sys.stderr); sys.exit(1)
recipe = cands[0]
pv = re.search(r'_([0-9.]+)\.bb$', recipe).group(1)
base.update({"PN": "vswitch", "BPN": "vswitch", "PV": pv})
ops, funcs, inherits = parse(recipe)
d = evaluate(ops, base)
d["S"] = d.get("S", "")
x = lambda k: expand(d, d.get(k, ""))

# 2. The recipe's contents.
cm = open(os.path.join(root, "CMakeLists.txt")).read()
m = re.search(r'project\(vswitch VERSION ([0-9.]+)', cm)
if not m or m.group(1) != pv: err(f"recipe version {pv} != CMakeLists.txt project VERSION {m.group(1) if m else '?'}")
for c in ("cmake", "pkgconfig", "systemd"):
    if c not in inherits: err(f"{recipe}: does not inherit {c}")
deps = x("DEPENDS").split()
for need in ("boost", "tomlplusplus", "concurrentqueue"):
    if need not in deps: err(f"{recipe}: DEPENDS lacks {need}")
# Which dependency comes from where (openembedded-core and meta-oe, scarthgap and later):
# boost is in openembedded-core (recipes-support/boost), tomlplusplus in meta-oe
# (recipes-devtools/tomlplusplus); the rest needs a recipe in this layer.
provided_elsewhere = {"boost": "openembedded-core", "tomlplusplus": "meta-oe"}
for dep in deps:
    if dep in provided_elsewhere: continue
    if not any(re.search(rf'/{re.escape(dep)}(_[^/]*)?\.bb$', r) for r in recipes):
        err(f"DEPENDS {dep}: neither in openembedded-core/meta-oe nor in this layer")
if "SRC_URI" not in d or not x("SRC_URI").startswith("git://"): err("SRC_URI is not a git URL")
if "SYSTEMD_SERVICE:${PN}" not in d: err("SYSTEMD_SERVICE:${PN} not set")
if "do_install:append" not in funcs: err("no do_install:append (the topology for /etc/vswitch)")

# Every recipe in the layer (other than the packagegroup and the image fragment) has a
# license and a source; the concurrentqueue checksum is over the text it names.
for r in recipes:
    if not r.endswith(".bb"): continue
    o, _, _ = parse(r)
    names = {a[0] for a in o}
    if "LICENSE" not in names: err(f"{r}: no LICENSE")
    if "packagegroup" in r: continue
    if "SRC_URI" not in names: err(f"{r}: no SRC_URI")
    lic = dict((a[0], a[3]) for a in o)
    if lic.get("LICENSE") != "CLOSED" and "LIC_FILES_CHKSUM" not in names: err(f"{r}: no LIC_FILES_CHKSUM")
    if "SRC_URI" in names and lic["SRC_URI"].startswith("https://") and "SRC_URI[sha256sum]" not in names:
        err(f"{r}: an https SRC_URI without SRC_URI[sha256sum]")

def out(k, v): print(f"{k}={shlex.quote(v)}")
# cmake.bbclass's own definitions (OECMAKE_...): prefix and the install dirs relative to it.
rel = lambda v: os.path.relpath(base[v], base["prefix"] + "/") if base[v].startswith(base["prefix"] + "/") else base[v]
oecmake = [f"-DCMAKE_INSTALL_PREFIX:PATH={base['prefix']}", f"-DCMAKE_INSTALL_BINDIR:PATH={rel('bindir')}",
           f"-DCMAKE_INSTALL_SBINDIR:PATH={rel('sbindir')}", f"-DCMAKE_INSTALL_LIBEXECDIR:PATH={rel('libexecdir')}",
           f"-DCMAKE_INSTALL_SYSCONFDIR:PATH={base['sysconfdir']}", f"-DCMAKE_INSTALL_LIBDIR:PATH={rel('libdir')}",
           f"-DCMAKE_INSTALL_INCLUDEDIR:PATH={rel('includedir')}", f"-DCMAKE_INSTALL_DATAROOTDIR:PATH={rel('datadir')}",
           "-DCMAKE_INSTALL_SO_NO_EXE=0", "-DCMAKE_NO_SYSTEM_FROM_IMPORTED=1", "-DFETCHCONTENT_FULLY_DISCONNECTED=ON"]
out("OECMAKE_ARGS", " ".join(oecmake))
out("EXTRA_OECMAKE", x("EXTRA_OECMAKE"))
out("INSTALL_APPEND", funcs.get("do_install:append", ""))
out("SYSTEMD_SERVICE", x("SYSTEMD_SERVICE:${PN}"))
out("CONFFILES", x("CONFFILES:${PN}"))
out("VSWITCH_TOPOLOGY", x("VSWITCH_TOPOLOGY"))
for k in ("bindir", "sysconfdir", "systemd_system_unitdir", "datadir", "mandir"):
    out("oe_" + k, base[k])
# Packages in BitBake's order (the first FILES pattern that matches takes the file):
# bitbake.conf's defaults, the recipe's additions, and the systemd class adding the unit
# directory to ${PN}.
pn = "vswitch"
defaults = {
    f"{pn}-src": "/usr/src/debug",
    f"{pn}-dbg": "/usr/lib/debug /usr/lib/debug-static /usr/src/debug */.debug",
    f"{pn}-staticdev": "${libdir}/*.a ${base_libdir}/*.a ${libdir}/${BPN}/*.a",
    f"{pn}-dev": "${includedir} ${FILES_SOLIBSDEV} ${libdir}/*.la ${libdir}/*.o ${libdir}/pkgconfig ${datadir}/pkgconfig "
                 "${datadir}/aclocal ${base_libdir}/*.o ${libdir}/${BPN}/*.la ${base_libdir}/*.la ${libdir}/cmake ${datadir}/cmake",
    f"{pn}-doc": "${docdir} ${mandir} ${infodir} ${datadir}/gtk-doc ${datadir}/gnome/help",
    f"{pn}-locale": "${datadir}/locale",
    pn: "${bindir}/* ${sbindir}/* ${libexecdir}/* ${libdir}/lib*${SOLIBS} ${sysconfdir} ${sharedstatedir} "
        "${localstatedir} ${base_bindir}/* ${base_sbindir}/* ${base_libdir}/*${SOLIBS} ${base_prefix}/lib/udev "
        "${prefix}/lib/udev ${base_libdir}/udev ${libdir}/udev ${datadir}/${BPN} ${libdir}/${BPN}/* "
        "${datadir}/pixmaps ${datadir}/applications ${datadir}/idl ${datadir}/omf ${datadir}/sounds "
        "${libdir}/bonobo/servers ${systemd_system_unitdir}",
}
d.setdefault("FILES_SOLIBSDEV", "${base_libdir}/lib*${SOLIBSDEV} ${libdir}/lib*${SOLIBSDEV}")
lines = []
for p, pat in defaults.items():
    extra = d.get(f"FILES:{p.replace(pn, '${PN}', 1)}", "")
    lines.append(p + " " + expand(d, pat + " " + extra))
out("PACKAGE_FILES", "\n".join(lines))
if errors:
    print("\n".join("check-layer: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY
# shellcheck source=/dev/null
source "$work/vars.sh"
echo "check-layer: recipes parse; EXTRA_OECMAKE = $EXTRA_OECMAKE"

# 3. configure / compile / install as cmake.bbclass would, for aarch64.
mkdir -p "$build/cross-include"
for dep in boost toml++ concurrentqueue; do ln -sfn "/usr/include/$dep" "$build/cross-include/$dep"; done
read -ra extra <<<"$EXTRA_OECMAKE"
read -ra oe <<<"$OECMAKE_ARGS"
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DVSWITCH_CROSS_INCLUDE="$root/$build/cross-include" "${oe[@]}" "${extra[@]}" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$build" >"$work/build.log" || { tail -50 "$work/build.log"; exit 1; }
D="$work/image"
DESTDIR="$D" cmake --install "$build" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
# do_install:append, with the recipe's variables.
S="$root" sysconfdir=$oe_sysconfdir D="$D" bash -euo pipefail -c "$(sed 's/\${\([A-Za-z_]*\)}/${\1}/g' <<<"$INSTALL_APPEND")" ||
  { echo "check-layer: do_install:append failed"; exit 1; }

fails=0
bad() { echo "check-layer: $*" >&2; fails=$((fails + 1)); }

# 4. Packaging: each file's package.
pkg_of() {  # path under D -> package, or nothing
  local f=$1 pkg pats pat
  local -
  set -f  # the patterns are BitBake's globs, matched below, never expanded against this machine
  while read -r pkg pats; do
    for pat in $pats; do
      # shellcheck disable=SC2053
      if [[ $f == $pat || $f == "$pat"/* ]]; then echo "$pkg"; return; fi
    done
  done <<<"$PACKAGE_FILES"
}
declare -A shipped=()
while IFS= read -r f; do
  f=${f#"$D"}
  p=$(pkg_of "$f")
  if [[ -z $p ]]; then bad "installed but not shipped in any package: $f"; continue; fi
  shipped[$f]=$p
  echo "  $p: $f"
done < <(find "$D" -type f -o -type l | sort)
((${#shipped[@]})) || bad "nothing installed"
for prog in vswitchd vswitchctl; do
  [[ ${shipped[$oe_bindir/$prog]:-} == vswitch ]] || bad "$oe_bindir/$prog is not in package vswitch"
  aarch64-linux-gnu-readelf -h "$D$oe_bindir/$prog" 2>/dev/null | grep -q "Machine:.*AArch64" ||
    bad "$oe_bindir/$prog is not an AArch64 ELF"
done
for m in man8/vswitchd.8 man1/vswitchctl.1; do
  [[ ${shipped[$oe_mandir/$m]:-} == vswitch-doc ]] || bad "$oe_mandir/$m is not in vswitch-doc"
done
# The unit SYSTEMD_SERVICE names (an instance of a template: foo@bar.service -> foo@.service).
for svc in $SYSTEMD_SERVICE; do
  file=$svc
  [[ $svc == *@?*.service ]] && file="${svc%%@*}@.service"
  [[ ${shipped[$oe_systemd_system_unitdir/$file]:-} == vswitch ]] ||
    bad "SYSTEMD_SERVICE $svc: $oe_systemd_system_unitdir/$file is not installed in package vswitch"
  unit="$D$oe_systemd_system_unitdir/$file"
  [[ -f $unit ]] || continue
  exec=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
  [[ $exec == "$oe_bindir/vswitchd" ]] || bad "$file: ExecStart=$exec, expected $oe_bindir/vswitchd"
  instance=${svc#*@}; instance=${instance%.service}
  if [[ $svc == *@?*.service ]]; then
    [[ -f $D$oe_sysconfdir/vswitch/$instance.toml ]] || bad "$svc runs /etc/vswitch/$instance.toml, which is not installed"
  fi
done
[[ $SYSTEMD_SERVICE == "vswitchd@$VSWITCH_TOPOLOGY.service" ]] || bad "SYSTEMD_SERVICE is $SYSTEMD_SERVICE"
for c in $CONFFILES; do [[ -f $D$c ]] || bad "CONFFILES names $c, which is not installed"; done

# 5. GoogleTest: a cross build with the tests on must not install it either.
cmake -S . -B "$work/tests-on" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DVSWITCH_CROSS_INCLUDE="$root/$build/cross-include" -DVSWITCH_BUILD_TESTS=ON -DVSWITCH_BUILD_BENCH=OFF \
  "${oe[@]}" >"$work/configure-tests.log" 2>&1 || { cat "$work/configure-tests.log"; exit 1; }
if grep -rl --include=cmake_install.cmake -e 'gtest' -e 'gmock' "$work/tests-on" >"$work/gtest-installs"; then
  bad "a cross build with tests on would install GoogleTest: $(cat "$work/gtest-installs")"
fi

if ((fails)); then echo "check-layer: $fails problem(s)" >&2; exit 1; fi
echo "check-layer: OK: every installed file is packaged, the unit is the one SYSTEMD_SERVICE names, AArch64 binaries"
