# Sourced: fetches Debian arm64 packages on an amd64 host without touching the host's dpkg
# state (no `dpkg --add-architecture`, nothing installed): a private apt state (own
# sources.list made from the host's Debian sources, APT::Architecture=arm64, own lists,
# cache and an empty dpkg status), `apt-get download`, `dpkg-deb -x` into a sysroot.
#
#   arm64_apt_init DIR
#       apt state under DIR, `apt-get update` on it; quick when already done (the stamp
#       DIR/updated holds the sources it was made from). ARM64_APT_REFRESH=1 forces an update.
#   arm64_apt DIR apt-get|apt-cache ARGS...
#       runs apt-get or apt-cache on that state (e.g. `arm64_apt DIR apt-cache show PKG`).
#   arm64_fetch DIR SYSROOT PKG...
#       downloads each package (cached in DIR/debs; exact names, no dependencies) and unpacks
#       it into SYSROOT (once per .deb: SYSROOT/.arm64-unpacked records them).
#   arm64_fetch_libs DIR SYSROOT FILE...
#       the shared-library closure of the ELF FILEs: each DT_NEEDED soname is looked up in
#       SYSROOT (its DT_RUNPATH/RPATH, then lib/aarch64-linux-gnu, usr/lib/aarch64-linux-gnu,
#       lib, usr/lib); a soname not there is mapped to its package (the host's `dpkg -S` for
#       the same soname, then the usual Debian name libfooN / libfoo-1.2-N, then the arm64
#       Contents index, downloaded once on first need), fetched, and the loop goes on until
#       nothing is missing. Prints the closure, one path inside SYSROOT per line (the program
#       interpreter first): copy each with `cp -L` to the same path in the guest.
#
# Every apt run is bounded (ARM64_APT_TIMEOUT seconds, default 600), errors name the
# package or soname, concurrent callers sharing DIR serialise on DIR/lock. Only Debian's
# archive is contacted (the host's deb.debian.org sources). Needs apt, dpkg-deb, readelf.

arm64_err() { echo "arm64-lib: $*" >&2; return 1; }

# The private apt options (printed one per line), the lists and cache under DIR. The host's
# apt.conf.d is not read (it may enable other index targets or hooks that act on the host).
_arm64_apt_opts() {
  local d
  d=$(cd "$1" && pwd)
  printf '%s\n' \
    "-o" "APT::Architecture=arm64" "-o" "APT::Architectures::=arm64" \
    "-o" "Dir::Etc::main=/dev/null" "-o" "Dir::Etc::parts=$d/apt.conf.d" \
    "-o" "Dir::Etc::sourcelist=$d/sources.list" "-o" "Dir::Etc::sourceparts=$d/sources.list.d" \
    "-o" "Dir::Etc::preferences=/dev/null" "-o" "Dir::Etc::preferencesparts=$d/preferences.d" \
    "-o" "Dir::State=$d/state" "-o" "Dir::State::Lists=$d/lists" \
    "-o" "Dir::State::status=/dev/null" "-o" "Dir::Cache=$d/cache" \
    "-o" "Dir::Cache::archives=$d/cache/archives" \
    "-o" "Dir::Cache::pkgcache=$d/cache/pkgcache.bin" "-o" "Dir::Cache::srcpkgcache=$d/cache/srcpkgcache.bin" \
    "-o" "Debug::NoLocking=true" "-o" "APT::Sandbox::User=root" \
    "-o" "Acquire::Languages=none" "-o" "Acquire::GzipIndexes=true" \
    "-o" "Acquire::Check-Valid-Until=false" "-o" "Acquire::Check-Date=false" \
    "-o" "Acquire::Retries=3" "-o" "Acquire::http::Timeout=60"
}

arm64_apt() {
  local dir=$1 tool=$2 opts
  shift 2
  [[ $tool == apt-get || $tool == apt-cache ]] || arm64_err "arm64_apt: apt-get or apt-cache, not '$tool'" || return 1
  mapfile -t opts < <(_arm64_apt_opts "$dir")
  timeout "${ARM64_APT_TIMEOUT:-600}" "$tool" "${opts[@]}" "$@"
}

