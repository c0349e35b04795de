# syntax=docker/dockerfile:1
# One image for both services; the command picks the service:
#   auth-service serve   (default)   the REST API on :8000
#   relay-service                    the WebSocket relay on :8001
#   auth-service migrate             the one-shot schema migration
# No secret is baked in: JWT_SECRET, DATABASE_URL and the rest come from the environment.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the dependencies in a layer of their own, then the project's wheel -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Only pyproject.toml decides this layer: a code change does not reinstall dependencies.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt \
 && pip install --requirement requirements.txt

COPY README.md ./
COPY shared ./shared
COPY auth_service ./auth_service
COPY relay_service ./relay_service
COPY relay_client ./relay_client
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl

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
