#!/usr/bin/env bash
# docker/smoke.sh: build the real image and run the real compose stack on this machine, end to end.
#
#   bash docker/smoke.sh 2>&1 | tee benchmarks/results/docker_smoke.txt      (as root; ~minutes, see README)
#   bash docker/smoke.sh --build-only                                          (stand-ins + image only)
#
# For machines that cannot reach an image registry (python:3.11-slim and postgres:15 cannot be pulled):
#  1. starts dockerd (--storage-driver=vfs, in the background, left running for the next run) if none runs;
#  2. builds two local stand-in base images from Debian packages: debootstrap minbase -> `docker import`,
#     the host's CA bundle baked in (pip inside the build reaches PyPI through the host network and needs
#     it), then docker/standin/python.Dockerfile (python3.11 + venv) and postgres.Dockerfile (postgresql-15,
#     an entrypoint honouring POSTGRES_USER/PASSWORD/DB);
#  3. builds the production docker/Dockerfile unchanged on the python stand-in (--build-arg PYTHON_IMAGE);
#  4. runs docker-compose.yml (a copy without the top-level `name:` key, which Debian's docker-compose
#     1.29 rejects, plus an override that swaps in the postgres stand-in): db, one-shot migrate, api x2,
#     ports published on 127.0.0.1 only;
#  5. checks: HEALTHCHECK turns healthy (time measured), the api runs as non-root, a key is created when the
#     build has `faceverify keys` (sent as X-API-Key), enrol through replica 1 and verify through replica 2
#     with real LFW photos, /metrics answers on the compose network, `down` + `up` keeps the enrolled user;
#  6. tears down the containers, networks and volumes it made (images and dockerd stay, as build cache).
# It talks to containers only through ports published on 127.0.0.1 and over the compose network.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${FACEVERIFY_SMOKE_DATA:-$REPO/../shared/data}
LFW=$DATA/lfw/images
DOCKER=${DOCKER:-/usr/bin/docker}          # docker.io's own client: it matches its 20.10 daemon
COMPOSE_BIN=${COMPOSE_BIN:-docker-compose}
PROJECT=${SMOKE_PROJECT:-faceverify-smoke}
PORTS=${SMOKE_PORTS:-18300-18309}          # host ports for the replicas, on 127.0.0.1 only
IMAGE=faceverify:latest
BASE=faceverify-standin/debian:bookworm
PY_STANDIN=faceverify-standin/python:3.11-slim
PG_STANDIN=faceverify-standin/postgres:15
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/faceverify-dockerd.log}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
    || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HEALTHY_TIMEOUT_S=${SMOKE_HEALTHY_TIMEOUT_S:-900}
export DOCKER_BUILDKIT=0                   # BuildKit would try to pull the dockerfile:1 frontend image
export COMPOSE_DOCKER_CLI_BUILD=0

BUILD_ONLY=0
[[ ${1:-} == --build-only ]] && BUILD_ONLY=1

t0=$(date +%s)
log() { printf '[smoke %4ds] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }  # stderr: never captured by $(...)
fail() { log "FAIL: $*"; exit 1; }

# ------------------------------------------------------------------------------------------ engine
ensure_tools() {
    local missing=()
    [[ -x $DOCKER ]] || missing+=(docker.io)
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v "$COMPOSE_BIN" >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}: apt-get install docker.io docker-compose debootstrap"
        log "installing ${missing[*]} (apt-get)"
        apt-get install -y -q docker.io docker-compose debootstrap >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q docker.io docker-compose debootstrap >/dev/null; }
    fi
}

ensure_dockerd() {
    if "$DOCKER" info >/dev/null 2>&1; then
        log "dockerd already running ($("$DOCKER" version -f '{{.Server.Version}}'), $("$DOCKER" info -f '{{.Driver}}'))"
        return
    fi
    [[ $(id -u) == 0 ]] || fail "no Docker engine running and not root: start dockerd --storage-driver=vfs"
    log "starting dockerd --storage-driver=vfs in the background (log $DOCKERD_LOG; left running for reuse)"
    nohup dockerd --storage-driver=vfs >"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && return
        sleep 1
    done
    fail "dockerd did not come up, see $DOCKERD_LOG"
}

# ------------------------------------------------------------------------------------------ images
build_base() {
    if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
        log "base $BASE: cached"
        return
    fi
    local rootfs
    rootfs=$(mktemp -d /tmp/faceverify-rootfs.XXXXXX)
    log "debootstrap --variant=minbase bookworm from $MIRROR"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/tmp/faceverify-debootstrap.log 2>&1 \
        || { rm -rf "$rootfs"; fail "debootstrap failed, see /tmp/faceverify-debootstrap.log"; }
    # Outside /etc/ssl: Debian's ca-certificates package (pulled in later) regenerates that bundle.
    mkdir -p "$rootfs/etc/faceverify-standin"
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/faceverify-standin/host-ca-bundle.pem"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    chmod 755 "$rootfs"  # mktemp made it 0700: it becomes the image's /, and non-root users must enter it
    tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE" >/dev/null
    rm -rf "$rootfs"
    log "base $BASE imported"
}

