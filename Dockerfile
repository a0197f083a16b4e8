# lexyjobs production image (README "Deployment"):
#   docker build -t lexyjobs . && docker run -p 8080:8080 -v lexyjobs:/data lexyjobs
# The /data volume holds jobs.db and the generated secret key; logs are JSON lines on stderr.
# tests/test_docker.py runs this file's CMD with its ENV (a temp dir standing for /data) and its
# HEALTHCHECK; scripts/docker-smoke.sh builds and checks the real image where docker exists.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: forwards SIGTERM to lexyjobs (graceful stop) and reaps the orphaned children
# that killed shell jobs can leave behind.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# The runtime requirements in their own layer (requirements.txt without its `-e .`; the test
# tools are in requirements-dev.txt, which the image never installs).
COPY requirements.txt scripts/runtime_requirements.py /tmp/build/
RUN python /tmp/build/runtime_requirements.py /tmp/build/requirements.txt > /tmp/build/runtime.txt \
 && pip install -r /tmp/build/runtime.txt \
 && rm -rf /tmp/build

# The code, installed in place like README's `pip install -r requirements.txt` does (`-e .`):
# templates/ and static/ are read from beside the package. Owned by root, read-only at run time.
WORKDIR /app
COPY . /app
RUN pip install --no-deps -e /app \
 && python -m compileall -q /app/lexyjobs

RUN groupadd --system --gid 10001 lexyjobs \
 && useradd --system --uid 10001 --gid lexyjobs --no-create-home --home-dir /data \
            --shell /usr/sbin/nologin lexyjobs \
 && mkdir -p /data \
 && chown lexyjobs:lexyjobs /data

# /data is also the working directory: a jobs.toml put there (or mounted at /data/jobs.toml) is
# loaded at start, and shell jobs run there unless they set `cwd`.
ENV LEXYJOBS_DATABASE_URL=sqlite:////data/jobs.db \
    LEXYJOBS_DATA_DIR=/data \
    LEXYJOBS_HOST=0.0.0.0 \
    LEXYJOBS_PORT=8080 \
    LEXYJOBS_LOG_FORMAT=json
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# No curl in the slim image: python's urllib. /healthz answers 503 (an error here) when the
# database or the scheduler/worker threads are down.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LEXYJOBS_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["tini", "--"]
CMD ["lexyjobs", "serve"]
