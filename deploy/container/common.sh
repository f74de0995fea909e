# shellcheck shell=bash
# Shared by the container scripts (sourced, not run; the caller sets $repo,
# the checkout's root).
# shellcheck disable=SC2154

# The image's user and group id (fixed, so volume ownership is predictable).
# shellcheck disable=SC2034
HAWIYA_UID=10001

# The CMake project version: the image tag.
hawiya_version() {
  sed -n 's/^project(hawiya VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt"
}

hawiya_image() { echo "localhost/hawiya:$(hawiya_version)"; }

# Installs the Debian tools the image build and its test use, if missing.
ensure_container_tools() {
  local p missing=()
  for p in mmdebstrap buildah podman runc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "container: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >&2
  fi
}

# The Debian packages that hold the shared libraries the built binaries
# load (ldd, then dpkg -S of each library's real path), one per line, sorted.
runtime_packages() {
  local build_dir=$1 lib real candidates c pkg
  {
    for bin in "$build_dir/services/hawiya-server" "$build_dir/services/hawiya"; do
      ldd "$bin" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }'
    done
  } | sort -u | while read -r lib; do
    real=$(realpath "$lib")
    # Merged /usr: a package may list the file under /lib or /usr/lib.
    candidates=("$real" "${real#/usr}" "/usr$real")
    pkg=""
    for c in "${candidates[@]}"; do
      pkg=$(dpkg-query -S "$c" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
    done
    [ -n "$pkg" ] || { echo "container: no Debian package holds $lib ($real)" >&2; return 1; }
    echo "$pkg"
  done | sort -u
}
