#!/bin/sh
# Makes the release files of a version from HEAD of this git checkout:
#   DIR/agentsession-VERSION.tar.gz   the tracked files, under agentsession-VERSION/
#   DIR/agentsession-VERSION-1.rockspec  HEAD's scm rockspec with that tarball as its source
# Usage: sh tools/dist.sh VERSION DIR (make dist runs it with the Makefile's VERSION).
set -e
version=$1
dir=$2
if [ -z "$version" ] || [ -z "$dir" ]; then
    echo "usage: sh tools/dist.sh VERSION DIR" >&2
    exit 2
fi
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    echo "dist: needs a git checkout with a commit" >&2
    exit 1
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "dist: uncommitted changes are left out: the tarball holds HEAD" >&2
fi
name=agentsession-$version
mkdir -p "$dir"
git archive --format=tar.gz --prefix="$name/" -o "$dir/$name.tar.gz" HEAD
rockspec=$dir/$name-1.rockspec
if ! git show HEAD:agentsession-scm-1.rockspec | lua5.4 tools/release-rockspec.lua "$version" >"$rockspec.tmp"; then
    rm -f "$rockspec.tmp"
    exit 1
fi
mv "$rockspec.tmp" "$rockspec"
echo "dist: $dir/$name.tar.gz $rockspec"
