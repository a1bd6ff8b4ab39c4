"""Checks of docker/Dockerfile, docker-compose.yml and .dockerignore that need no Docker engine.

The real build and run is `bash docker/smoke.sh` (by hand or from benchmarks: minutes, root, a Docker
engine; results in benchmarks/results/docker_smoke.txt). These tests, in the default run, validate
what can be validated statically, with the project's real code where possible: the compose file
parses and references only files, services and volumes that exist; every FACEVERIFY_* variable is a
field of the real settings class and the values it gets are accepted by it; the commands in the
image and compose file are accepted by the real `faceverify` argument parser and are the same
commands the Makefile (what CI runs) and the README use; the image runs as non-root and its
HEALTHCHECK really tells 200 from 503 on /ready; ports are published on 127.0.0.1 only by default.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
MAKEFILE = REPO / "Makefile"
README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"


# --------------------------------------------------------------------------------------- parsing


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Split a Dockerfile into build args (before the first FROM) and stages of instructions."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


def exec_form(args: str) -> list[str]:
    """CMD/RUN arguments as argv: JSON (exec) form, or the shell form split like a shell would."""
    if args.startswith("["):
        return list(json.loads(args))
    return shlex.split(args)


def env_pairs(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args))


_SUBST = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose_value(value: str) -> str:
    """Interpolate `${VAR:-default}` as docker compose does with VAR unset (the documented defaults)."""
    return _SUBST.sub(lambda m: m.group(2) or "", value)


def interpolate(node: object) -> object:
    if isinstance(node, str):
        return compose_value(node)
    if isinstance(node, list):
        return [interpolate(v) for v in node]
    if isinstance(node, dict):
        return {k: interpolate(v) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return interpolate(data)  # type: ignore[return-value]


def settings_env_names() -> set[str]:
    from service.runtime.config import Settings

    return {f"FACEVERIFY_{name.upper()}" for name in Settings.model_fields}


def cli_parses(argv: list[str]) -> bool:
    """Does the real `faceverify` parser accept this command line (without running it)?"""
    from service.cli.main import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def make_recipe_lines() -> list[str]:
    """Makefile recipe lines with the Makefile's variables substituted by their defaults."""
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^(\w+)\s*\??:?=\s*(.+?)\s*$", text, flags=re.M))
    lines = [line.strip() for line in text.splitlines() if line.startswith("\t")]

    def expand(line: str) -> str:
        for _ in range(5):
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        return line

    return [expand(line) for line in lines]


def faceverify_command(line: str) -> list[str] | None:
    """argv after the `faceverify` executable, whatever path it is called by; None if not one."""
    words = shlex.split(line)
    for i, word in enumerate(words):
        if Path(word).name == "faceverify":
            return words[i + 1 :]
    return None


# --------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_slim_python_311(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    assert len(stages) >= 2
    assert all(stage.base == "python:3.11-slim" for stage in stages)
    runtime = stages[-1]
    copied_from = {i.args.split()[0] for i in runtime.all("COPY") if i.args.startswith("--from=")}
    assert copied_from == {f"--from={stages[0].name}"}  # the runtime stage takes only build outputs
    assert not runtime.all("RUN") or all("pip install" not in i.args for i in runtime.all("RUN"))


def test_dockerfile_runs_as_non_root_with_a_real_healthcheck(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    keywords = [i.keyword for i in runtime.instructions]
    users = runtime.all("USER")
    assert users and users[-1].args not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    healthcheck = runtime.all("HEALTHCHECK")
    assert len(healthcheck) == 1
    _, _, command = healthcheck[0].args.partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"] and "/ready" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")
    text = DOCKERFILE.read_text()
    assert "curl" not in re.sub(r"#.*", "", text) and "wget" not in text


