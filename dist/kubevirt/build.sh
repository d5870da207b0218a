#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Builds the KubeVirt pr-helper image (docs/kubevirt.md) and writes it as an
# OCI archive: target/kubevirt/qemu-pr-helper-rs-VERSION.oci.tar.
# Needs root, buildah and busybox-static (Debian: apt-get install buildah
# busybox-static); runs no container: the Containerfile only copies files.
# SOURCE_URL sets the image's source label (default: git's origin, if any).
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in buildah ldd; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (apt-get install buildah)" >&2; exit 1; }
done
busybox=/bin/busybox
if [[ ! -x $busybox ]] || LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
    echo "build.sh: $busybox is not a static busybox (apt-get install busybox-static)" >&2
    exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
licenses=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# Without the user part of a URL: no credentials in a label.
source_url=${SOURCE_URL:-$(git config --get remote.origin.url 2>/dev/null | sed 's#://[^/@]*@#://#' || true)}
out_dir=target/kubevirt
archive=$out_dir/qemu-pr-helper-rs-$version.oci.tar
name=localhost/qemu-pr-helper-rs:$version

cargo build --release --quiet --bin qemu-pr-helper
helper=target/release/qemu-pr-helper

# The root: the helper, the libraries its loader resolves (at the paths ldd
# gives, links followed), the entrypoint and a shell for it.
context=$out_dir/context
rm -rf "$context"
root=$context/rootfs
install -d -m 0755 "$root/usr/bin" "$root/etc" "$root/run" "$root/var"
install -m 0755 "$helper" "$root/usr/bin/qemu-pr-helper"
LC_ALL=C ldd "$helper" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
install -m 0755 dist/kubevirt/entrypoint.sh "$root/entrypoint.sh"
install -m 0644 dist/kubevirt/qemu-pr-helper.toml "$root/etc/qemu-pr-helper.toml"
install -D -m 0755 "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
ln -s busybox "$root/bin/ln"
ln -s ../run "$root/var/run"
cp dist/kubevirt/Containerfile "$context/"

# A private, throw-away store: nothing is left in /var/lib/containers.
store=$(mktemp -d "${TMPDIR:-/tmp}/qemu-pr-helper-image.XXXXXX")
trap 'buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs rmi --all >/dev/null 2>&1 || true; rm -rf "$store"' EXIT
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
bh build --quiet --timestamp "$epoch" \
    --build-arg VERSION="$version" --build-arg SOURCE="$source_url" --build-arg LICENSES="$licenses" \
    -f "$context/Containerfile" -t "$name" "$context" >/dev/null
rm -f "$archive"
bh push --quiet "$name" "oci-archive:$archive:qemu-pr-helper-rs:$version"

size=$(stat -c %s "$archive")
unpacked=$(du -s --apparent-size -B1 "$root" | cut -f1)
echo "image: $archive"
echo "size: $((size / 1024)) KiB archive, $((unpacked / 1024)) KiB unpacked (helper $(($(stat -c %s "$helper") / 1024)) KiB)"