# The host's Debian sources as one-line entries for arm64: deb822 .sources files and
# sources.list lines whose URI is on debian.org (other repositories may not carry arm64,
# or may not be reachable).
_arm64_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && uris ~ /debian\.org/ && enabled != "no") {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            printf "deb [arch=arm64%s] %s %s %s\n", (key != "" ? " signed-by=" key : ""), u[i], s[j], comps
        }
        types = uris = suites = comps = key = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      { field = tolower($1); sub(/:$/, "", field); $1 = ""; sub(/^ +/, "")
        if (field == "types") types = $0; else if (field == "uris") uris = $0
        else if (field == "suites") suites = $0; else if (field == "components") comps = $0
        else if (field == "signed-by") key = $0; else if (field == "enabled") enabled = tolower($0) }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    # "deb [opts] URI suite comps": drop any arch= option, add arch=arm64.
    sed -n -E '/^[[:space:]]*deb[[:space:]]/!d; /debian\.org/!d
      s/arch=[^] ]*//; s/^[[:space:]]*deb[[:space:]]+\[/deb [arch=arm64 /; t done
      s/^[[:space:]]*deb[[:space:]]+/deb [arch=arm64] /; :done
      p' "$f"
  done
}

_arm64_update() {  # DIR [EXTRA APT OPTIONS...]: apt-get update on the private state, under the lock
  local dir=$1
  shift
  echo "arm64-lib: apt-get update (arm64 lists in $dir/lists)" >&2
  (
    flock -w "${ARM64_APT_TIMEOUT:-600}" 9 || arm64_err "$dir/lock is held by another fetch" || exit 1
    arm64_apt "$dir" apt-get update -qq "$@" >&2 || arm64_err "apt-get update of the arm64 lists failed (see above)" || exit 1
  ) 9>"$dir/lock"
}

arm64_apt_init() {
  local dir sources
  [[ -n ${1:-} ]] || arm64_err "arm64_apt_init DIR" || return 1
  dir=$(realpath -m -- "$1")
  mkdir -p "$dir"/{apt.conf.d,sources.list.d,preferences.d,state,lists/partial,cache/archives/partial,debs}
  sources=$(_arm64_sources)
  [[ -n $sources ]] || arm64_err "no Debian (debian.org) apt source on this host to copy" || return 1
  if [[ ${ARM64_APT_REFRESH:-0} != 1 && -f $dir/updated && $(cat "$dir/updated") == "$sources" ]] &&
    compgen -G "$dir/lists/*_Packages*" >/dev/null; then
    return 0
  fi
  printf '%s\n' "$sources" >"$dir/sources.list"
  _arm64_update "$dir" || return 1
  compgen -G "$dir/lists/*binary-arm64_Packages*" >/dev/null ||
    arm64_err "apt-get update produced no arm64 Packages index in $dir/lists" || return 1
  printf '%s\n' "$sources" >"$dir/updated"
}

# _arm64_download DIR PKG: prints the path of PKG's .deb in DIR/debs, downloading it if it
# is not there with the size the index gives. A download that fails (an index older than
# the archive) updates the lists once and tries again.
_arm64_download() {
  local dir=$1 pkg=$2 file size attempt
  for attempt in 1 2; do
    read -r _ file size _ < <(arm64_apt "$dir" apt-get download --print-uris "$pkg" 2>/dev/null | tail -1) || true
    [[ -n ${file:-} ]] || arm64_err "no arm64 package '$pkg' in the Debian archive (apt-cache policy finds nothing)" || return 1
    if [[ -f $dir/debs/$file && $(stat -c %s "$dir/debs/$file") == "$size" ]]; then
      echo "$dir/debs/$file"
      return 0
    fi
    if (
      flock -w "${ARM64_APT_TIMEOUT:-600}" 9 || exit 1
      cd "$dir/debs" && arm64_apt "$dir" apt-get download -qq "$pkg" >&2
    ) 9>"$dir/lock"; then
      [[ -f $dir/debs/$file ]] && { echo "$dir/debs/$file"; return 0; }
    fi
    ((attempt == 1)) && { _arm64_update "$dir" || return 1; }
    unset file size
  done
  arm64_err "downloading arm64 package '$pkg' failed"
}

