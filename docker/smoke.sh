#!/usr/bin/env bash
# docker/smoke.sh: build the real image and run the real compose stack on this machine, end to end.
#
#   bash docker/smoke.sh 2>&1 | tee benchmarks/results/docker_smoke.txt      (as root; ~30 min the first time)
#   bash docker/smoke.sh --build-only                                          (stand-ins + image only)
#   bash docker/smoke.sh --clean                                               (remove every image and cache)
#
# For machines that cannot reach an image registry (python:3.11-slim and postgres:15 cannot be pulled):
#  0. installs what it needs and lacks (apt-get: docker.io, docker-compose, debootstrap); the host also needs
#     python3, curl >= 7.76 and the LFW photos ($FACEVERIFY_SMOKE_DATA/lfw/images, default ../shared/data);
#  1. starts dockerd (--storage-driver=vfs, in the background) if none runs, and stops it again at the end
#     (SMOKE_KEEP_DOCKERD=1 keeps it); its images stay in /var/lib/docker as the next run's build cache;
#  2. builds two local stand-in base images from Debian packages: debootstrap minbase -> `docker import`,
#     the host's CA bundle baked in (pip inside the build reaches PyPI through the host network and needs
#     it), then docker/standin/python.Dockerfile (python3.11 + venv) and postgres.Dockerfile (postgresql-15,
#     an entrypoint honouring POSTGRES_USER/PASSWORD/DB);
#  3. builds the production docker/Dockerfile unchanged on the python stand-in (--build-arg PYTHON_IMAGE),
#     and checks in one network-less container: no compiler, no pip cache, tensorflow-cpu only, and the
#     release model (version and one input per tower, from its card and its SavedModel signature);
#  4. runs docker-compose.yml (a copy without the top-level `name:` key, which Debian's docker-compose
#     1.29 rejects, plus an override that swaps in the postgres stand-in): db, one-shot migrate, api x2,
#     ports published on 127.0.0.1 only;
#  5. checks: HEALTHCHECK turns healthy (time measured), the api runs as non-root and publishes only its API
#     port, on 127.0.0.1; an API key made with `faceverify keys create` (README) enrols through replica 1
#     and verifies through replica 2 with real LFW photos (same person verified, another refused, served
#     by the release model); the bootstrap admin key the first replica wrote to /data shows the scores;
#     each replica reads the other's /metrics over the compose network; `down` + `up` keeps the user;
#  6. tears down the containers, networks and volumes it made and checks none is left.
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
# The release `faceverify export --release` builds (the fused head's version) and its towers (one model input
# each): the image and every verify answer must carry exactly this model.
EXPECT_MODEL_VERSION=${SMOKE_EXPECT_MODEL_VERSION:-$(sed -n 's/^FUSED_RELEASE_VERSION = "\(.*\)"$/\1/p' \
    "$REPO/training/build_model.py")}
EXPECT_MODEL_INPUTS=${SMOKE_EXPECT_MODEL_INPUTS:-$(python3 -c \
    'import json, sys; print(len(json.load(open(sys.argv[1]))["towers"]))' "$REPO/training/release/fused_head.json")}
export DOCKER_BUILDKIT=0                   # BuildKit would try to pull the dockerfile:1 frontend image
export COMPOSE_DOCKER_CLI_BUILD=0
# docker-compose 1.29 gives each Docker API call 60 s by default; on vfs creating or removing a container
# copies or deletes the image's whole 2.5 GB file system, which takes longer than that on a loaded box.
export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-900}

MODE=run
case ${1:-} in
    "") ;;
    --build-only) MODE=build ;;
    --clean) MODE=clean ;;
    *) echo "usage: bash docker/smoke.sh [--build-only | --clean]" >&2; exit 2 ;;
esac

t0=$(date +%s)
log() { printf '[smoke %4ds] %s\n' "$(($(date +%s) - t0))" "$*" >&2; }  # stderr: never captured by $(...)
fail() { log "FAIL: $*"; exit 1; }

