#!/bin/bash
# Rehearses scripts/gpu-check.sh as the run tool will run it, on this machine's CPU: a clean copy of what travels
# (tracked and untracked-not-ignored files, plus .gpu-carry from `bash scripts/gpu-check.sh --prepare`, nothing
# else: no node_modules, dist or native/build), no network (unshare -n), and the host's node and its headers
# hidden (bind mounts in a private mount namespace), so that node, node-gyp's headers, node_modules and dist can
# only come from .gpu-carry, and xz hidden too (the archives then unpack through python3's tarfile). Needs root (unshare). Then: bash scripts/gpu-check.sh --rehearse in that copy.
#
#   sudo bash scripts/gpu-rehearse.sh        # environment: DEST (default /tmp/goodvibe-gpu-rehearse), and
#                                            # gpu-check.sh's (OUT, REHEARSE_BUILD, SUITES, CONCURRENCY, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root (unshare)" >&2; exit 2; }
[ -f .gpu-carry/node.xz ] || { echo "no .gpu-carry: bash scripts/gpu-check.sh --prepare first" >&2; exit 2; }
DEST=${DEST:-/tmp/goodvibe-gpu-rehearse}
rm -rf "$DEST" && mkdir -p "$DEST/repo" "$DEST/hidden"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -C "$DEST/repo" -xf -
cp -a .gpu-carry "$DEST/repo/.gpu-carry"
echo "== what travels: $(du -sb "$DEST/repo" | awk '{printf "%.1f", $1 / 1048576}') MiB (limit 64; file sizes, not disk blocks)"
printf '#!/bin/sh\necho "hidden in this rehearsal: $0 $*" >&2\nexit 127\n' >"$DEST/hidden/node"
chmod +x "$DEST/hidden/node"
mkdir -p "$DEST/hidden/include"
export OUT=${OUT:-$DEST/out} WORK=${WORK:-$DEST/work}
unshare -n -m bash -c "
  set -e
  mount --make-rprivate /
  mount --bind '$DEST/hidden/node' \"\$(readlink -f /usr/bin/node)\"
  # the GPU machine's image may lack xz: the carried archives must unpack without it (python3's tarfile)
  ! command -v xz >/dev/null || mount --bind '$DEST/hidden/node' \"\$(readlink -f \"\$(command -v xz)\")\"
  [ -d /usr/include/node ] && mount --bind '$DEST/hidden/include' /usr/include/node
  ! curl -s -m 3 https://registry.npmjs.org >/dev/null 2>&1 || { echo 'network still reachable' >&2; exit 1; }
  cd '$DEST/repo' && bash scripts/gpu-check.sh --rehearse
"
