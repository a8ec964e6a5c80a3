#!/usr/bin/env bash
# `npm run gpu:bundle`: builds .gpu/, everything a Cascade run needs on a bare x86-64 Linux machine
# (the device: no Node, no Redis, no network), at most 60 MB so that it travels with
# `carry: [".gpu"]`. Run on the device with `bash .gpu/run.sh` (gpu/README.md).
#
#   node.xz          node (stripped)                                     xz, x86 BCJ filter
#   ort.xz           onnxruntime-node's libonnxruntime.so.1 (CPU + WebGPU providers)
#   deps.tar.xz      production node_modules, linux-x64 only (gpu/bundle-deps.mjs)
#   app.tar.xz       dist/ (compiled now), bin/, config/models, package.json, gpu/device/*
#   redis.tar.xz     redis-server with every shared library it loads (glibc's loader included)
#   assets.tar.xz    the little model and a real-weight big candidate, labels, ground truth
#   images/          photos (re-encoded to a shorter side of GPU_IMAGE_SIDE px)
#   debs/            Vulkan/EGL loaders from Debian, unpacked on the device when it lacks them
#   run.sh, export_models.py, README.md, BUNDLE.txt
#
# Compressed parts are cached by content under .cache/gpu-bundle, so a rebuild after a source
# change only compiles and re-packs the app. Environment knobs (defaults in brackets):
#   CASCADE_ASSETS [../shared/assets]   GPU_IMAGES [300]   GPU_IMAGE_SIDE [256]
#   GPU_BUNDLE_MODELS [models/shufflenet-v2-12-qdq.onnx models/mobilenetv2-12-int8.onnx]
#   GPU_IMAGE_QUALITY [80]   GPU_BUNDLE_DIR [.gpu]   GPU_BUNDLE_CACHE [.cache/gpu-bundle]   GPU_BUNDLE_MAX_MB [60]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dst=$(realpath -m "${GPU_BUNDLE_DIR:-$root/.gpu}")
cache=$(realpath -m "${GPU_BUNDLE_CACHE:-$root/.cache/gpu-bundle}")
assets=$(realpath -m "${CASCADE_ASSETS:-$root/../shared/assets}")
images=${GPU_IMAGES:-300}
side=${GPU_IMAGE_SIDE:-256}
quality=${GPU_IMAGE_QUALITY:-80}
max_mb=${GPU_BUNDLE_MAX_MB:-60}
models=${GPU_BUNDLE_MODELS:-models/shufflenet-v2-12-qdq.onnx models/mobilenetv2-12-int8.onnx}
t0=$(date +%s)
say() { echo "gpu:bundle [$(($(date +%s) - t0))s] $*"; }
die() { echo "gpu:bundle: $*" >&2; exit 1; }

[ -d node_modules/onnxruntime-node ] || die "node_modules is missing: run ONNXRUNTIME_NODE_INSTALL=skip npm ci first"
[ -d "$assets/images" ] || die "no photos under $assets/images (set CASCADE_ASSETS)"
command -v redis-server >/dev/null || die "redis-server is not on PATH (apt-get install redis-server): the bundle carries a copy"
command -v xz >/dev/null || die "xz is missing"
ort_lib=node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
[ -f "$ort_lib" ] || die "$ort_lib is missing"

stage="$cache/stage"
rm -rf "$stage" "$dst.tmp"
mkdir -p "$stage" "$cache/xz" "$cache/debs" "$dst.tmp"
used="$stage/used-cache.txt"
: > "$used"

# xz with a cache keyed by the input's bytes and the options. ELF-heavy inputs get the x86 BCJ
# filter (about 5% smaller); both python's lzma and xz decode it.
XZ_ELF=(--x86 --lzma2=preset=9e,dict=64MiB)
XZ_DATA=(-9e -T2)
xz_cached() { # <src> <dst> elf|data
  local opts=("${XZ_DATA[@]}")
  [ "$3" = elf ] && opts=("${XZ_ELF[@]}")
  local key
  key=$( { sha256sum < "$1"; echo "${opts[*]}"; } | sha256sum | cut -c1-40)
  local hit="$cache/xz/$key.xz"
  if [ ! -f "$hit" ]; then
    xz "${opts[@]}" -c "$1" > "$hit.part"
    mv "$hit.part" "$hit"
  fi
  echo "$key.xz" >> "$used"
  cp "$hit" "$2"
}
# A tar of <dir>'s contents that is byte-identical for identical files (so the cache hits).
tar_xz() { # <dir> <dst> elf|data
  local t="$stage/$(basename "$2").tar"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$t" .
  xz_cached "$t" "$2" "$3"
  rm -f "$t"
}

# 1. node, stripped (the debug info is a tenth of it).
node_bin=$(readlink -f "$(command -v node)")
cp "$node_bin" "$stage/node"
strip "$stage/node" 2>/dev/null || say "strip not found: node is packed with its symbols"
say "node $("$stage/node" --version): compressing (cached after the first build)"
xz_cached "$stage/node" "$dst.tmp/node.xz" elf
rm -f "$stage/node"

# 2. onnxruntime's native library, on its own so that the deps archive stays small to rebuild.
say "onnxruntime $(node -p "require('./node_modules/onnxruntime-node/package.json').version")"
xz_cached "$ort_lib" "$dst.tmp/ort.xz" elf

# 3. production dependencies, linux-x64 only.
node gpu/bundle-deps.mjs "$root" "$stage/deps" | sed 's/^/gpu:bundle   /'
rm -f "$stage/deps/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
tar_xz "$stage/deps" "$dst.tmp/deps.tar.xz" elf