arm64_fetch() {
  local dir sysroot pkg deb
  [[ -n ${1:-} && -n ${2:-} ]] || arm64_err "arm64_fetch DIR SYSROOT PKG..." || return 1
  dir=$(realpath -m -- "$1")
  sysroot=$(realpath -m -- "$2")
  shift 2
  [[ -f $dir/updated ]] || arm64_apt_init "$dir" || return 1
  mkdir -p "$sysroot"
  for pkg in "$@"; do
    deb=$(_arm64_download "$dir" "$pkg") || return 1
    grep -qxF "$(basename "$deb")" "$sysroot/.arm64-unpacked" 2>/dev/null && continue
    dpkg-deb -x "$deb" "$sysroot" || arm64_err "dpkg-deb -x $deb failed" || return 1
    basename "$deb" >>"$sysroot/.arm64-unpacked"
  done
}

# _arm64_find SYSROOT SONAME RUNPATH...: the soname's path inside SYSROOT, if there.
_arm64_find() {
  local sysroot=$1 so=$2 d
  shift 2
  for d in "$@" lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu lib usr/lib; do
    if [[ -e $sysroot/$d/$so ]]; then
      echo "$sysroot/$d/$so"
      return 0
    fi
  done
  return 1
}

# _arm64_candidates DIR SONAME STAGE: packages that may hold SONAME. Stage 1: the package
# that holds the same soname on this host (amd64), when installed; stage 2: Debian's library
# package naming (policy 8.1: libfoo.so.1 -> libfoo1, libfoo-2.0.so.0 / libfoo2.so.0 ->
# libfoo-2.0-0 / libfoo2-0); stage 3: the arm64 Contents index (downloaded on first need).
_arm64_candidates() {
  local dir=$1 so=$2 base ver stem contents
  case $3 in
    1) dpkg -S "*/$so" 2>/dev/null | cut -d: -f1 | tr ',' '\n' | sed 's/^ *//' | sort -u ;;
    2)
      if [[ $so =~ ^(.+)\.so\.([0-9]+)(\..*)?$ ]]; then
        base=${BASH_REMATCH[1],,}
        ver=${BASH_REMATCH[2]}
        base=${base//_/-}
        if [[ $base =~ [0-9]$ ]]; then echo "$base-$ver"; else echo "$base$ver"; fi
      elif [[ $so =~ ^(.+)\.so$ ]]; then
        echo "${BASH_REMATCH[1],,}"
      fi ;;
    3)
      contents=$(_arm64_contents "$dir") || return 0
      for stem in $contents; do
        /usr/lib/apt/apt-helper cat-file "$stem" 2>/dev/null |
          awk -v so="$so" '{ n = split($1, p, "/"); if (p[n] == so) { m = split($NF, q, ","); for (i = 1; i <= m; i++) { sub(/.*\//, "", q[i]); print q[i] } } }'
      done | sort -u ;;
  esac
}

# _arm64_contents DIR: the Contents-arm64 index files, fetched with apt's own index
# targets (what apt-file configures) on the first call.
_arm64_contents() {
  local dir=$1 t="Acquire::IndexTargets::deb::Contents-arm64-vswitch"
  if ! compgen -G "$dir/lists/*Contents-arm64*" >/dev/null; then
    echo "arm64-lib: fetching the arm64 Contents index (a soname no package name explains)" >&2
    _arm64_update "$dir" -o "$t::MetaKey=\$(COMPONENT)/Contents-\$(ARCHITECTURE)" \
      -o "$t::ShortDescription=Contents-\$(ARCHITECTURE)" \
      -o "$t::Description=\$(RELEASE)/\$(COMPONENT) \$(ARCHITECTURE) Contents" \
      -o "$t::flatMetaKey=Contents-\$(ARCHITECTURE)" -o "$t::KeepCompressed=true" >/dev/null || return 1
  fi
  compgen -G "$dir/lists/*Contents-arm64*" | grep -v '/partial/'
}

