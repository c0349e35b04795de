# syntax=docker/dockerfile:1
# One image for both services; the command picks the service:
#   auth-service serve   (default)   the REST API on :8000
#   relay-service                    the WebSocket relay on :8001
#   auth-service migrate             the one-shot schema migration
# No secret is baked in: JWT_SECRET, DATABASE_URL and the rest come from the environment.

# Pin the base image by digest for a reproducible build (the tests accept either form):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11-slim-bookworm` prints the digest.)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the dependencies in a layer of their own, then the project's wheel -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Only the lock files decide these layers: a code change does not reinstall dependencies.
# Every package is pinned with its hashes (requirements.lock, from pyproject.toml); pip
# refuses anything else, so two builds of one commit install the same files.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --require-hashes --only-binary=:all: \
        --requirement requirements.lock \
 && python -m pip install --no-deps --require-hashes --requirement requirements-build.lock

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY auth_service ./auth_service
COPY relay_service ./relay_service
COPY relay_client ./relay_client
COPY migrations ./migrations
# The wheel is built with the locked hatchling (no download), installed without its
# dependencies (already there, from the lock).
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/*.whl

# -- runtime: the virtualenv only, as an unprivileged user --------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
 && install --directory --owner app --group app /app
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/healthcheck.py
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/healthcheck.py"]
STOPSIGNAL SIGTERM
CMD ["auth-service", "serve"]
