# syntax=docker/dockerfile:1
#
# FIX 4.4 gateway appliance.
#
#   docker build -t fixgw .
#   docker run -d --name fixgw -p 9876:9876 -p 9877:9877 -p 8080:8080 -v fixgw-data:/var/lib/fixgw fixgw
#
# The daemon runs the packaged config/default.toml (FIX acceptor on 9876, the
# drop copy on 9877, HTTP health/metrics on 8080) and keeps its message stores and sequence numbers in
# the /var/lib/fixgw volume. A different config can be mounted and selected with
#   docker run ... fixgw run --config /etc/fixgw/gateway.toml --data-dir /var/lib/fixgw
# (the data directory must then be passed again, because CMD is replaced as a whole).
# The image listens on every interface (--fix-host/--http-host 0.0.0.0) so that
# published ports reach it; the packaged config's sessions have no password, and
# the daemon warns about each at start: mount a config with passwords for real use.

############################################################################
# builder: resolves the dependencies and builds the project wheel into a venv
############################################################################
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# A C compiler: the order path is compiled to extension modules (setup.py).
# Only the builder has it; the runtime stage gets the built venv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first: this layer is rebuilt only when pyproject.toml changes,
# not on every edit of the sources.
COPY pyproject.toml setup.py README.md ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# The packages listed in [tool.setuptools.packages.find].
COPY config ./config
COPY gateway ./gateway
COPY router ./router
COPY matcher ./matcher
COPY risk ./risk
COPY lp_adapters ./lp_adapters
COPY backoffice ./backoffice

RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && pip install --no-cache-dir --no-deps /tmp/wheels/fixgw-*.whl \
    && fixgw check-config

############################################################################
# runtime: the venv only, run as an unprivileged user
############################################################################
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="fixgw" \
      org.opencontainers.image.description="FIX 4.4 gateway and smart order router appliance" \
      org.opencontainers.image.licenses="Proprietary"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# Fixed uid/gid so that bind-mounted data directories can be prepared on the host
# (chown 10001:10001). The data directory is created, with its owner, before it is
# declared a volume: a new named volume is initialised from it.
RUN groupadd --system --gid 10001 fixgw \
    && useradd --system --uid 10001 --gid fixgw --no-create-home \
        --home-dir /var/lib/fixgw --shell /usr/sbin/nologin fixgw \
    && install -d -o fixgw -g fixgw -m 0750 /var/lib/fixgw

# Same path as in the builder, so the venv's scripts and interpreter link stay valid.
COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/fixgw
VOLUME ["/var/lib/fixgw"]

USER fixgw:fixgw

# FIX acceptor (gateway.fix_port), drop copy (gateway.drop_copy_port), HTTP
# health and metrics (gateway.http_port).
EXPOSE 9876 9877 8080

# Standard library only: slim images have neither curl nor wget. urlopen raises
# on a refused connection, a timeout or an HTTP error status, which exits 1.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

# The daemon logs every session out cleanly on SIGTERM before it exits.
STOPSIGNAL SIGTERM

ENTRYPOINT ["fixgw"]
CMD ["run", "--data-dir", "/var/lib/fixgw", "--fix-host", "0.0.0.0", "--http-host", "0.0.0.0"]
