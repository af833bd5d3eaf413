#!/usr/bin/env bash
# Packs what `make gpu-report` needs on a CUDA host that has Python 3.12, torch (with CUDA 13's
# cuBLAS, cuDNN and runtime from pip) and the CPU onnxruntime but no network and no serving stack,
# into ONE file small enough for a 64 MiB transfer with the working tree: .carry/site.tar.xz
# (61.6 MB for onnxruntime-gpu 1.31.1 and sm_90).
# It holds the serving wheels (cp312) and onnxruntime-gpu unpacked as one site folder, with:
#  - the CUDA provider library's machine code for GPUs other than sm_$ARCH zeroed
#    (python -m loadtest.gpu.prune_fatbin; 284 MB -> xz 52 MB instead of 185 MB): it runs on that GPU only;
#  - libonnxruntime.so (the C API library; Python's module has the runtime built in) and the
#    TensorRT provider (no TensorRT on the host) left out.
# The CUDA libraries the provider needs (libcublas/libcublasLt.so.13, libcudart.so.13,
# libcurand.so.10, cuDNN 9) come from torch's nvidia-* packages on the host:
# service.runtime.preload_cuda_libraries loads them (onnxruntime.preload_dlls).
#
#   ARCH=90 scripts/gpu_wheels.sh         # -> .carry/site.tar.xz (ARCH: 90 for H100/H200)
#   ARCH=all scripts/gpu_wheels.sh        # every GPU generation: .carry/part-1 ... part-4, one per call
# On the GPU host, in the repository root (docs/gpu/RUNBOOK.md has the device calls):
#   mkdir -p /tmp/site && xz -dc .carry/site.tar.xz | tar -x -C /tmp/site && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
ORT=${ORT:-onnxruntime-gpu==1.31.1}
ARCH=${ARCH:-90}
PY=${PY:-python3}
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
LIMIT=${LIMIT:-$((67108864 - tree - 1000000))}  # bytes: 64 MiB less the working tree and 1 MB
WHEELS=(fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.4 pydantic-core==2.50.5
        pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0
        orjson==3.13.0 httptools==0.9.0 onnxconverter-common==1.16.0 opentelemetry-api==1.45.2
        importlib-metadata msgspec==0.23.0 setproctitle==1.3.8)  # msgspec: the engine <-> fronts messages (service.messages); setproctitle: process names
pip_dl() {
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$1" "${@:2}"
}
rm -rf .carry && mkdir -p .carry/tmp/wheels .carry/tmp/site
pip_dl .carry/tmp/wheels "${WHEELS[@]}" "$ORT"
for w in .carry/tmp/wheels/*.whl; do $PY -m zipfile -e "$w" .carry/tmp/site; done
capi=.carry/tmp/site/onnxruntime/capi
rm -f "$capi"/libonnxruntime.so.* "$capi"/libonnxruntime_providers_tensorrt.so
sha256sum "$capi/libonnxruntime_providers_cuda.so" | sed 's|  .*|  original libonnxruntime_providers_cuda.so|' > .carry/tmp/site/CUDA_PROVIDER.sha256
if [ "$ARCH" != all ]; then
  PYTHONPATH=$PWD $PY -m loadtest.gpu.prune_fatbin "$capi/libonnxruntime_providers_cuda.so" "$capi/pruned.so" --keep "$ARCH"
  mv "$capi/pruned.so" "$capi/libonnxruntime_providers_cuda.so"
fi
tar -C .carry/tmp/site -cf - . | xz --x86 --lzma2=preset=9e,dict=256MiB -T1 > .carry/site.tar.xz  # BCJ: x86 code packs tighter
rm -rf .carry/tmp
size=$(stat -c %s .carry/site.tar.xz)
echo "$size bytes: .carry/site.tar.xz (sm_$ARCH)"
if [ "$size" -gt "$LIMIT" ]; then  # ARCH=all: too big for one transfer, so one part per call
  split -b "$LIMIT" -d -a 1 .carry/site.tar.xz .carry/chunk.
  n=$(ls .carry/chunk.* | wc -l)
  for c in .carry/chunk.*; do i=$((${c##*.} + 1)); mkdir -p ".carry/part-$i"; mv "$c" ".carry/part-$i/chunk"; echo "$n" > ".carry/part-$i/of"; done
  rm .carry/site.tar.xz
  echo "over $LIMIT bytes: split into $n parts, .carry/part-1 ... .carry/part-$n (one carry each)"
fi
