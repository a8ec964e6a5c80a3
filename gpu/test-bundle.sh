#!/usr/bin/env bash
# `npm run test:gpu-bundle`: the GPU bundle end to end on this CPU machine. Builds .gpu/
# (`npm run gpu:bundle`), copies it into an empty temp folder and runs its run.sh there as the
# device would, with a clean environment and a PATH holding no node, npm or redis-server (so only
# the bundled ones can run) and no node_modules in the folder or above it. WebGPU finds no adapter
# here, so this exercises run.sh's CPU fallback; gpu/check-results.mjs then checks what it wrote.
# Slow (a build, then three cascade runs and a bench on the CPU): not part of `npm test`.
# GPU_TEST_SKIP_BUILD=1 reuses an existing .gpu/; GPU_TEST_KEEP=1 keeps the temp folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$(date +%s)
if [ "${GPU_TEST_SKIP_BUILD:-0}" != 1 ]; then
  bash gpu/build-bundle.sh
fi
build_s=$(($(date +%s) - t0))
[ -f .gpu/run.sh ] || { echo "test:gpu-bundle: no .gpu/run.sh (build failed?)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cascade-gpu-test.XXXXXX")
cleanup() { [ "${GPU_TEST_KEEP:-0}" = 1 ] && echo "test:gpu-bundle: kept $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT
cp -r .gpu "$tmp/.gpu"

# A PATH with every command of the usual bin folders except node, npm, npx and redis-*; python3
# (without torch here) is linked to its real interpreter, so run.sh's torch check runs and fails.
mkdir "$tmp/path"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for f in "$d"/*; do
    n=${f##*/}
    case "$n" in node | nodejs | npm | npx | corepack | redis-*) continue ;; esac
    [ -e "$tmp/path/$n" ] || ln -s "$f" "$tmp/path/$n"
  done
done
if py=$(python3 -c 'import sys; print(sys.executable)' 2> /dev/null); then ln -sf "$py" "$tmp/path/python3"; fi
for cmd in node npm redis-server; do
  if PATH="$tmp/path" command -v "$cmd" > /dev/null; then echo "test:gpu-bundle: $cmd is still on the test PATH" >&2; exit 1; fi
done
for d in "$tmp" "$(dirname "$tmp")" /; do
  [ -e "$d/node_modules" ] && { echo "test:gpu-bundle: $d/node_modules exists: node would find packages outside the bundle" >&2; exit 1; }
done

echo "test:gpu-bundle: running .gpu/run.sh in $tmp (no node, npm or redis-server on PATH)"
r0=$(date +%s)
rc=0
(cd "$tmp" && env -i HOME="$tmp" PATH="$tmp/path" TMPDIR="$tmp" LANG=C.UTF-8 OUT="$tmp/out" GPU_WORK="$tmp/work" \
  GPU_BUDGET_S="${GPU_BUDGET_S:-450}" bash .gpu/run.sh) > "$tmp/run.out" 2>&1 || rc=$?
run_s=$(($(date +%s) - r0))
tail -n 60 "$tmp/run.out"
[ "$rc" -eq 0 ] || { echo "test:gpu-bundle: run.sh exited with $rc" >&2; GPU_TEST_KEEP=1; exit 1; }
if ! node gpu/check-results.mjs "$tmp/out" "$tmp/.gpu"; then GPU_TEST_KEEP=1; exit 1; fi
echo "test:gpu-bundle: passed: bundle $(du -sm .gpu | cut -f1) MiB, build ${build_s}s, run.sh ${run_s}s (budget ${GPU_BUDGET_S:-450}s)"