build_images() {
    build_base
    local started
    for pair in "python:$PY_STANDIN" "postgres:$PG_STANDIN"; do
        started=$(date +%s)
        "$DOCKER" build -q --force-rm --network host --build-arg "BASE=$BASE" -t "${pair#*:}" \
            -f "$REPO/docker/standin/${pair%%:*}.Dockerfile" "$REPO/docker/standin" >/dev/null \
            || fail "stand-in ${pair#*:} build failed"
        log "stand-in ${pair#*:} built ($(($(date +%s) - started)) s)"
    done
    started=$(date +%s)
    log "building $IMAGE from docker/Dockerfile on $PY_STANDIN (log /tmp/faceverify-image-build.log)"
    "$DOCKER" build --force-rm --network host --build-arg "PYTHON_IMAGE=$PY_STANDIN" -t "$IMAGE" \
        -f "$REPO/docker/Dockerfile" "$REPO" >/tmp/faceverify-image-build.log 2>&1 \
        || { tail -30 /tmp/faceverify-image-build.log; fail "image build failed"; }
    log "image $IMAGE built ($(($(date +%s) - started)) s)"
    local size base_size
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
    base_size=$("$DOCKER" image inspect -f '{{.Size}}' "$PY_STANDIN")
    log "image size: $((size / 1000000)) MB ($IMAGE), of which base $((base_size / 1000000)) MB ($PY_STANDIN)"
    log "in the image: $("$DOCKER" run --rm --entrypoint du "$IMAGE" -sh /opt/venv /models | tr '\n\t' '  ')"
    if "$DOCKER" run --rm --entrypoint sh "$IMAGE" -c 'command -v gcc cc g++ || ls /root/.cache/pip' \
        >/dev/null 2>&1; then
        fail "the runtime image has a compiler or a pip cache"
    fi
    log "no compiler and no pip cache in the runtime image"
    "$DOCKER" run --rm --entrypoint python "$IMAGE" -c \
        "import importlib.metadata as m; d={x.metadata['Name'].lower() for x in m.distributions()}; \
print('tensorflow packages:', sorted(n for n in d if n.startswith('tensorflow')))" | sed 's/^/    /'
}

# ------------------------------------------------------------------------------------------ compose
WORK=""
compose() {
    FACEVERIFY_BIND=127.0.0.1 FACEVERIFY_PORTS=$PORTS POSTGRES_PASSWORD=$PG_PASSWORD \
        "$COMPOSE_BIN" -p "$PROJECT" --project-directory "$REPO" \
        -f "$WORK/docker-compose.yml" -f "$WORK/standin.override.yml" "$@"
}

teardown() {
    local rc=$?
    if [[ -n $WORK ]]; then
        if ((rc != 0)); then
            log "logs of the failed run (last 40 lines per service):"
            compose logs --no-color --tail=40 2>&1 | sed 's/^/    /' || true
        fi
        log "teardown: compose down -v (containers, network, volumes of project $PROJECT)"
        compose down -v --remove-orphans >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    ((rc == 0)) && log "PASS" || log "exit $rc"
}

wait_healthy() {  # all api replicas healthy; prints seconds taken
    local started=$1 ids status
    while :; do
        ids=$(compose ps -q api)
        [[ -n $ids ]] || fail "no api container"
        local all=1
        for id in $ids; do
            status=$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
            [[ $status == healthy ]] || all=0
            [[ $status == unhealthy || $("$DOCKER" inspect -f '{{.State.Status}}' "$id") == exited ]] \
                && fail "api container $id is $status"
        done
        ((all)) && break
        (($(date +%s) - started > HEALTHY_TIMEOUT_S)) && fail "api not healthy after $HEALTHY_TIMEOUT_S s"
        sleep 2
    done
    echo $(($(date +%s) - started))
}

replica_url() {  # replica_url INDEX -> http://127.0.0.1:PORT, refusing anything not bound to loopback
    local mapping
    mapping=$(compose port --index="$1" api 8000)
    [[ $mapping == 127.0.0.1:* ]] || fail "replica $1 is published on $mapping, not 127.0.0.1"
    echo "http://$mapping"
}

json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

api() {  # api METHOD URL [curl args...]: body on stdout, fails on a non-2xx status
    local method=$1 url=$2
    shift 2
    curl -sS --fail-with-body --max-time 120 -X "$method" "${KEY_HEADER[@]}" "$url" "$@"
}

