#!/usr/bin/env bash
set -euo pipefail
# UCX, which Open MPI pulls in, depends on AMD's ROCm runtime for its GPU
# transport: about 240 MB (LLVM, comgr, z3) that this CPU image never loads.
# A placeholder package satisfies that dependency (keeping dpkg's database
# consistent, so apt still works in derived images) and dpkg skips UCX's ROCm
# plugins, so nothing tries to load the absent libraries. The version is above
# the one libc6 Breaks. Bookworm's UCX has no such dependency; harmless there.
# Multi-Arch: foreign, so it stands in for the target's ROCm too when the image
# builder cross-compiles (libopenmpi-dev:arm64 on an amd64 host).
pkg=/tmp/mpi4py-kit-no-rocm
mkdir -p "$pkg/DEBIAN"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: mpi4py-kit-no-rocm
Version: 1.0
Architecture: all
Maintainer: mpi4py-kit <noreply@localhost>
Provides: libamdhip64-5 (= 5.7.1-99), libhsa-runtime64-1 (= 5.7.1-99)
Multi-Arch: foreign
Description: placeholder for AMD ROCm, left out of this CPU-only image
CONTROL
dpkg-deb --build "$pkg" "$pkg.deb" >/dev/null
dpkg -i "$pkg.deb" >/dev/null
rm -rf "$pkg" "$pkg.deb"
echo 'path-exclude=/usr/lib/*/ucx/*rocm*' > /etc/dpkg/dpkg.cfg.d/mpi4py-kit-no-rocm