# ------------------------------------------------------------------------------------------ engine
ensure_tools() {
    local missing=()
    [[ -x $DOCKER ]] && command -v dockerd >/dev/null || missing+=(docker.io)
    command -v "$COMPOSE_BIN" >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v python3 >/dev/null || fail "python3 is needed on this machine (it reads the JSON answers)"
    curl --help all 2>/dev/null | grep -q -- --fail-with-body || fail "curl >= 7.76 is needed (--fail-with-body)"
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || fail "missing ${missing[*]}: apt-get install docker.io docker-compose debootstrap"
        log "installing ${missing[*]} (apt-get)"
        apt-get install -y -q docker.io docker-compose debootstrap >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q docker.io docker-compose debootstrap >/dev/null; }
    fi
}

DOCKERD_PID=""
ensure_dockerd() {
    if "$DOCKER" info >/dev/null 2>&1; then
        log "dockerd already running ($("$DOCKER" version -f '{{.Server.Version}}'), $("$DOCKER" info -f '{{.Driver}}'))"
        return
    fi
    [[ $(id -u) == 0 ]] || fail "no Docker engine running and not root: start dockerd --storage-driver=vfs"
    log "starting dockerd --storage-driver=vfs in the background (log $DOCKERD_LOG; stopped at the end)"
    # What dockerd changes on the host and leaves when it stops, restored by stop_dockerd.
    HOST_IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
    HOST_FORWARD_POLICY=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
    nohup dockerd --storage-driver=vfs >"$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        if "$DOCKER" info >/dev/null 2>&1; then
            log "dockerd $("$DOCKER" version -f '{{.Server.Version}}') up (pid $DOCKERD_PID)"
            return
        fi
        sleep 1
    done
    fail "dockerd did not come up, see $DOCKERD_LOG"
}

stop_dockerd() {  # only the dockerd this run started (and with it the containerd it started)
    [[ -n $DOCKERD_PID ]] || return 0
    if [[ ${SMOKE_KEEP_DOCKERD:-0} == 1 ]]; then
        log "dockerd (pid $DOCKERD_PID) left running (SMOKE_KEEP_DOCKERD=1)"
        return 0
    fi
    kill -TERM "$DOCKERD_PID" 2>/dev/null || return 0
    local waited
    for waited in $(seq 60); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        log "dockerd (pid $DOCKERD_PID) still stopping after $waited s; host network left as it is"
        return 0
    fi
    restore_host_network
    log "dockerd (pid $DOCKERD_PID) stopped; docker0, its netns mount, docker's iptables rules and chains removed," \
        "FORWARD policy ${HOST_FORWARD_POLICY:-ACCEPT} and ip_forward=$HOST_IP_FORWARD restored"
}