def test_dockerfile_copies_only_existing_paths_not_ignored(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    _, stages = dockerfile
    ignored = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    sources = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = copy.args.split()
            if words[0].startswith("--from="):
                continue
            sources.extend(words[:-1])
    assert "pyproject.toml" in sources
    for source in sources:
        assert (REPO / source).exists(), (
            f"COPY {source}: not in the repository (README.md is also pyproject.toml's readme)"
        )
        hits = [p for p in ignored if fnmatch.fnmatch(source, p.rstrip("/"))]
        assert not hits, f"COPY {source} is excluded by .dockerignore {hits}"
    for heavy in (".venv", ".git", "models", "data"):
        assert heavy in ignored, f"{heavy} would bloat the build context"


def test_dockerfile_commands_are_the_makefile_ones(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    """The image installs, exports and serves with the commands `make` (CI, README) uses."""
    _, stages = dockerfile
    recipes = make_recipe_lines()
    runs = [i.args for stage in stages for i in stage.all("RUN")]
    # Install: the project from its own pyproject.toml (the Makefile adds -e and the test extra).
    make_install = next(shlex.split(r) for r in recipes if " pip install " in r and "-e" in r)
    project_target = make_install[-1].split("[")[0].strip('"')
    assert project_target == "."
    assert any(shlex.split(r.split("&&")[0]) == ["pip", "install", project_target] for r in runs)
    # Release model: the same subcommand and flags as `make release-model`, into the image's model dir.
    make_export = next(c for r in recipes if (c := faceverify_command(r)) and c[0] == "export")
    steps = [step for r in runs for step in r.split("&&")]
    docker_export = next(c for s in steps if (c := faceverify_command(s)) and c[0] == "export")
    out = docker_export.index("--out")
    assert docker_export[:out] == make_export[: make_export.index("--out")]
    model_dir = docker_export[out + 1]
    env = {k: v for stage in stages for i in stage.all("ENV") for k, v in env_pairs(i.args).items()}
    assert env["FACEVERIFY_MODEL_DIR"] == model_dir
    assert cli_parses(docker_export)
    # Serve: `make serve` runs `faceverify serve`; the image adds only the bind address and port.
    make_serve = next(c for r in recipes if (c := faceverify_command(r)) and c[0] == "serve")
    cmd = exec_form(stages[-1].all("CMD")[-1].args)
    assert cmd[0] == "faceverify" and cmd[1 : 1 + len(make_serve)] == make_serve
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cli_parses(cmd[1:])


def test_ci_runs_the_makefile_that_installs_the_project() -> None:
    ci = CI_RUN.read_text()
    assert re.search(r"^\s*make test\b", ci, flags=re.M)
    assert re.search(r"^test:.*\bsetup\b", MAKEFILE.read_text(), flags=re.M)


def test_dockerfile_env_vars_are_settings_fields(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    names = {k for stage in stages for i in stage.all("ENV") for k in env_pairs(i.args)}
    faceverify = {n for n in names if n.startswith("FACEVERIFY_")}
    assert faceverify >= {"FACEVERIFY_MODEL_DIR", "FACEVERIFY_DATA_DIR"}
    assert faceverify <= settings_env_names()


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        code = type(self).status if self.path == "/ready" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def ready_server() -> Iterator[tuple[int, type[_Ready]]]:
    handler = type("Ready", (_Ready,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), handler
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_command_tells_ready_from_not_ready(
    dockerfile: tuple[dict[str, str], list[Stage]], ready_server: tuple[int, type[_Ready]]
) -> None:
    _, stages = dockerfile
    _, _, command = stages[-1].all("HEALTHCHECK")[0].args.partition("CMD ")
    code = exec_form(command.strip())[2]
    serve = exec_form(stages[-1].all("CMD")[-1].args)
    assert f"127.0.0.1:{serve[serve.index('--port') + 1]}/ready" in code  # probes the port it serves on
    port, handler = ready_server
    probe = code.replace(f"127.0.0.1:{serve[serve.index('--port') + 1]}", f"127.0.0.1:{port}")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode == 0
    handler.status = 503
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode != 0


# ------------------------------------------------------------------------------------------ compose


def test_compose_services_and_their_references_exist(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api"}
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
        build = service.get("build")
        if build:
            assert (REPO / build["context"]).is_dir()
            assert (REPO / build["context"] / build["dockerfile"]) == DOCKERFILE
        for dependency in service.get("depends_on") or {}:
            assert dependency in services
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            assert source in declared_volumes, f"{name}: volume {source} is not a declared named volume"
    assert declared_volumes == {"pgdata", "images"}


def test_compose_leaves_no_anonymous_volume(
    compose: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """Every VOLUME of the image has a mount in each service that runs it: else each container gets a fresh
    anonymous volume, and `docker compose down` (without -v) + `up` leaves the old ones behind (found by
    docker/smoke.sh: the one-shot migrate service, which needs no /data, leaked one per `up`)."""
    _, stages = dockerfile
    image_volumes = {path for i in stages[-1].all("VOLUME") for path in exec_form(i.args)}
    assert image_volumes == {"/data"}
    for name, service in compose["services"].items():
        if not service.get("build"):
            continue
        mounted = {mount.split(":")[1] for mount in service.get("volumes") or []}
        mounted |= {mount.split(":")[0] for mount in service.get("tmpfs") or []}
        assert image_volumes <= mounted, f"{name}: nothing mounted at {sorted(image_volumes - mounted)}"


def test_compose_postgres_is_healthchecked_and_persistent(compose: dict) -> None:
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]


def test_compose_orders_migration_before_serving(compose: dict) -> None:
    services = compose["services"]
    migrate, api = services["migrate"], services["api"]
    assert migrate["command"] == ["faceverify", "db", "upgrade"]
    assert cli_parses(migrate["command"][1:])
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate.get("restart") == "no"
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["environment"]["FACEVERIFY_MIGRATE_ON_STARTUP"] == "false"  # replicas must not race


def test_compose_api_is_scalable_and_serves_what_the_image_serves(
    compose: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    api = compose["services"]["api"]
    _, stages = dockerfile
    assert api["command"] == exec_form(stages[-1].all("CMD")[-1].args)
    container_port = api["command"][api["command"].index("--port") + 1]
    (mapping,) = api["ports"]
    bind, host, target = mapping.split(":")
    assert target == container_port
    assert bind == "127.0.0.1", "published on this machine only unless FACEVERIFY_BIND says otherwise"
    low, _, high = host.partition("-")
    assert high and int(high) > int(low), "a fixed host port clashes as soon as there are two replicas"
    assert f"images:{api['environment']['FACEVERIFY_DATA_DIR']}" in api["volumes"]


def test_compose_environment_is_valid_settings(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed the compose environment to the real settings class, as the container would."""
    from service.runtime.config import Settings

    db = compose["services"]["db"]["environment"]
    known = settings_env_names()
    for name in ("migrate", "api"):
        env = compose["services"][name]["environment"]
        assert {k for k in env if k.startswith("FACEVERIFY_")} <= known
        for key in known:
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        expected = f"postgresql+psycopg://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@db:5432/{db['POSTGRES_DB']}"
        assert settings.sqlalchemy_url == expected
        assert settings.migrate_on_startup is False
        assert str(settings.model_dir) == "/models/release"


# ------------------------------------------------------------------------------------------- README


DOCS = sorted((REPO / "docs").glob("*.md"))


def readme_commands() -> list[str]:
    """Shell lines of README.md and every docs/*.md page (the README links to them for the details)."""
    assert DOCS, "docs/*.md pages are missing"
    text = "\n".join(path.read_text() for path in [README, *DOCS])
    # Every fenced block (any language tag, so a ```python block cannot shift the pairing), shell ones kept.
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    shell = [body for lang, body in blocks if lang in ("", "bash", "sh", "console", "shell")]
    return [line.strip().lstrip("$ ") for block in shell for line in block.splitlines() if line.strip()]


def test_readme_shows_compose_and_client_commands_that_exist(compose: dict) -> None:
    lines = readme_commands()
    compose_lines = [line for line in lines if line.startswith("docker compose")]
    assert any(" up" in line for line in compose_lines), "README or docs must show `docker compose up`"
    for line in compose_lines:
        for service in re.findall(r"--scale (\w+)=", line):
            assert service in compose["services"]
    cli = [c for line in lines if (c := faceverify_command(line.split("#")[0]))]
    assert any(c[:1] == ["webcam"] for c in cli), "README or docs must show the webcam client"
    for argv in cli:
        assert cli_parses(argv), f"README/docs show `faceverify {' '.join(argv)}`, which the CLI rejects"


def test_compose_metrics_stay_on_the_compose_network(
    compose: dict, dockerfile: tuple[dict[str, str], list[Stage]]
) -> None:
    """The metrics listener binds the container network and is neither published nor EXPOSEd."""
    from service.runtime.config import Settings

    api = compose["services"]["api"]
    port = int(api["environment"]["FACEVERIFY_METRICS_PORT"])
    assert port and api["environment"]["FACEVERIFY_METRICS_HOST"] == "0.0.0.0"
    assert all(not str(m).endswith(f":{port}") for m in api["ports"])
    _, stages = dockerfile
    runtime = stages[-1]
    env = {k: v for i in runtime.all("ENV") for k, v in env_pairs(i.args).items()}
    assert int(env["FACEVERIFY_METRICS_PORT"]) == port
    exposed = {p for i in runtime.all("EXPOSE") for p in i.args.split()}
    assert str(port) not in exposed
    assert Settings().metrics_port == 0, "outside the image, no listener unless asked for"


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", value)
    assert match, value
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def test_compose_stop_grace_period_fits_the_graceful_stop(compose: dict) -> None:
    """docker kills after stop_grace_period: it must exceed the server's in-flight drain time."""
    from service.runtime.config import Settings

    api = compose["services"]["api"]
    drain = float(getattr(Settings(), "graceful_timeout_s", 20))  # the robust engineer's setting, 20 s
    assert _seconds(api["stop_grace_period"]) >= drain + 5


def test_smoke_script_parses_and_builds_the_production_files_unchanged() -> None:
    """docker/smoke.sh is run by hand (root, minutes); here: valid bash, and it feeds the stand-in base
    through PYTHON_IMAGE and the compose file through a copy, never editing either."""
    smoke = REPO / "docker" / "smoke.sh"
    assert subprocess.run(["bash", "-n", str(smoke)], capture_output=True, timeout=30).returncode == 0
    text = smoke.read_text()
    assert '--build-arg "PYTHON_IMAGE=' in text and '-f "$REPO/docker/Dockerfile"' in text
    assert "sed '/^name:/d' \"$REPO/docker-compose.yml\" >\"$WORK/" in text
    assert not re.search(r"(sed -i|>>?)\s*\"?\$REPO/(docker-compose\.yml|docker/Dockerfile)", text)
