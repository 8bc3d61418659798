# One image, two roles: `api` (default) and `worker`. See docker-compose.yml.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /app tusd \
 && mkdir -p /data && chown tusd /data

WORKDIR /app
COPY pyproject.toml README.md openapi.yaml ./
COPY tusd_py ./tusd_py
COPY auth ./auth
COPY processing ./processing
RUN pip install --no-cache-dir .

ENV TUSD_PY_DATA_DIR=/data \
    TUSD_PY_HOST=0.0.0.0 \
    TUSD_PY_PORT=8080
VOLUME /data
EXPOSE 8080
USER tusd
ENTRYPOINT ["tusd-py"]
CMD ["api"]
