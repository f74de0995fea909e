#!/usr/bin/env bash
# Builds the container image localhost/hawiya:VERSION from Debian packages
# only (no registry base image): a `mmdebstrap --variant=minbase bookworm`
# root filesystem plus the runtime libraries the installed binaries link,
# the binaries and configuration from `cmake --install`, and a non-root user
# `hawiya` (uid/gid 10001), committed with buildah from scratch.
#
# Usage: deploy/container/build-image.sh [BUILD_DIR]   (default: build)
# BUILD_DIR must hold a configured build; hawiya-server and hawiya are
# (re)built there first. Needs root (mmdebstrap, buildah). Prints the image
# name on the last line of stdout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$(realpath "${1:-$repo/build}")
start=$SECONDS
say() { echo "build-image: [$((SECONDS - start))s] $*" >&2; }

# shellcheck source=deploy/container/common.sh
source "$repo/deploy/container/common.sh"
ensure_container_tools
image=$(hawiya_image)
uid=$HAWIYA_UID

[ -f "$build_dir/build.ninja" ] || {
  echo "build-image: $build_dir is not a configured build (run deploy/build.sh)" >&2
  exit 2
}
say "building hawiya-server and hawiya in $build_dir"
ninja -C "$build_dir" hawiya-server hawiya >&2

work=$(mktemp -d /var/tmp/hawiya-image.XXXXXX)
ctr=""
cleanup() {
  [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

packages=$(runtime_packages "$build_dir")
say "runtime packages: $(echo "$packages" | tr '\n' ' ')"

# The same archive the binaries were built against (bookworm with its
# updates and security fixes), so every library is the version they linked.
mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)

# Hooks run on the host with the root filesystem in "$1".
# --strip: the debug info of a RelWithDebInfo build is ~3/4 of the binaries.
install_hook="DESTDIR=\"\$1\" cmake --install '$build_dir' --prefix /usr --strip >&2"
user_hook="echo 'hawiya:x:$uid:$uid:Hawiya:/var/lib/hawiya:/usr/sbin/nologin' >> \"\$1/etc/passwd\"
echo 'hawiya:x:$uid:' >> \"\$1/etc/group\"
if [ -f \"\$1/etc/shadow\" ]; then echo 'hawiya:!:19000::::::' >> \"\$1/etc/shadow\"; fi
install -d -m 0700 -o $uid -g $uid \"\$1/var/lib/hawiya\""
# Every library resolves inside the image (ldd of the image's own loader).
ldd_hook="for b in /usr/bin/hawiya-server /usr/bin/hawiya; do
  out=\$(chroot \"\$1\" ldd \"\$b\") || { echo \"ldd \$b failed\" >&2; exit 1; }
  if echo \"\$out\" | grep -q 'not found'; then
    echo \"build-image: \$b: missing libraries in the image:\" >&2
    echo \"\$out\" | grep 'not found' >&2; exit 1
  fi
done
chroot \"\$1\" /usr/bin/hawiya-server --version >&2"
# Keep the image small: no package caches or lists, no logs, no manuals,
# no translations; Debian's copyright files and Hawiya's docs stay.
strip_hook="rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/* \"\$1\"/var/cache/debconf/*-old \
  \"\$1\"/var/log/* \"\$1\"/usr/share/man \"\$1\"/usr/share/info \"\$1\"/usr/share/locale \
  \"\$1\"/usr/share/lintian \"\$1\"/usr/share/common-licenses \\
  \"\$1\"/usr/lib/systemd/system/hawiya.service \"\$1\"/usr/lib/sysusers.d/hawiya.conf
find \"\$1\"/usr/share/doc -mindepth 1 -maxdepth 1 ! -name hawiya -exec sh -c 'find \"\$0\" -type f ! -name copyright -delete' {} \\;"

# merged-usr hook: the /usr merge without the usrmerge package (and the
# Perl it pulls in, ~35 MiB).
say "mmdebstrap --variant=minbase bookworm (+ $(echo "$packages" | wc -l) packages)"
mmdebstrap --variant=minbase \
  --aptopt='APT::Install-Recommends "false"' \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$(echo "$packages" | paste -sd,)" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="$install_hook" \
  --customize-hook="$user_hook" \
  --customize-hook="$ldd_hook" \
  --customize-hook="$strip_hook" \
  bookworm "$work/rootfs.tar" "${mirrors[@]}" >&2
say "root filesystem: $(du -h "$work/rootfs.tar" | cut -f1) tar"

ctr=$(buildah from scratch)
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
buildah config \
  --user hawiya \
  --workingdir /var/lib/hawiya \
  --entrypoint '["/usr/bin/hawiya-server"]' \
  --cmd '["--config=/etc/hawiya/hawiya.textproto", "--data_dir=/var/lib/hawiya", "--listen=0.0.0.0:50051"]' \
  --port 50051 \
  --volume /var/lib/hawiya \
  --stop-signal SIGTERM \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env HOME=/var/lib/hawiya \
  --label org.opencontainers.image.title=hawiya \
  --label org.opencontainers.image.description="Hawiya civil identity and biometric matching server" \
  --label org.opencontainers.image.version="$(hawiya_version)" \
  --label org.opencontainers.image.revision="$revision" \
  --label org.opencontainers.image.base.name="debian:bookworm (mmdebstrap minbase)" \
  "$ctr"
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
ctr=""
# The image this one replaced, if no container or tag still uses it.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
say "committed $image: $((size / 1024 / 1024)) MiB in $((SECONDS - start)) s"
echo "$image"
