# mpp-server image: one image, three roles chosen by the command
# (`serve` by default, `migrate`, `simulator`); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so orchestrators can verify "not root" without reading /etc/passwd.
RUN groupadd --system --gid 10001 mpp \
 && useradd --system --uid 10001 --gid mpp --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin mpp

# Install the package from the checkout; the build tree is thrown away.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY mpp_server ./mpp_server
RUN pip install . && rm -rf /build

WORKDIR /app
# The migrations are not part of the Python package: the runner reads MPP_SQL_DIR.
COPY sql /app/sql
COPY deploy/docker/healthcheck.py /app/healthcheck.py

# Inside a container the listeners bind every interface; publishing a port is what
# decides who can reach it (see docker-compose.yml).
ENV MPP_SQL_DIR=/app/sql \
    WALLET_LISTEN=0.0.0.0:8080 \
    KASPI_LISTEN=0.0.0.0:8081 \
    ADMIN_LISTEN=0.0.0.0:8083 \
    SIMULATOR_LISTEN=0.0.0.0:8090

USER 10001:10001
EXPOSE 8080 8081 8083 8090

# /healthz on the wallet listener (WALLET_LISTEN); python's urllib, slim has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

ENTRYPOINT ["python", "-m", "mpp_server"]
CMD ["serve"]
