# One image, two roles: `api` (default) and `worker`. See docker-compose.yml.
#
# Both bases are build arguments so that a machine without an image registry can
# build from local images (tests/containers/ builds them from Debian's packages):
#   docker build --build-arg BASE_IMAGE=localhost/debian-py:bookworm \
#                --build-arg NODE_IMAGE=localhost/debian-node:bookworm .
# A Debian base has `python3` but no `python` and is PEP 668 ("externally managed"),
# so everything goes into a venv, which the runtime stage copies whole.
ARG BASE_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:24-slim

# --- console-assets: Uppy for the web console at `/`, from the npm registry -------
# The same files `make console` copies into tusd_py/console_ui/vendor/ (gitignored);
# the build stage puts them there so the wheel ships them as package data.
FROM ${NODE_IMAGE} AS console-assets
WORKDIR /src
COPY tusd_py/console_ui/package.json tusd_py/console_ui/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error --ignore-scripts

# --- build: the wheel, then a venv with it and its dependencies -----------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md openapi.yaml ./
COPY tusd_py ./tusd_py
COPY auth ./auth
COPY processing ./processing
COPY --from=console-assets /src/node_modules/uppy/dist/uppy.min.mjs /src/node_modules/uppy/dist/uppy.min.css \
     ./tusd_py/console_ui/vendor/
RUN python3 -m venv /opt/tusd-py \
 && /opt/tusd-py/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/tusd-py/bin/pip install /wheels/*.whl \
 && /opt/tusd-py/bin/pip uninstall --yes pip

# --- runtime: the venv, a non-root user, nothing else ---------------------------
FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tusd \
 && mkdir -p /data && chown tusd:tusd /data && chmod 0700 /data
COPY --from=build /opt/tusd-py /opt/tusd-py

ENV PATH=/opt/tusd-py/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TUSD_PY_DATA_DIR=/data \
    TUSD_PY_HOST=0.0.0.0 \
    TUSD_PY_PORT=8080
VOLUME /data
EXPOSE 8080
USER 10001:10001
WORKDIR /data
# The API's readiness (it answers and Redis answers). It sends the Host of
# TUSD_PY_PUBLIC_URL when one is set, so that an allowed-hosts check lets it in.
# The worker role serves no HTTP: docker-compose.yml gives it its own check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.parse as p, urllib.request as r; port = os.environ.get('TUSD_PY_PORT', '8080'); host = p.urlsplit(os.environ.get('TUSD_PY_PUBLIC_URL', '')).netloc or '127.0.0.1:' + port; r.urlopen(r.Request('http://127.0.0.1:' + port + '/readyz', headers={'Host': host}), timeout=4)"]
ENTRYPOINT ["tusd-py"]
CMD ["api"]