# _arm64_elf_deps SYSROOT FILE: "interp PATH", "needed SONAME", "runpath DIR" lines.
_arm64_elf_deps() {
  local sysroot=$1 file=$2 origin
  origin=$(dirname "${file#"$sysroot"/}")
  readelf -lW "$file" 2>/dev/null | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/interp \1/p'
  readelf -dW "$file" 2>/dev/null | awk -v origin="$origin" '
    /\(NEEDED\)/ { s = $0; sub(/.*\[/, "", s); sub(/\].*/, "", s); print "needed " s }
    /\((RUNPATH|RPATH)\)/ { s = $0; sub(/.*\[/, "", s); sub(/\].*/, "", s)
      n = split(s, d, ":"); for (i = 1; i <= n; i++) { gsub(/\$ORIGIN|\$\{ORIGIN\}/, origin, d[i]); sub(/^\//, "", d[i]); print "runpath " d[i] } }'
}

arm64_fetch_libs() {
  local dir sysroot f kind arg so path pkg found stage rounds=0
  [[ -n ${1:-} && -n ${2:-} && $# -gt 2 ]] || arm64_err "arm64_fetch_libs DIR SYSROOT FILE..." || return 1
  dir=$(realpath -m -- "$1")
  sysroot=$(realpath -m -- "$2")
  shift 2
  local -a work=() closure=() runpath=()
  local -A seen=() tried=()
  for f in "$@"; do
    [[ -f $f ]] || arm64_err "arm64_fetch_libs: no file $f" || return 1
    readelf -h "$f" 2>/dev/null | grep -q 'Machine:.*AArch64' || arm64_err "arm64_fetch_libs: $f is not an AArch64 ELF file" || return 1
    work+=("$f")
  done
  while ((${#work[@]})); do
    f=${work[0]}
    work=("${work[@]:1}")
    ((++rounds <= 2000)) || arm64_err "arm64_fetch_libs: more than 2000 files in the closure, giving up" || return 1
    runpath=()
    local -a needed=()
    while read -r kind arg; do
      case $kind in
        interp)
          path=$sysroot$arg
          if [[ -z ${seen[$arg]:-} ]]; then
            [[ -e $path ]] || arm64_fetch "$dir" "$sysroot" libc6 || return 1
            [[ -e $path ]] || arm64_err "interpreter $arg of $f not in $sysroot after fetching libc6" || return 1
            seen[$arg]=1
            closure=("$path" "${closure[@]}")
          fi ;;
        runpath) runpath+=("$arg") ;;
        needed) needed+=("$arg") ;;
      esac
    done < <(_arm64_elf_deps "$sysroot" "$f")
    for so in "${needed[@]}"; do
      [[ -n ${seen[$so]:-} ]] && continue
      if ! path=$(_arm64_find "$sysroot" "$so" "${runpath[@]}"); then
        found=""
        for stage in 1 2 3; do
          for pkg in $(_arm64_candidates "$dir" "$so" "$stage"); do
            [[ -z ${tried[$pkg]:-} ]] || continue
            tried[$pkg]=1
            arm64_apt "$dir" apt-cache show --no-all-versions "$pkg" >/dev/null 2>&1 || continue
            echo "arm64-lib: $so <- $pkg" >&2
            arm64_fetch "$dir" "$sysroot" "$pkg" || return 1
            path=$(_arm64_find "$sysroot" "$so" "${runpath[@]}") && { found=1; break 2; }
          done
        done
        [[ -n $found ]] || arm64_err "no arm64 package provides $so (needed by ${f#"$sysroot"/})" || return 1
      fi
      seen[$so]=1
      closure+=("$path")
      work+=("$(readlink -f "$path")")
    done
  done
  printf '%s\n' "${closure[@]}"
}
