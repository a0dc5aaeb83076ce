# GTrXL + V-MPO image: the package, envpool and DeepMind Lab (built from source in a build stage).
# Needs BuildKit (default since Docker 23; DOCKER_BUILDKIT=1 on older engines). See docs/docker.md.
#
#   docker build -t gtrxl-vmpo .                                   # gpu target (default, CUDA PyTorch base)
#   docker build --target cpu -t gtrxl-vmpo:cpu .                  # cpu target, CPU torch wheel
#   docker build --target cpu --build-arg WITH_DMLAB=0 -t gtrxl-vmpo:cpu-nodmlab .   # skip the Bazel stage
#
# Build args: GPU_BASE_IMAGE, CPU_BASE_IMAGE (base images), WITH_DMLAB (1: build DeepMind Lab),
# DMLAB_REF (pinned DeepMind Lab tag/commit), TORCH_SPEC / TORCH_INDEX_URL (cpu target's torch),
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS / PIP_TRUSTED_HOST (package mirrors), APP_UID.
# Optional secret `ca_bundle` (a CA bundle for pip behind a TLS-intercepting proxy):
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...

ARG GPU_BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
ARG CPU_BASE_IMAGE=debian:bookworm-slim
ARG WITH_DMLAB=1

# ---------------------------------------------------------------- system layers (python, libs, user)
FROM ${CPU_BASE_IMAGE} AS system-cpu
ARG WITH_DMLAB
ARG APP_UID=1000
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY docker/setup_system.sh /opt/docker/
RUN WITH_DMLAB=${WITH_DMLAB} APP_UID=${APP_UID} /opt/docker/setup_system.sh cpu

FROM ${GPU_BASE_IMAGE} AS system-gpu
ARG WITH_DMLAB
ARG APP_UID=1000
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY docker/setup_system.sh /opt/docker/
RUN WITH_DMLAB=${WITH_DMLAB} APP_UID=${APP_UID} /opt/docker/setup_system.sh gpu

# ---------------------------------------------------------------- DeepMind Lab wheel (build stages)
# Built on the same system layer as the image that installs it, so the extension matches its Python.
# WITH_DMLAB=0 selects the empty variant and BuildKit never runs Bazel.
FROM system-cpu AS dmlab-cpu-1
ARG DMLAB_REF=release-2020-12-07
COPY docker/build_dmlab.sh /opt/docker/
RUN --mount=type=secret,id=ca_bundle DMLAB_REF=${DMLAB_REF} /opt/docker/build_dmlab.sh /wheels

FROM system-gpu AS dmlab-gpu-1
ARG DMLAB_REF=release-2020-12-07
COPY docker/build_dmlab.sh /opt/docker/
RUN --mount=type=secret,id=ca_bundle DMLAB_REF=${DMLAB_REF} /opt/docker/build_dmlab.sh /wheels

FROM system-cpu AS dmlab-cpu-0
RUN mkdir /wheels

FROM system-gpu AS dmlab-gpu-0
RUN mkdir /wheels

FROM dmlab-cpu-${WITH_DMLAB} AS dmlab-cpu
FROM dmlab-gpu-${WITH_DMLAB} AS dmlab-gpu

# ---------------------------------------------------------------- cpu target
FROM system-cpu AS cpu
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
COPY --from=dmlab-cpu /wheels /tmp/wheels
COPY . /opt/gtrxl-vmpo/src
RUN --mount=type=secret,id=ca_bundle TORCH_SPEC=${TORCH_SPEC} TORCH_INDEX_URL=${TORCH_INDEX_URL} \
    /opt/gtrxl-vmpo/src/docker/install.sh cpu /opt/gtrxl-vmpo/src /tmp/wheels && rm -rf /tmp/wheels
USER agent
WORKDIR /workspace
VOLUME ["/workspace/runs"]
EXPOSE 6006
ENTRYPOINT ["python", "-m", "agent.train"]
CMD ["--config", "quickstart"]

# ---------------------------------------------------------------- gpu target (default: last stage)
FROM system-gpu AS gpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
COPY --from=dmlab-gpu /wheels /tmp/wheels
COPY . /opt/gtrxl-vmpo/src
RUN --mount=type=secret,id=ca_bundle \
    /opt/gtrxl-vmpo/src/docker/install.sh gpu /opt/gtrxl-vmpo/src /tmp/wheels && rm -rf /tmp/wheels
USER agent
WORKDIR /workspace
VOLUME ["/workspace/runs"]
EXPOSE 6006
ENTRYPOINT ["python", "-m", "agent.train"]
CMD ["--config", "quickstart"]
