#!/usr/bin/env bash
# Build the image and check it for real (needs docker; the test suite checks what it can without):
# the container becomes healthy, /healthz answers on the published port, /data holds jobs.db and
# the secret key and is owned by the non-root user, logs are JSON, and `docker stop` exits 0.
#
#   scripts/docker-smoke.sh [IMAGE_TAG]        (default lexyjobs:smoke; port from SMOKE_PORT, default 18080)
set -euo pipefail

tag="${1:-lexyjobs:smoke}"
port="${SMOKE_PORT:-18080}"
name="lexyjobs-smoke-$$"
volume="lexyjobs-smoke-$$"
cd "$(dirname "$0")/.."

cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { echo "docker-smoke: FAIL: $*" >&2; docker logs "$name" >&2 2>&1 || true; exit 1; }

docker build -t "$tag" .
docker run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$volume:/data" \
    --health-interval 2s --health-start-period 30s "$tag" >/dev/null

for _ in $(seq 1 60); do
    health="$(docker inspect --format '{{.State.Health.Status}}' "$name")"
    [ "$health" = healthy ] && break
    [ "$(docker inspect --format '{{.State.Running}}' "$name")" = true ] || fail "the container exited"
    sleep 1
done
[ "$health" = healthy ] || fail "not healthy after 60 s (status: $health)"

code="$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=5).status)")"
[ "$code" = 200 ] || fail "/healthz answered $code"

docker exec "$name" test -s /data/jobs.db || fail "no /data/jobs.db"
docker exec "$name" test -s /data/secret_key || fail "no /data/secret_key"
[ "$(docker exec "$name" id -u)" != 0 ] || fail "runs as root"
[ "$(docker exec "$name" stat -c %u /data)" = "$(docker exec "$name" id -u)" ] || fail "/data not owned by the user"

docker logs "$name" 2>&1 | grep -q '^{"ts": ".*"logger": "lexyjobs.cli".*serving on' || fail "no JSON 'serving on' log line"

docker stop -t 40 "$name" >/dev/null
status="$(docker inspect --format '{{.State.ExitCode}}' "$name")"
[ "$status" = 0 ] || fail "exit code $status after docker stop"

echo "docker-smoke: OK ($tag: healthy, /healthz 200, /data owned by the non-root user, JSON logs, clean stop)"
