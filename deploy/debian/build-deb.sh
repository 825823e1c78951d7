#!/bin/bash
# Builds the Debian binary package of corecast with dpkg-deb alone (no debhelper, no
# cargo-deb): deploy/debian/build-deb.sh BINARY OUTDIR, e.g.
#   deploy/debian/build-deb.sh target/release/corecast target/deb
# writes OUTDIR/corecast_<version>_<arch>.deb and prints its path as the last line.
#
# The version is the [package] version of Cargo.toml ("-" becomes "~", so that a
# pre-release sorts before its release), the architecture dpkg's. Environment:
#   DEB_MAINTAINER       the Maintainer field (default: corecast maintainers <...>)
#   DEB_BUILD_OPTIONS    "nostrip" keeps the binary's debug information and symbols
#   SOURCE_DATE_EPOCH    the time stamp of the files and of the changelog entry
# Needs dpkg-deb, strip (binutils) and, for Depends, dpkg-shlibdeps (dpkg-dev) or readelf.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 2
fi
binary=$1
outdir=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "$0: $binary is not an executable file" >&2
    exit 1
fi

version=$(sed -n '/^\[package\]/,/^\[/ s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
    "$repo/Cargo.toml" | head -n 1)
if [ -z "$version" ]; then
    echo "$0: no [package] version in $repo/Cargo.toml" >&2
    exit 1
fi
# 1.2.0-rc.1 (SemVer pre-release) -> 1.2.0~rc.1, which dpkg sorts before 1.2.0.
version=${version/-/\~}
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-corecast maintainers <maintainers@corecast.invalid>}
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    epoch=$SOURCE_DATE_EPOCH
elif epoch=$(git -C "$repo" log -1 --format=%ct 2>/dev/null) && [ -n "$epoch" ]; then
    :
else
    epoch=$(date +%s)
fi

umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/corecast-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
# debian/corecast: where dpkg-shlibdeps expects a package's files.
root=$work/debian/corecast
doc=$root/usr/share/doc/corecast

install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/corecast" "$root/etc/default" \
    "$root/lib/systemd/system" "$root/usr/share/man/man1" "$doc"
install -m 0755 "$binary" "$root/usr/bin/corecast"
case " ${DEB_BUILD_OPTIONS:-} " in
*" nostrip "*) ;;
# As dh_strip does for executables: no symbols, no debug information.
*) strip --remove-section=.comment --remove-section=.note "$root/usr/bin/corecast" ;;
esac
install -m 0644 "$repo/config/corecast.toml" "$root/etc/corecast/corecast.toml"
install -m 0644 "$here/corecast.default" "$root/etc/default/corecast"
install -m 0644 "$repo/deploy/systemd/corecast.service" "$root/lib/systemd/system/corecast.service"
# Uncompressed: the unit's Documentation= names OPERATIONS.md.
install -m 0644 "$repo/README.md" "$repo/docs/OPERATIONS.md" "$repo/docs/SECURITY.md" \
    "$repo/docs/TUNING.md" "$here/copyright" "$doc/"
gzip -9n <"$here/corecast.1" >"$root/usr/share/man/man1/corecast.1.gz"
changelog_date=$(date -u -R -d "@$epoch")
{
    echo "corecast ($version) unstable; urgency=medium"
    echo
    echo "  * Release $version. The changes are in the project's history."
    echo
    echo " -- $maintainer  $changelog_date"
} | gzip -9n >"$doc/changelog.gz"

# Depends: the shared libraries the binary links, and adduser for the postinst.
if command -v dpkg-shlibdeps >/dev/null; then
    printf 'Source: corecast\n\nPackage: corecast\nArchitecture: any\n' >"$work/debian/control"
    shlibs=$(cd "$work" && dpkg-shlibdeps -O debian/corecast/usr/bin/corecast)
    shlibs=${shlibs#shlibs:Depends=}
else
    # The newest glibc symbol version the binary needs is the least libc6 it runs with.
    glibc=$(readelf --dyn-syms -W "$root/usr/bin/corecast" |
        grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -u -V | tail -n 1)
    shlibs="libc6 (>= ${glibc:-2.31})"
    if readelf -d "$root/usr/bin/corecast" | grep -q 'NEEDED.*libgcc_s\.so\.1'; then
        shlibs="$shlibs, libgcc-s1"
    fi
fi
depends="adduser, $shlibs"

installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)
maintainer_sed=${maintainer//\\/\\\\}
maintainer_sed=${maintainer_sed//&/\\&}
maintainer_sed=${maintainer_sed//|/\\|}
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer_sed|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@DEPENDS@|$depends|" \
    "$here/control.in" >"$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
# md5sums: every file but the conffiles (dpkg keeps their sums itself), as dh_md5sums.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    grep -v -x -F -f <(sed 's|^/||' "$here/conffiles") | xargs -d '\n' md5sum) \
    >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$outdir"
deb=$outdir/corecast_${version}_${arch}.deb
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group --build "$root" "$deb" >&2
echo "$deb"
