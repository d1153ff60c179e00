# syntax=docker/dockerfile:1
# The user-code image: the `ccat_assets.definitions` code location served over gRPC, and the
# image of every Dagster run pod launched from it (K8sRunLauncher). Reduction programs do not
# run here: they run under Apptainer on SLURM or as Kubernetes Jobs with their own images, so
# this image carries no container runtime.
#
#   docker build -t ccat-workflow-manager:0.1.0 .
#
# Base: an exact patch tag, not a digest. Bookworm is the Debian of our CI and developer
# machines, so wheels and libc behave as they do in the tests; the exact tag makes rebuilds
# reproducible enough and stays readable in review. Pin a digest as well where the registry
# is reachable from the build (the tag alone can be re-pushed with security fixes).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a wheel of this package only (dependencies are resolved in the runtime stage) --
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ccat_assets ./ccat_assets
COPY resources ./resources
COPY sensors ./sensors
RUN ["pip", "wheel", "--no-deps", "--wheel-dir", "/wheels", "."]

# ---- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ccat-workflow-manager" \
      org.opencontainers.image.description="CCAT Workflow Manager: Dagster code location (ccat_assets.definitions) and run worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.vendor="CCAT Data Center" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    CCAT_WORKFLOW_MANAGER_HOME=/var/lib/ccat

# Same pins as the tests: constraints.txt decides every dependency version. The `fits` extra
# (astropy) lets the code server's integrity check verify FITS products' CHECKSUM/DATASUM.
COPY constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    for wheel in /wheels/*.whl; do pip install -c /tmp/constraints.txt "${wheel}[fits]" || exit 1; done \
    && rm /tmp/constraints.txt

# A fixed numeric UID, so Kubernetes can verify runAsNonRoot and fsGroup can grant it the
# mounted SSH key (mode 0440) and the workspace volume.
RUN groupadd --gid 10001 ccat \
    && useradd --uid 10001 --gid 10001 --home-dir /home/ccat --create-home --shell /usr/sbin/nologin ccat \
    && mkdir -p "$DAGSTER_HOME" "$CCAT_WORKFLOW_MANAGER_HOME" \
    && chown ccat:ccat "$DAGSTER_HOME" "$CCAT_WORKFLOW_MANAGER_HOME"
USER 10001:10001
WORKDIR /home/ccat

EXPOSE 3030
# The same probe the dagster chart uses for user deployments; start period covers loading the
# code location from the ops-db.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "3030"]

# No ENTRYPOINT: the dagster chart sets the container's `args` (code server, run worker),
# which replace CMD and would be appended to an ENTRYPOINT.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "ccat_assets.definitions"]