run_stack() {
    [[ -d $LFW ]] || fail "LFW images not found at $LFW (set FACEVERIFY_SMOKE_DATA)"
    WORK=$(mktemp -d /tmp/faceverify-smoke.XXXXXX)
    PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    trap teardown EXIT
    sed '/^name:/d' "$REPO/docker-compose.yml" >"$WORK/docker-compose.yml"
    printf 'services:\n  db:\n    image: %s\n' "$PG_STANDIN" >"$WORK/standin.override.yml"
    compose down -v --remove-orphans >/dev/null 2>&1 || true  # leftovers of an interrupted run

    local started healthy
    started=$(date +%s)
    log "compose up: db, migrate, api x2 (ports $PORTS on 127.0.0.1)"
    compose up -d --no-build --scale api=2 2>&1 | sed 's/^/    /'
    [[ $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(compose ps -q migrate)") == 0 ]] || fail "migrate failed"
    log "migrate: $(compose logs --no-color migrate | grep -o 'database at revision [^ ]*' | tail -1)"
    healthy=$(wait_healthy "$started")
    log "time to healthy (compose up -> both api replicas healthy): ${healthy} s"

    local a b
    a=$(replica_url 1)
    b=$(replica_url 2)
    log "replica 1: $a   replica 2: $b"
    for id in $(compose ps -q api); do
        local uid
        uid=$("$DOCKER" exec "$id" id -u)
        [[ $uid != 0 ]] || fail "api container $id runs as root"
        log "api $("$DOCKER" inspect -f '{{.Name}}' "$id") runs as uid $uid ($("$DOCKER" exec "$id" id -un))"
    done

    KEY_HEADER=()
    if compose run --rm --no-deps -T migrate faceverify keys --help >/dev/null 2>&1; then
        local key
        key=$(compose run --rm --no-deps -T migrate faceverify keys create --name smoke --scopes verify,enroll \
            | tail -n1 | tr -d '\r')
        KEY_HEADER=(-H "X-API-Key: $key")
        log "API key created with \`faceverify keys create\` (sent as X-API-Key)"
    else
        log "this build has no \`faceverify keys\` command (before the API-key merge): no X-API-Key sent"
    fi

    local out
    out=$(api POST "$a/enroll" -F user_id=smoke_powell \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0001.jpg" \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0002.jpg" \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0003.jpg")
    log "enrol via replica 1: $(json_field "['enrolled'].__len__()" <<<"$out") enrolled, rejected $(json_field "['rejected']" <<<"$out")"
    [[ $(json_field "['enrolled'].__len__()" <<<"$out") == 3 ]] || fail "enrolment: $out"

    out=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Colin_Powell/Colin_Powell_0004.jpg")
    log "verify genuine via replica 2: $out"
    [[ $(json_field "['verified']" <<<"$out") == True ]] || fail "genuine photo not verified"
    out=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Tony_Blair/Tony_Blair_0001.jpg")
    log "verify impostor via replica 2: $out"
    [[ $(json_field "['verified']" <<<"$out") == False ]] || fail "impostor photo verified"

    local metrics all_metrics=""
    for id in $(compose ps -q api); do
        local name
        name=$("$DOCKER" inspect -f '{{.Name}}' "$id" | tr -d /)
        metrics=$(compose run --rm --no-deps -T migrate python -c \
            "import urllib.request; print(urllib.request.urlopen('http://$name:9464/metrics', timeout=10).read().decode())")
        log "metrics of $name over the compose network (http://$name:9464/metrics):"
        grep -E '^faceverify_(verify_decisions_total|model_info|http_requests_total\{[^}]*route="/(enroll|verify)")' \
            <<<"$metrics" | sed 's/^/    /' || true
        all_metrics+=$metrics
    done
    grep -q '^faceverify_verify_decisions_total{[^}]*outcome="verified"' <<<"$all_metrics" \
        || fail "no verify decision in the replicas' metrics"

    log "compose down (volumes kept) + up again"
    compose down 2>&1 | sed 's/^/    /'
    started=$(date +%s)
    compose up -d --no-build --scale api=2 2>&1 | sed 's/^/    /'
    healthy=$(wait_healthy "$started")
    log "time to healthy after restart: ${healthy} s"
    a=$(replica_url 1)
    b=$(replica_url 2)
    out=$(api GET "$a/users/smoke_powell")
    log "after restart, GET /users/smoke_powell: $(json_field "['images'].__len__()" <<<"$out") images"
    [[ $(json_field "['images'].__len__()" <<<"$out") == 3 ]] || fail "user lost on restart: $out"
    out=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Colin_Powell/Colin_Powell_0005.jpg")
    log "after restart, verify genuine via replica 2: $out"
    [[ $(json_field "['verified']" <<<"$out") == True ]] || fail "genuine photo not verified after restart"
}

log "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr); repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
ensure_tools
ensure_dockerd
build_images
((BUILD_ONLY)) && { log "build only: done"; exit 0; }
run_stack