# 4. the app, compiled now from the working tree into the stage (the shared dist/ is left alone).
say "compiling the project (tsc)"
npx tsc -p tsconfig.json --outDir "$stage/app/dist" --sourceMap false
cp -r bin package.json "$stage/app/"
mkdir -p "$stage/app/config" "$stage/app/gpu"
cp -r config/models "$stage/app/config/"
cp gpu/device/*.mjs "$stage/app/gpu/"
tar_xz "$stage/app" "$dst.tmp/app.tar.xz" data

# 5. redis-server and every library it loads, glibc's loader included: Debian's build needs
# glibc 2.34, which the device may not have. bin/redis-server runs it through that loader.
mkdir -p "$stage/redis/bin" "$stage/redis/lib"
redis_bin=$(readlink -f "$(command -v redis-server)")
cp "$redis_bin" "$stage/redis/lib/redis-server"
# node's libraries too (libstdc++ …): run.sh falls back to this loader if the host's glibc is too old for node.
for f in $(ldd "$redis_bin" "$node_bin" | awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u); do
  cp -L "$f" "$stage/redis/lib/$(basename "$f")"
done
[ -f "$stage/redis/lib/ld-linux-x86-64.so.2" ] || die "could not find glibc's loader in ldd's output for $redis_bin"
cat > "$stage/redis/bin/redis-server" <<'SH'
#!/bin/sh
# The bundled redis-server, run by the bundled glibc loader with the bundled libraries only.
lib=$(cd "$(dirname "$0")/../lib" && pwd)
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$lib/redis-server" "$@"
SH
chmod +x "$stage/redis/bin/redis-server"
"$stage/redis/bin/redis-server" --version > /dev/null || die "the bundled redis-server does not start here"
say "$("$stage/redis/bin/redis-server" --version | cut -d' ' -f1-3) with $(ls "$stage/redis/lib" | wc -l) files"
tar_xz "$stage/redis" "$dst.tmp/redis.tar.xz" elf

# 6. assets laid out as ../shared/assets, so config/models/*.yaml resolve with CASCADE_ASSETS.
mkdir -p "$stage/assets/labels"
for m in $models; do
  [ -f "$assets/$m" ] || die "model $assets/$m is missing"
  mkdir -p "$stage/assets/$(dirname "$m")"
  cp "$assets/$m" "$stage/assets/$m"
done
cp "$assets/labels/imagenet_class_index.json" "$assets/labels/groundtruth.csv" "$stage/assets/labels/"
tar_xz "$stage/assets" "$dst.tmp/assets.tar.xz" data

# 7. photos: JPEG is compressed already, so they travel as files.
node gpu/bundle-images.mjs "$assets/images" "$dst.tmp/images" "$images" "$side" "$quality" | sed 's/^/gpu:bundle   /'

# 8. the Vulkan/EGL loaders (WebGPU runs on Vulkan through Dawn; the device's driver brings the
# NVIDIA ICD but maybe no loader). From this build's cache, apt's archive, or apt-get download.
mkdir -p "$dst.tmp/debs"
missing=()
for p in libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2; do
  f=$(ls "$cache/debs/${p}_"*_amd64.deb /var/cache/apt/archives/"${p}_"*_amd64.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    (cd "$cache/debs" && apt-get download "$p:amd64" >/dev/null 2>&1) || true
    f=$(ls "$cache/debs/${p}_"*_amd64.deb 2>/dev/null | head -1 || true)
  fi
  if [ -n "$f" ]; then
    [ "$(dirname "$f")" = "$cache/debs" ] || cp "$f" "$cache/debs/"
    cp "$f" "$dst.tmp/debs/"
  else
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] || say "WARNING: no .deb for ${missing[*]} (apt-get download failed): WebGPU needs the device to have them"

# 9. the scripts.
cp gpu/device/run.sh gpu/device/export_models.py gpu/README.md "$dst.tmp/"
chmod +x "$dst.tmp/run.sh"

# Drop cache entries this build did not use (older node, older deps …).
for f in "$cache/xz/"*.xz; do
  [ -e "$f" ] || continue
  grep -qx "$(basename "$f")" "$used" || rm -f "$f"
done

{
  echo "Cascade GPU bundle, built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
  echo "node $("$node_bin" --version), onnxruntime-node $(node -p "require('./node_modules/onnxruntime-node/package.json').version"), $(redis-server --version | cut -d' ' -f1-3)"
  echo "models: $models"
  echo "images: $(ls "$dst.tmp/images" | wc -l) photos, shorter side ≤ $side px, JPEG q$quality"
  echo
  (cd "$dst.tmp" && du -ab --max-depth=1 . | sort -k2 | awk '{printf "%10.2f MB  %s\n", $1 / 1e6, $2}')
} > "$dst.tmp/BUNDLE.txt"

bytes=$(du -sb "$dst.tmp" | cut -f1)
mb=$(awk "BEGIN {printf \"%.1f\", $bytes / 1e6}")
if [ "$bytes" -gt $((max_mb * 1000000)) ]; then
  cat "$dst.tmp/BUNDLE.txt" >&2
  die "the bundle is $mb MB, over the $max_mb MB limit (fewer GPU_IMAGES, a smaller GPU_IMAGE_SIDE or GPU_IMAGE_QUALITY, or fewer GPU_BUNDLE_MODELS)"
fi
rm -rf "$dst"
mv "$dst.tmp" "$dst"
rm -rf "$stage"
sed -n '1,4p' "$dst/BUNDLE.txt" | sed 's/^/gpu:bundle   /'
say "wrote $dst: $mb MB ($(awk "BEGIN {printf \"%.1f\", $bytes / 1048576}") MiB; limit $max_mb MB)"
say "device: run with carry [\".gpu\"] and command: bash .gpu/run.sh"