HOST_IP_FORWARD=""
HOST_FORWARD_POLICY=""
restore_host_network() {  # undo what the dockerd this run started did to the host's network (it leaves it)
    ip link delete docker0 2>/dev/null || true
    local ns
    for ns in /run/docker/netns/*; do  # dockerd's own network namespace stays bind-mounted
        [[ -e $ns ]] && { umount "$ns" 2>/dev/null || true; }
    done
    rm -rf /run/docker 2>/dev/null || true
    if command -v iptables-save >/dev/null; then
        local table rule chain
        for table in filter nat; do
            iptables-save -t "$table" 2>/dev/null | grep -E '^-A .*(DOCKER|docker0|br-[0-9a-f]{12})' \
                | while read -r rule; do
                    # shellcheck disable=SC2086  # docker's rules hold no quoted words
                    iptables -t "$table" -D ${rule#-A } 2>/dev/null || true
                done
            for chain in DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER DOCKER; do
                { iptables -t "$table" -F "$chain" && iptables -t "$table" -X "$chain"; } 2>/dev/null || true
            done
        done
        iptables -P FORWARD "${HOST_FORWARD_POLICY:-ACCEPT}" 2>/dev/null || true
    fi
    [[ -z $HOST_IP_FORWARD ]] || echo "$HOST_IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
}

docker_disk() { echo "/var/lib/docker $(du -sh /var/lib/docker 2>/dev/null | cut -f1), $(df -h / | awk 'NR == 2 {print $4}') free on /"; }

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
    # Everything about the image's contents in one container (on vfs each `docker run` copies the whole
    # file system), without a network, as root (so that /root is readable): sizes, no compiler and no pip
    # cache, the TensorFlow packages, and the release model the image really carries (its card, and the
    # SavedModel's `embed` signature as TensorFlow loads it: one keyword input per tower).
    local report
    report=$("$DOCKER" run --rm --network none --user 0 --entrypoint sh "$IMAGE" -c '
echo "sizes: $(du -sh /opt/venv /models | tr "\n\t" "  ")"
tools=$(for t in gcc cc g++ c++ clang make; do command -v "$t"; done; ls -d /root/.cache/pip 2>/dev/null)
echo "compilers or pip cache: ${tools:-none}"
TF_CPP_MIN_LOG_LEVEL=3 python - 2>/dev/null <<"PY"
import importlib.metadata as m, json
d = {x.metadata["Name"].lower() for x in m.distributions()}
print("tensorflow packages:", sorted(n for n in d if n.startswith("tensorflow")))
card = json.load(open("/models/release/model_card.json"))
import tensorflow as tf
sig = tf.saved_model.load("/models/release").signatures["embed"]
print("model:", json.dumps({"name": card["name"], "version": card["version"],
      "embedding_dim": card["embedding_dim"], "card_inputs": [i["name"] for i in card.get("inputs", [])],
      "embed_signature_inputs": sorted(sig.structured_input_signature[1])}))
PY
') || fail "could not inspect the image"
    sed 's/^/    /' <<<"$report" >&2
    grep -qx 'compilers or pip cache: none' <<<"$report" || fail "the runtime image has a compiler or a pip cache"
    grep -qx "tensorflow packages: \['tensorflow_cpu'\]" <<<"$report" || fail "not tensorflow-cpu alone"
    local model
    model=$(sed -n 's/^model: //p' <<<"$report")
    [[ -n $model ]] || fail "no release model in the image"
    MODEL_VERSION=$(json_field "['version']" <<<"$model")
    [[ $MODEL_VERSION == "$EXPECT_MODEL_VERSION" ]] \
        || fail "the image carries model $MODEL_VERSION, not the release $EXPECT_MODEL_VERSION"
    [[ $(json_field "['card_inputs'].__len__()" <<<"$model") == "$EXPECT_MODEL_INPUTS" \
        && $(json_field "['embed_signature_inputs'].__len__()" <<<"$model") == "$EXPECT_MODEL_INPUTS" ]] \
        || fail "the image's model does not have $EXPECT_MODEL_INPUTS inputs (one per tower)"
    log "image checked: no compiler, no pip cache, tensorflow-cpu only; release model $MODEL_VERSION with" \
        "$EXPECT_MODEL_INPUTS inputs (card and SavedModel signature)"
}

# ------------------------------------------------------------------------------------------ compose
WORK=""
compose() {
    FACEVERIFY_BIND=127.0.0.1 FACEVERIFY_PORTS=$PORTS POSTGRES_PASSWORD=$PG_PASSWORD \
        "$COMPOSE_BIN" -p "$PROJECT" --project-directory "$REPO" \
        -f "$WORK/docker-compose.yml" -f "$WORK/standin.override.yml" "$@"
}

VOLUMES_BEFORE=""
leftovers() {  # anything of the compose project still there, and any volume the run added (anonymous ones too)
    local label=com.docker.compose.project=$PROJECT
    {
        "$DOCKER" ps -aq --filter "label=$label" | sed 's/^/container /'
        "$DOCKER" network ls -q --filter "label=$label" | sed 's/^/network /'
        "$DOCKER" volume ls -q | sort | comm -13 <(echo "$VOLUMES_BEFORE") - | sed 's/^/volume /'
    } 2>/dev/null
}

on_exit() {
    local rc=$?
    set +e  # clean up as far as possible whatever fails here
    if [[ -n $WORK ]]; then
        if ((rc != 0)); then
            log "logs of the failed run (last 40 lines per service):"
            compose logs --no-color --tail=40 2>&1 | sed 's/^/    /' || true
        fi
        log "teardown: compose down -v (containers, network, volumes of project $PROJECT)"
        compose down -v --remove-orphans 2>&1 | sed 's/^/    /' || true
        rm -rf "$WORK"
        local left
        left=$(leftovers)
        if [[ -n $left ]]; then
            log "left after teardown: $(tr '\n' ' ' <<<"$left")"
            ((rc != 0)) || rc=1
        else
            log "nothing of project $PROJECT left (containers, networks, volumes)"
        fi
    fi
    if [[ $MODE != clean ]] && "$DOCKER" info >/dev/null 2>&1; then
        log "docker disk use: $(docker_disk) (images kept as build cache; bash docker/smoke.sh --clean removes them)"
    fi
    stop_dockerd
    log "end: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    ((rc == 0)) && log "PASS" || log "FAIL (exit $rc)"
    exit "$rc"
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
            (($("$DOCKER" inspect -f '{{.RestartCount}}' "$id") == 0)) || fail "api container $id restarted"
        done
        ((all)) && break
        (($(date +%s) - started > HEALTHY_TIMEOUT_S)) && fail "api not healthy after $HEALTHY_TIMEOUT_S s"
        sleep 2
    done
    echo $(($(date +%s) - started))
}

startup_times() {  # per replica, from its container's start: warm-up done, startup complete, first healthy probe
    local id
    for id in $(compose ps -q api); do
        "$DOCKER" inspect "$id" >"$WORK/inspect.json"
        "$DOCKER" logs "$id" >"$WORK/api.log" 2>&1
        python3 - "$WORK/inspect.json" "$WORK/api.log" <<'PY'
import datetime as dt, json, sys

def t(s):
    return dt.datetime.fromisoformat(s.rstrip("Z")[:26] + "+00:00")

c = json.load(open(sys.argv[1]))[0]
started = t(c["State"]["StartedAt"])
seen = {}
for line in open(sys.argv[2]):
    if line.startswith("{"):
        m = json.loads(line)
        for what in ("warm-up inference done", "Application startup complete"):
            if m["message"].startswith(what):
                seen[what] = f"{(t(m['ts']) - started).total_seconds():.0f} s"
ok = [t(p["End"]) for p in c["State"]["Health"]["Log"] if p["ExitCode"] == 0]
probe = f"{(min(ok) - started).total_seconds():.0f} s" if ok else "?"
print(f"{c['Name'].lstrip('/')}: after its container started, warm-up inference done at "
      f"{seen.get('warm-up inference done', '?')}, startup complete (/ready true) at "
      f"{seen.get('Application startup complete', '?')}, first healthy probe at {probe} (probes every 15 s)")
PY
    done
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
    curl -sS --fail-with-body --max-time 120 -X "$method" -H "X-API-Key: $KEY" "$url" "$@"
}

verify_line() {  # the decision fields of a /verify answer, on one line
    python3 - "$1" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
keys = ("verified", "votes", "comparisons", "best_similarity", "detection_threshold", "target_far",
        "faces_found", "model_version", "elapsed_ms")
print(" ".join(f"{k}={round(r[k], 4) if isinstance(r[k], float) else r[k]}" for k in keys))
PY
}

check_replicas() {  # non-root, and only the API port published, on 127.0.0.1
    local id name uid ports
    for id in $(compose ps -q api); do
        name=$("$DOCKER" inspect -f '{{.Name}}' "$id" | tr -d /)
        uid=$("$DOCKER" exec "$id" id -u)
        [[ $uid != 0 ]] || fail "api container $name runs as root"
        ports=$("$DOCKER" port "$id" | sort -u | tr '\n' ' ')
        [[ $ports =~ ^"8000/tcp -> 127.0.0.1:"[0-9]+" "$ ]] \
            || fail "api container $name publishes '$ports' (expected only 8000/tcp on 127.0.0.1)"
        log "$name runs as uid $uid ($("$DOCKER" exec "$id" id -un)); published: $ports(metrics port 9464 not)"
    done
}

run_stack() {
    [[ -d $LFW ]] || fail "LFW images not found at $LFW (set FACEVERIFY_SMOKE_DATA)"
    WORK=$(mktemp -d /tmp/faceverify-smoke.XXXXXX)
    PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    sed '/^name:/d' "$REPO/docker-compose.yml" >"$WORK/docker-compose.yml"
    printf 'services:\n  db:\n    image: %s\n' "$PG_STANDIN" >"$WORK/standin.override.yml"
    compose down -v --remove-orphans >/dev/null 2>&1 || true  # leftovers of an interrupted run
    VOLUMES_BEFORE=$("$DOCKER" volume ls -q | sort)

    local started healthy
    started=$(date +%s)
    log "compose up: db, migrate, api x2 (ports $PORTS on 127.0.0.1)"
    compose up -d --no-build --scale api=2 2>&1 | sed 's/^/    /'
    [[ $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(compose ps -q migrate)") == 0 ]] || fail "migrate failed"
    log "migrate: $(compose logs --no-color migrate | grep -o 'database at revision [^ ]*' | tail -1)"
    healthy=$(wait_healthy "$started")
    log "time to healthy (compose up -> both api replicas healthy): ${healthy} s"
    startup_times | sed 's/^/    /' >&2

    local a b
    a=$(replica_url 1)
    b=$(replica_url 2)
    log "replica 1: $a   replica 2: $b"
    check_replicas

    # A scoped key, made the README's way (`docker compose run --rm api faceverify keys create ...`).
    KEY=$(compose run --rm --no-deps -T api faceverify keys create --name smoke --scopes verify,enroll,manage \
        | tail -n1 | tr -d '\r')
    [[ $KEY =~ ^[A-Za-z0-9_-]{20,}$ ]] || fail "faceverify keys create printed no key"
    log "API key 'smoke' (verify,enroll,manage) created with \`faceverify keys create\`, sent as X-API-Key"

    local out genuine impostor
    out=$(api POST "$a/enroll" -F user_id=smoke_powell \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0001.jpg" \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0002.jpg" \
        -F "images=@$LFW/Colin_Powell/Colin_Powell_0003.jpg")
    log "enrol Colin_Powell_0001-0003 via replica 1: $(json_field "['enrolled'].__len__()" <<<"$out") enrolled," \
        "rejected $(json_field "['rejected']" <<<"$out")"
    [[ $(json_field "['enrolled'].__len__()" <<<"$out") == 3 ]] || fail "enrolment: $out"

    genuine=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Colin_Powell/Colin_Powell_0004.jpg")
    log "verify Colin_Powell_0004 (same person) via replica 2: $(verify_line "$genuine")"
    [[ $(json_field "['verified']" <<<"$genuine") == True ]] || fail "genuine photo not verified: $genuine"
    impostor=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Tony_Blair/Tony_Blair_0002.jpg")
    log "verify Tony_Blair_0002 (another person) via replica 2: $(verify_line "$impostor")"
    [[ $(json_field "['verified']" <<<"$impostor") == False ]] || fail "impostor photo verified: $impostor"
    for out in "$genuine" "$impostor"; do
        [[ $(json_field "['model_version']" <<<"$out") == "$EXPECT_MODEL_VERSION" ]] \
            || fail "verify answered with model $(json_field "['model_version']" <<<"$out"), not $EXPECT_MODEL_VERSION"
    done

    # Scores are shown to admin keys only: the bootstrap admin key the first replica wrote into the shared
    # data volume (README: `docker compose exec api cat /data/admin-api-key`), used through replica 1.
    local scoped_key=$KEY
    KEY=$(compose exec -T --index=1 api cat /data/admin-api-key | tr -d '\r\n')
    [[ -n $KEY ]] || fail "no bootstrap admin key in /data/admin-api-key"
    genuine=$(api POST "$a/verify" -F user_id=smoke_powell -F "image=@$LFW/Colin_Powell/Colin_Powell_0004.jpg")
    log "with the bootstrap admin key, via replica 1: same person $(verify_line "$genuine")"
    impostor=$(api POST "$a/verify" -F user_id=smoke_powell -F "image=@$LFW/Tony_Blair/Tony_Blair_0002.jpg")
    log "with the bootstrap admin key, via replica 1: another person $(verify_line "$impostor")"
    python3 - "$genuine" "$impostor" <<'PY' || fail "scores not sane: same person $genuine, another person $impostor"
import json, sys
g, i = (json.loads(a) for a in sys.argv[1:])
sys.exit(not (g["verified"] and not i["verified"] and g["votes"] == 3 and i["votes"] == 0
              and g["best_similarity"] > g["detection_threshold"] > i["best_similarity"]))
PY
    log "scores sane: same person above the detection threshold with 3/3 votes, another person below with 0/3"
    KEY=$scoped_key

    # /metrics over the compose network: each replica reads the other's listener by container name.
    local names=() all_metrics="" metrics i j id
    for id in $(compose ps -q api); do names+=("$("$DOCKER" inspect -f '{{.Name}}' "$id" | tr -d /)"); done
    for i in 0 1; do
        j=$((1 - i))
        metrics=$("$DOCKER" exec "${names[i]}" python -c "import urllib.request; \
print(urllib.request.urlopen('http://${names[j]}:9464/metrics', timeout=10).read().decode())")
        log "metrics of ${names[j]}, read by ${names[i]} over the compose network (http://${names[j]}:9464/metrics):"
        grep -E '^faceverify_(verify_decisions_total|model_info|http_requests_total\{[^}]*route="/(enroll|verify)")' \
            <<<"$metrics" | sed 's/^/    /' >&2 || true
        all_metrics+=$metrics$'\n'
    done
    grep -q '^faceverify_verify_decisions_total{[^}]*outcome="verified"' <<<"$all_metrics" \
        || fail "no verify decision in the replicas' metrics"
    grep -q "^faceverify_model_info{[^}]*version=\"$EXPECT_MODEL_VERSION\"" <<<"$all_metrics" \
        || fail "model_info does not name $EXPECT_MODEL_VERSION"

    log "compose down (volumes kept) + up again"
    compose down 2>&1 | sed 's/^/    /'
    started=$(date +%s)
    compose up -d --no-build --scale api=2 2>&1 | sed 's/^/    /'
    healthy=$(wait_healthy "$started")
    log "time to healthy after restart (compose up -> both api replicas healthy): ${healthy} s"
    startup_times | sed 's/^/    /' >&2
    a=$(replica_url 1)
    b=$(replica_url 2)
    log "replica 1: $a   replica 2: $b"
    out=$(api GET "$a/users/smoke_powell")
    log "after restart, GET /users/smoke_powell via replica 1: $(json_field "['images'].__len__()" <<<"$out") images"
    [[ $(json_field "['images'].__len__()" <<<"$out") == 3 ]] || fail "user lost on restart: $out"
    out=$(api POST "$b/verify" -F user_id=smoke_powell -F "image=@$LFW/Colin_Powell/Colin_Powell_0005.jpg")
    log "after restart, verify Colin_Powell_0005 via replica 2: $(verify_line "$out")"
    [[ $(json_field "['verified']" <<<"$out") == True ]] || fail "genuine photo not verified after restart"
}

clean() {
    log "removing every image, build cache, stopped container and unused volume (docker system prune -af --volumes)"
    "$DOCKER" system prune -af --volumes 2>&1 | tail -1 | sed 's/^/    /' >&2
    log "docker disk use: $(docker_disk)"
}

trap on_exit EXIT
log "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr); repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
log "start: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
ensure_tools
ensure_dockerd
log "Docker $("$DOCKER" version -f '{{.Server.Version}}') ($("$DOCKER" info -f '{{.Driver}}')), $("$COMPOSE_BIN" version --short 2>/dev/null || "$COMPOSE_BIN" --version)"
case $MODE in
    clean) clean ;;
    build) build_images ;;
    run) build_images && run_stack ;;
esac
