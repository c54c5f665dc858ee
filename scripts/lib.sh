# Sourced by the scripts: small helpers more than one of them needs.

# duration_seconds D: D as seconds; D is a number of seconds or one with a unit (90s,
# 30m, 12h, 3d). Returns 1, printing nothing, for anything else.
duration_seconds() {
  [[ $1 =~ ^([0-9]+)([smhd]?)$ ]] || return 1
  local n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    d) echo $((n * 86400)) ;; h) echo $((n * 3600)) ;; m) echo $((n * 60)) ;; *) echo "$n" ;;
  esac
}
