#!/bin/bash
# Builds and tests the addon against a libtorch 2.x: Debian trixie's libtorch-dev (2.6) and nodejs, in a
# debootstrap chroot, next to the host's Debian 12 libtorch 1.13. What CI runs is the 1.13 build; this script
# is the re-runnable check that the same sources also build (C++17, libtorch 2.x op signatures) and pass every test
# folder that touches the addon on a libtorch 2.x. Not in CI: the first run downloads ~1 GB of packages; once the
# chroot has them, nothing is downloaded (it runs offline).
#
#   sudo bash scripts/libtorch2-chroot.sh [test files or folders under dist/test/ ...]
#
# Environment: CHROOT (default /var/tmp/goodvibe-trixie), MIRROR (default http://deb.debian.org/debian),
# SUITE (default trixie), KEEP_MOUNTS=1 to leave /proc and /dev mounted (for a manual `chroot $CHROOT`),
# GEMMA3_COMPARE=0 to skip the gemma3 training-step comparison (minutes; e.g. when only one test file is asked for).
# The working tree (tracked and untracked-not-ignored files, plus node_modules hard-linked) is copied to
# $CHROOT/work/goodvibe on every run; native/build and dist are rebuilt there and never touch this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CHROOT=${CHROOT:-/var/tmp/goodvibe-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-trixie}
# python3-torch (the same 2.6): the gemma3 training-step comparison below runs the fixture's recipe in PyTorch 2.6.
# libopenblas0: what apt's Recommends give a user of libtorch2.6; without it (--no-install-recommends) libtorch's
# float32 products run on the reference BLAS, ~3 GFLOP/s against ~70-135 (BENCHMARKS "libtorch 2.x on AVX2 CPUs").
# npm: test/package packs the tree and installs the tarball into a user's project (`npm ci --offline`, from a copy of
# this machine's npm cache, made below only when that folder is asked for).
PACKAGES="libtorch-dev nodejs libnode-dev npm build-essential python3 ca-certificates python3-torch python3-numpy libopenblas0"
TESTS=("$@")
# every folder whose tests use the addon, except scale (minutes a test) and package (npm pack: ask for it by name,
# dist/test/package); the sandbox tests (utility) skip themselves in the chroot (no bubblewrap / namespaces there).
# ~25 min of tests on one core.
[ ${#TESTS[@]} -gt 0 ] || TESTS=(dist/test/{tensor,models,method,recipes,cli,evalcore,io,gguf,experiment,backends,cluster,config,data,http,organism,paper,robustness,utility})

[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot, mount)" >&2; exit 2; }

# ---------------------------------------------------------------- the chroot (once)
if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  echo "== debootstrap $SUITE into $CHROOT"
  mkdir -p "$CHROOT"
  debootstrap --variant=minbase "$SUITE" "$CHROOT" "$MIRROR"
fi

mounted=()
cleanup() {
  if [ "${KEEP_MOUNTS:-0}" != 1 ]; then
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
for m in proc dev dev/pts sys; do
  mountpoint -q "$CHROOT/$m" && continue
  mkdir -p "$CHROOT/$m"
  case $m in
  proc) mount -t proc proc "$CHROOT/proc" ;;
  sys) mount -t sysfs sys "$CHROOT/sys" ;;
  *) mount --bind "/$m" "$CHROOT/$m" ;;
  esac
  mounted+=("$CHROOT/$m")
done
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
in_chroot() { chroot "$CHROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"; }

if ! in_chroot dpkg -s $PACKAGES >/dev/null 2>&1; then
  echo "== apt-get install $PACKAGES"
  in_chroot apt-get update
  in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
fi

# ---------------------------------------------------------------- the working tree
DEST="$CHROOT/work/goodvibe"
echo "== copying the working tree to $DEST"
rm -rf "$DEST"
mkdir -p "$DEST"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -C "$DEST" -xf -
cp -al node_modules "$DEST/node_modules" 2>/dev/null || cp -a node_modules "$DEST/node_modules"
# test/package installs from the npm cache alone (no registry): the chroot gets a copy of this machine's cache
case " ${TESTS[*]} " in
*package*)
  CACHE=$(npm config get cache 2>/dev/null || echo "$HOME/.npm")
  [ -d "$CACHE" ] || { echo "test/package needs this machine's npm cache ($CACHE): run npm ci here first" >&2; exit 2; }
  rm -rf "$CHROOT/root/.npm" && cp -a "$CACHE" "$CHROOT/root/.npm"
  ;;
esac
# ../shared holds the real datasets some tests read (they skip cleanly when it is absent)
[ -d ../shared ] && { mkdir -p "$CHROOT/work/shared"; mountpoint -q "$CHROOT/work/shared" || { mount --bind -o ro "$(readlink -f ../shared)" "$CHROOT/work/shared" && mounted+=("$CHROOT/work/shared"); }; }

# ---------------------------------------------------------------- build and test inside
in_chroot bash -euo pipefail -c "
  cd /work/goodvibe
  echo \"== \$(. /etc/os-release; echo \$PRETTY_NAME), node \$(node --version), g++ \$(g++ -dumpversion), libtorch-dev \$(dpkg-query -W -f='\${Version}' libtorch-dev)\"
  node scripts/build-native.mjs --force
  node node_modules/typescript/bin/tsc -p .
  node -e 'import(\"./dist/src/tensor/index.js\").then((t) => console.log(\"addon loads: libtorch\", t.torchVersion(), \"kernels:\", t.kernelMode()))'
  # the gemma3 training steps the fixture tests check, in the addon and in PyTorch 2.6, each against the 1.13
  # fixture and against each other (test/method/train_step.test.ts AFTER_NOISE_TOL)
  if [ ${GEMMA3_COMPARE:-1} != 0 ]; then
    node scripts/gemma3-train-step-addon.mjs no_cluster /tmp/gemma3-addon.json
    python3 scripts/gemma3-train-step-torch.py test/fixtures/gemma3 --json /tmp/gemma3-torch.json >/dev/null
    python3 scripts/gemma3-train-step-torch.py --compare /tmp/gemma3-addon.json /tmp/gemma3-torch.json test/fixtures/gemma3
  fi
  node --test --test-concurrency=1 ${TESTS[*]}
"
