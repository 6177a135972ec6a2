# Sourced by scripts that install Debian packages (deps.sh, containers.sh).
#
#   apt_install_missing LOG_PREFIX PACKAGE...
#
# Installs those of PACKAGE that dpkg does not list as installed (apt-get update first, sudo
# when not root); quiet when every one is there. Without dpkg (not Debian) it does nothing.
apt_install_missing() {
  local prefix=$1 p
  shift
  local missing=()
  command -v dpkg-query >/dev/null || return 0
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  printf '%s: installing: %s\n' "$prefix" "${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
