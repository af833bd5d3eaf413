# syntax=docker/dockerfile:1
# headtohead inference service: FastAPI + ONNX Runtime over a mounted model repository.
#
# GPU (default):  docker build -t headtohead-service .
# CPU variant:    docker build -t headtohead-service:cpu \
#                   --build-arg BASE_IMAGE=ubuntu:24.04 --build-arg ORT_PACKAGE=onnxruntime .
# podman/buildah: buildah bud --format docker ... (the OCI format would drop the healthcheck)
#
# Run:            docker run --gpus all -p 8000:8000 -v "$PWD/model_repository:/models:ro" headtohead-service
#
# Behind a proxy with its own certificate authority, or with a private index: pass them as build
# secrets, never baked into a layer (docs/operations.md):
#   --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt   a CA bundle pip should trust
#   --secret id=pip_conf,src=$HOME/.config/pip/pip.conf         pip's configuration (index-url, ...)
#
# Only the serving core is installed (`pip install .`: pyproject's [project] dependencies, no
# torch). The service imports only contract/ (tensor names, manifest, tokenizer, atomic writes),
# which is torch-free, so contract/ and service/ are all the source the image holds.

# CUDA 13 + cuDNN 9 runtime: the current onnxruntime-gpu wheels on PyPI (1.31) link
# libcudart.so.13 and libcublas.so.13. An older onnxruntime-gpu built for CUDA 12 needs
# --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 instead.
ARG BASE_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
# onnxruntime-gpu (CUDA + CPU providers) or onnxruntime (CPU only, much smaller image)
ARG ORT_PACKAGE=onnxruntime-gpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first (cached while only the source changes); the runtime named by ORT_PACKAGE
# replaces pyproject's onnxruntime-gpu (same version bound), so the CPU variant never downloads
# the GPU wheel. pip reads the optional build secrets: its config at /etc/pip.conf, a CA bundle.
COPY pyproject.toml README.md ./
RUN python -c "import os, re, tomllib; \
d = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
d = [re.sub(r'^onnxruntime-gpu\b', os.environ['ORT_PACKAGE'], x) for x in d]; \
open('/tmp/requirements.txt', 'w').write('\n'.join(d))"
RUN --mount=type=secret,id=pip_conf,target=/etc/pip.conf,required=false \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && pip install -r /tmp/requirements.txt
COPY contract/ contract/
COPY service/ service/
RUN --mount=type=secret,id=pip_conf,target=/etc/pip.conf,required=false \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && pip install --no-deps . \
 && python -c "import service.app, onnxruntime as ort; print('providers:', ort.get_available_providers())"

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG ORT_PACKAGE=onnxruntime-gpu
LABEL org.opencontainers.image.title="headtohead-service" \
      org.opencontainers.image.description="Shallow multi-head vs deep single-head encoders behind one API (v1 JSON + KServe v2)" \
      org.opencontainers.image.source="https://github.com/headtohead/headtohead"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 h2h \
 && useradd --system --uid 10001 --gid h2h --home-dir /home/h2h --create-home --shell /usr/sbin/nologin h2h
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    H2H_MODEL_REPOSITORY=/models \
    H2H_HOST=0.0.0.0 \
    H2H_PORT=8000 \
    H2H_PROVIDER=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# the model repository is mounted here read-only (docker-compose.yml)
RUN mkdir -p /models && chown h2h:h2h /models
USER 10001:10001
WORKDIR /home/h2h
EXPOSE 8000
# Ready = at least one model loaded and not draining (503 otherwise). No curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('H2H_PORT', '8000'), timeout=2)"]
# SIGTERM drains accepted requests (H2H_SHUTDOWN_GRACE_S, default 30 s): give `docker stop -t 35`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
CMD []
