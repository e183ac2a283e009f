# Shared by demo.sh, test.sh and .ci/run: make sure the build tools and the
# Debian packages sluice uses are present. As root they are installed with
# apt-get; otherwise the exact command is printed and the script stops.
sluice_need() {
  # $@: Debian package names
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "sluice: missing packages: ${missing[*]} (install them with your package manager)" >&2
    return 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    echo "sluice: installing ${missing[*]}" >&2
    if [ -z "${SLUICE_APT_UPDATED:-}" ]; then
      apt-get update -qq >&2 || return 1
      export SLUICE_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || return 1
  else
    echo "sluice: missing packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

sluice_core_packages="cmake ninja-build g++ libconcurrentqueue-dev libfmt-dev"
sluice_test_packages="$sluice_core_packages catch2 pkg-config libnats-dev nats-server"
# Installed by .ci/run only: Debian's prometheus package also sets up a
# system service, which a developer's machine should not get from test.sh.
# The tests that need it (promtool, a real scrape) run where it is found.
sluice_ci_packages="prometheus"
