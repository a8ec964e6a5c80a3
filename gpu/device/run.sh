#!/usr/bin/env bash
# Cascade on a GPU machine in one command: `bash .gpu/run.sh` (the bundle from `npm run gpu:bundle`).
# Needs only bash, coreutils, tar and xz or python3; python3 with torch/torchvision adds the
# random-weight ResNet-50 and ViT-B/16 (float32 and float16). Writes to $OUT (default ./gpu-out):
#   results.md, results.json   everything below in one place (report.mjs)
#   env.txt                    GPU, driver, Vulkan ICD and loader, NVIDIA_* variables, node, glibc
#   webgpu-probe.json          whether onnxruntime's WebGPU provider found an adapter (and why not)
#   export.jsonl               the torch exports (or why there are none)
#   big-bench.json             big-stage images/s per model, provider and batch size; WebGPU vs CPU
#                              top-1 agreement on the same photos; node placement per provider
#   runs/<id>/summary.json     each cascade run's summary (+ manifest.jsonl, parts, plots);
#   runs/runs.json             the runs' outcomes; runs/logs/ their logs
#   steps.jsonl, run.log       what ran, how long, what failed
# It fails soft: a step that fails or runs out of time is recorded and the next one runs; without a
# WebGPU adapter the WebGPU runs fall back to the CPU and say so. Total time is held under
# GPU_BUDGET_S (default 450 s; the device allows 8 minutes).
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
work=${GPU_WORK:-${TMPDIR:-/tmp}/cascade-gpu}
budget=${GPU_BUDGET_S:-450}
t0=$(date +%s)
deadline=$((t0 + budget))
rm -rf "$work" && mkdir -p "$work/bin" "$work/models" "$work/specs" "$OUT/logs"
: > "$OUT/run.log"
: > "$OUT/steps.jsonl"

