# One image for every role (api, worker, bridge, migrate): the command picks the role.

# --- builder: build the wheel, install it with its dependencies into a virtualenv ------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY core ./core
COPY processor ./processor
COPY http ./http
COPY schemas ./schemas
COPY db ./db
COPY devenv ./devenv
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/finally_indexer-*.whl

# --- runtime: only the virtualenv, as an unprivileged user -----------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8000 \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 indexer \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /app indexer
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status != 200)"]
ENTRYPOINT ["finally-indexer"]
CMD ["api"]
