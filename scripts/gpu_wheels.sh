#!/usr/bin/env bash
# Packs what `make gpu-report` needs for a CUDA host that has Python 3.12, torch and the CPU
# onnxruntime but no network and no serving stack, into parts small enough for a transfer limit
# (64 MiB per copy here): the serving wheels (cp312), onnxruntime-gpu without its 284 MB CUDA
# provider library, and that library xz-compressed (185 MB; the wheel's deflate gives 231 MB)
# and split. Run where pip can download; copy .carry/p1 .. p4 over one at a time.
#
#   scripts/gpu_wheels.sh                        # -> .carry/p1 (wheels + part a) ... .carry/p4
# On the GPU host, in the repository root, once all parts are there:
#   S=$PWD/.carry/site; mkdir -p $S
#   pip install --no-index --no-deps --target $S $(ls .carry/p1/*.whl | grep -v onnxruntime_gpu)
#   python3 -m zipfile -e .carry/p1/onnxruntime_gpu-*.whl $S
#   cat .carry/p*/cuda.xz.* | xz -d > $S/onnxruntime/capi/libonnxruntime_providers_cuda.so
#   PYTHONPATH=$S python3 scripts/gpu_report.py
set -euo pipefail
cd "$(dirname "$0")/.."
ORT=${ORT:-onnxruntime-gpu==1.31.1}
PARTS=(34000000 63000000 63000000)  # bytes of the compressed library in p1, p2, p3; p4 gets the rest
WHEELS=(fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.14.4 pydantic-core==2.50.5
        pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0
        orjson==3.13.0 httptools==0.9.0 onnxconverter-common==1.16.0 opentelemetry-api==1.45.2
        importlib-metadata)
pip_dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$1" "${@:2}"
}
rm -rf .carry/p1 .carry/p2 .carry/p3 .carry/p4 && mkdir -p .carry/p1 .carry/p2 .carry/p3 .carry/p4 .carry/tmp
pip_dl .carry/p1 "${WHEELS[@]}"
pip_dl .carry/tmp "$ORT"
whl=$(ls .carry/tmp/onnxruntime_gpu-*.whl)
lib=onnxruntime/capi/libonnxruntime_providers_cuda.so
unzip -q -o "$whl" "$lib" -d .carry/tmp
xz -9 -T0 -c ".carry/tmp/$lib" > .carry/tmp/cuda.xz
cp "$whl" .carry/p1/ && zip -q -d ".carry/p1/$(basename "$whl")" "$lib"
head -c "${PARTS[0]}" .carry/tmp/cuda.xz > .carry/p1/cuda.xz.a
tail -c +$((PARTS[0] + 1)) .carry/tmp/cuda.xz | head -c "${PARTS[1]}" > .carry/p2/cuda.xz.b
tail -c +$((PARTS[0] + PARTS[1] + 1)) .carry/tmp/cuda.xz | head -c "${PARTS[2]}" > .carry/p3/cuda.xz.c
tail -c +$((PARTS[0] + PARTS[1] + PARTS[2] + 1)) .carry/tmp/cuda.xz > .carry/p4/cuda.xz.d
sha256sum ".carry/tmp/$lib" | tee .carry/p4/cuda.sha256
rm -rf .carry/tmp
du -sb .carry/p1 .carry/p2 .carry/p3 .carry/p4