elapsed() { echo $(($(date +%s) - t0)); }
left() { echo $((deadline - $(date +%s))); }
say() { echo "[$(elapsed)s] $*" | tee -a "$OUT/run.log" >&2; }
record() { # <step> <status> <seconds> [note]
  local note=${4:-}
  note=${note//\\/\\\\}
  note=${note//\"/\\\"}
  printf '{"step":"%s","status":"%s","seconds":%s,"note":"%s"}\n' "$1" "$2" "$3" "$(printf '%s' "$note" | tr '\n\t' '  ' | cut -c1-400)" >> "$OUT/steps.jsonl"
}
# step <name> <max s> <min s> <command…>: runs the command under a time limit of min(max, time left
# minus a reserve for the report); skipped when less than <min s> would remain. Output: logs/<name>.log.
step() {
  local name=$1 max=$2 need=$3
  shift 3
  local avail=$(($(left) - ${RESERVE:-12}))
  [ "$max" -lt "$avail" ] && avail=$max
  if [ "$avail" -lt "$need" ]; then
    say "$name: skipped, ${avail}s left"
    record "$name" skipped 0 "not enough time left (${avail}s)"
    return 99
  fi
  local lim=$avail s=$(date +%s) rc=0
  say "$name: started (limit ${lim}s)"
  timeout -k 5 "$lim" "$@" > "$OUT/logs/$name.log" 2>&1 || rc=$?
  local took=$(($(date +%s) - s))
  if [ "$rc" -eq 0 ]; then
    record "$name" ok "$took"
    say "$name: ok in ${took}s"
  else
    local status=failed
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
    record "$name" "$status" "$took" "exit $rc: $(tail -n 3 "$OUT/logs/$name.log")"
    say "$name: $status (exit $rc) after ${took}s: $(tail -n 2 "$OUT/logs/$name.log" | tr '\n' ' ' | cut -c1-300)"
  fi
  return "$rc"
}
unxz_to() { # <file.xz> <dest>
  if command -v xz > /dev/null; then xz -dc "$1" > "$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
untar_xz() { # <file.tar.xz> <dir>
  mkdir -p "$2"
  if command -v xz > /dev/null; then xz -dc "$1" | tar -xf - -C "$2"; else python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi
}
has_lib() { # is <soname> loadable from the system's library paths?
  { /sbin/ldconfig -p 2> /dev/null || ldconfig -p 2> /dev/null; } | grep -q "^[[:space:]]*$1 " && return 0
  local d
  for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib64 /lib64 /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -e "$d/$1" ] && return 0; done
  return 1
}

say "Cascade GPU run: bundle $here, work dir $work, results $OUT, budget ${budget}s"
head -n 2 "$here/BUNDLE.txt" 2> /dev/null | tee -a "$OUT/run.log" >&2

# 1. Unpack: node, the app and its node_modules, onnxruntime's library, redis-server, the assets.
unpack() {
  unxz_to "$here/node.xz" "$work/bin/node" && chmod +x "$work/bin/node" &&
    untar_xz "$here/app.tar.xz" "$work/app" &&
    untar_xz "$here/deps.tar.xz" "$work/app" &&
    unxz_to "$here/ort.xz" "$work/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1" &&
    untar_xz "$here/redis.tar.xz" "$work/redis" &&
    untar_xz "$here/assets.tar.xz" "$work/assets"
}
s=$(date +%s)
broken=""
export PATH="$work/redis/bin:$work/bin:$PATH"
export CASCADE_ASSETS="$work/assets"
unset REDIS_URL NODE_PATH NODE_OPTIONS
if ! unpack > "$OUT/logs/unpack.log" 2>&1; then
  broken="unpacking failed: $(tail -n 3 "$OUT/logs/unpack.log" | tr '\n' ' ')"
else
  # Debian's node needs glibc 2.28; on an older host run it through the bundled loader and libraries.
  if ! node --version > /dev/null 2>&1; then
    mv "$work/bin/node" "$work/bin/node.real"
    printf '#!/bin/sh\nexec "%s/redis/lib/ld-linux-x86-64.so.2" --library-path "%s/redis/lib" "%s/bin/node.real" "$@"\n' "$work" "$work" "$work" > "$work/bin/node"
    chmod +x "$work/bin/node"
    say "node did not start with the host's libraries; using the bundled glibc loader"
  fi
  if ! node --version > /dev/null 2>&1 || ! redis-server --version > /dev/null 2>&1; then
    broken="node or redis-server does not run here: $(node --version 2>&1 | head -n 1) / $(redis-server --version 2>&1 | head -n 1)"
  fi
fi
if [ -n "$broken" ]; then
  record unpack failed $(($(date +%s) - s)) "$broken"
  say "$broken"
else
  record unpack ok $(($(date +%s) - s)) "node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"
  say "unpacked in $(($(date +%s) - s))s: node $(node --version), $(command -v redis-server)"
fi

# 2. Vulkan for WebGPU (Dawn): the loader if the host lacks one (from the bundle's .debs, only the
# libraries the host does not have), and the NVIDIA ICD: the driver's JSON, or one written for
# the driver's libGLX_nvidia when the container mounted the library without the JSON.
mkdir -p "$work/gl" "$work/gl-lib"
for deb in "$here"/debs/*.deb; do
  [ -f "$deb" ] || continue
  dpkg-deb -x "$deb" "$work/gl" 2> /dev/null || python3 - "$deb" "$work/gl" << 'PY' || true
import io, lzma, sys, tarfile
data = open(sys.argv[1], 'rb').read()
pos = 8  # ar archive: 60-byte headers, even-aligned members
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip(), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    if name.startswith('data.tar'):
        tarfile.open(fileobj=io.BytesIO(body), mode='r:*').extractall(sys.argv[2])
    pos += 60 + size + (size % 2)
PY
done
bundled=()
for f in "$work"/gl/usr/lib/x86_64-linux-gnu/*.so.*; do
  [ -e "$f" ] || continue
  so=$(basename "$f")
  # Only sonames (libvulkan.so.1, not libvulkan.so.1.3.239), and only those the host lacks.
  [[ "$so" =~ \.so\.[0-9]+$ ]] || continue
  has_lib "$so" && continue
  ln -sf "$f" "$work/gl-lib/$so"
  bundled+=("$so")
done
if [ ${#bundled[@]} -gt 0 ]; then
  export LD_LIBRARY_PATH="$work/gl-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GPU_VULKAN_LOADER="bundled: ${bundled[*]}"
else
  export GPU_VULKAN_LOADER="host"
fi
icd=""
for f in ${VK_DRIVER_FILES:-} ${VK_ICD_FILENAMES:-}; do [ -f "$f" ] && icd=$f && break; done
if [ -z "$icd" ]; then
  for d in /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -f "$d/nvidia_icd.json" ] && icd="$d/nvidia_icd.json" && break
  done
fi
if [ -z "$icd" ]; then
  glx=$({ /sbin/ldconfig -p 2> /dev/null || ldconfig -p 2> /dev/null; } | awk '/libGLX_nvidia\.so\.0 / {print $NF; exit}')
  [ -n "$glx" ] || glx=$(ls /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0 /usr/local/nvidia/lib64/libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.0 2> /dev/null | head -1)
  if [ -n "$glx" ]; then
    icd="$work/nvidia_icd.json"
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$glx" > "$icd"
    say "no nvidia_icd.json on this machine: wrote $icd for $glx"
  fi
fi
if [ -n "$icd" ]; then export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd; fi
for d in /usr/local/nvidia/share/glvnd/egl_vendor.d /usr/share/glvnd/egl_vendor.d; do
  [ -f "$d/10_nvidia.json" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$d/10_nvidia.json" && break
done
say "Vulkan: ICD ${icd:-none found}; loader: $GPU_VULKAN_LOADER"

# 3. The environment.
{
  echo "== date"; date -u
  echo "== host"; uname -a; head -n 2 /etc/os-release 2> /dev/null; echo "cpus: $(nproc)"; free -g 2> /dev/null | head -n 2; ldd --version 2>&1 | head -n 1
  echo "== nvidia-smi"; timeout 20 nvidia-smi 2>&1 | head -n 25
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
  echo "== NVIDIA_* variables"; env | grep '^NVIDIA_' || echo "(none)"
  echo "== Vulkan"; echo "ICD: ${icd:-none found}"; [ -n "$icd" ] && cat "$icd"; echo; echo "loader: $GPU_VULKAN_LOADER"
  ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1 | head -n 12
  echo "driver libraries:"; ls /usr/lib/x86_64-linux-gnu/libGLX_nvidia* /usr/lib/x86_64-linux-gnu/libnvidia-gl* /usr/lib/x86_64-linux-gnu/libEGL_nvidia* /usr/local/nvidia/lib64/libGLX_nvidia* 2> /dev/null | head -n 8 || true
  echo "== runtime"; echo "node $(node --version 2>&1 | head -n 1), onnxruntime-node $(node -p "require('$work/app/node_modules/onnxruntime-node/package.json').version" 2>&1 | head -n 1)"; redis-server --version 2>&1 | head -n 1
  echo "python: $(python3 --version 2>&1)"
} > "$OUT/env.txt" 2>&1
say "environment: $(grep -m1 -A1 'name, driver' "$OUT/env.txt" | tail -n 1)"
if [ -n "$broken" ]; then
  printf '# Cascade GPU run\n\nFAILED before any measurement: %s\n\nSee env.txt and logs/unpack.log.\n' "$broken" > "$OUT/results.md"
  cat "$OUT/results.md"
  exit 1
fi

# 4. Does WebGPU find an adapter? (Dawn's warnings go to logs/webgpu-probe.log.)
step webgpu-probe 90 10 bash -c "cd '$work/app' && node gpu/bench.mjs --probe --ep webgpu > '$OUT/webgpu-probe.json'"
say "WebGPU: $(cat "$OUT/webgpu-probe.json" 2> /dev/null)"
grep -q '"available":true' "$OUT/webgpu-probe.json" 2> /dev/null && webgpu=1 || webgpu=0
[ "$webgpu" -eq 1 ] || say "WebGPU finds no adapter here: the WebGPU runs below fall back to the CPU and the report says so"

# 5. Random-weight ResNet-50 and ViT-B/16 in float32 and float16, exported by the device's torch.
if command -v python3 > /dev/null && timeout 90 python3 -c 'import torch, torchvision' > /dev/null 2>&1; then
  step export "${GPU_EXPORT_S:-180}" 40 bash -c "python3 '$here/export_models.py' '$work/models' ${GPU_EXPORT_MODELS:-resnet50 vit_b_16} | tee '$OUT/export.jsonl'"
else
  echo '{"error": "python3 with torch and torchvision not found: no random-weight models (the bundle'"'"'s MobileNetV2 int8 is the only big candidate)"}' > "$OUT/export.jsonl"
  record export skipped 0 "python3 with torch/torchvision not found"
  say "export: skipped, python3 with torch and torchvision not found (MobileNetV2 int8 only)"
fi
big_models=()
for m in resnet50-fp32 resnet50-fp16 vit_b_16-fp32 vit_b_16-fp16; do
  [ -s "$work/models/$m.onnx" ] && big_models+=("$m=$work/models/$m.onnx")
done
mbv2="$work/assets/models/mobilenetv2-12-int8.onnx"
[ -f "$mbv2" ] && big_models+=("mobilenetv2-int8=$mbv2")
for m in resnet50-fp32 vit_b_16-fp16; do
  [ -s "$work/models/$m.onnx" ] || continue
  printf 'name: %s-random\npath: %s\nlabels: %s\npreprocess: torch\noutput: logits\nmaxBatch: 32\n' "$m" "$work/models/$m.onnx" "$work/assets/labels/imagenet_class_index.json" > "$work/specs/$m.yaml"
done

# 6. The big stage: images/s per provider and batch size, agreement on photos, placement.
# It leaves GPU_RUNS_RESERVE_S (150 s) for the cascade runs.
bench_deadline=$((deadline - ${GPU_RUNS_RESERVE_S:-150}))
eps=cpu,webgpu
(IFS=,; step bench $((bench_deadline - $(date +%s))) 20 bash -c "cd '$work/app' && node gpu/bench.mjs --models '${big_models[*]}' --images '$here/images' --out '$OUT/big-bench.json' --eps $eps --batches ${GPU_BATCHES:-1,8,32} --seconds ${GPU_CELL_S:-1.5} --photo-seconds ${GPU_PHOTO_S:-8} --deadline $bench_deadline")

# 7. Cascade runs (little: ShuffleNet int8 on the CPU), most important first.
plan=()
for big in resnet50-fp32 mobilenetv2; do
  spec="$work/specs/$big.yaml"
  [ "$big" = mobilenetv2 ] && spec="$work/app/config/models/mobilenetv2.yaml"
  [ -f "$spec" ] || continue
  plan+=("$big-cpu=$spec:cpu" "$big-webgpu-split=$spec:webgpu-split")
done
[ -f "$work/specs/resnet50-fp32.yaml" ] && plan+=("resnet50-fp32-webgpu-one-process=$work/specs/resnet50-fp32.yaml:webgpu-one-process")
[ -f "$work/specs/vit_b_16-fp16.yaml" ] && [ "$webgpu" -eq 1 ] && plan+=("vit_b_16-fp16-webgpu-one-process=$work/specs/vit_b_16-fp16.yaml:webgpu-one-process")
[ -f "$work/specs/resnet50-fp32.yaml" ] || plan+=("mobilenetv2-webgpu-one-process=$work/app/config/models/mobilenetv2.yaml:webgpu-one-process")
(IFS=,; step cascade-runs $(($(left) - 10)) 30 bash -c "cd '$work/app' && node gpu/cascade-runs.mjs --app . --images '$here/images' --little config/models/shufflenet.yaml --out '$OUT/runs' --plan '${plan[*]}' --deadline $((deadline - 10)) --per-run ${GPU_RUN_S:-120}")

# 8. The report: always, even past the budget (it takes a second or two).
s=$(date +%s)
if (cd "$work/app" && timeout -k 5 30 node gpu/report.mjs "$OUT" "$work/assets/labels/groundtruth.csv" > "$OUT/logs/report.log" 2>&1); then
  record report ok $(($(date +%s) - s))
else
  record report failed $(($(date +%s) - s)) "$(tail -n 3 "$OUT/logs/report.log")"
  say "report failed: $(tail -n 3 "$OUT/logs/report.log")"
fi
cat "$OUT/results.md" 2> /dev/null
say "done in $(elapsed)s; results in $OUT"
