"""Fixtures for the fault suite: a tiny real model, an in-process server on a real socket, request
headers from one place, and a throwaway PostgreSQL cluster of the test's own.

* `api_headers()`: every request of the suite takes its headers from here: the suite's admin key
  (`FAULTS_API_KEY`), which every server of the suite is given as FACEVERIFY_ADMIN_API_KEY (set
  for the duration of each fault-suite module, inherited by live server processes).
* `tiny_model_dir` / `face_engine`: the service tests' sharp tiny SavedModel (real TF, fast).
* `InProcessServer`: the real app under the real server configuration (`service.runtime.server.make_config`,
  the guarded protocol) on a free loopback port, in a thread, sharing the loaded engine.
* `Privatepostgres`: initdb into a temp dir as the `postgres` OS user, on its own port, so tests
  can stop and freeze it (never the machine's shared server).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))  # live_server, service/service_testdata

from live_server import free_port  # noqa: E402

LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def _new_secret() -> str:
    from service.security.keys import new_secret

    return new_secret()


FAULTS_API_KEY = _new_secret()


def api_headers(**extra: str) -> dict[str, str]:
    """Headers for every request of the fault suite: the suite's admin key, plus `extra`."""
    return {"X-API-Key": FAULTS_API_KEY, **extra}


@pytest.fixture(autouse=True, scope="module")
def _faults_admin_key() -> Iterator[None]:
    """Every server a fault-suite module starts (Settings() or `faceverify serve`) bootstraps its
    admin key from FAULTS_API_KEY; restored afterwards so other suites keep their own keys."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEVERIFY_ADMIN_API_KEY", FAULTS_API_KEY)
        yield


def lfw_bytes(person: str, number: int) -> bytes:
    path = LFW / person / f"{person}_{number:04d}.jpg"
    if not path.is_file():
        pytest.fail(f"LFW data not found at {LFW} (expected ../shared/data relative to the repo)")
    return path.read_bytes()


def _service_conftest() -> Any:
    path = TESTS / "service" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_faults_service_conftest", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults-models") / "tiny"
    return Path(_service_conftest().export_sharp_tiny_model(out, "tiny-faults-1"))


@pytest.fixture(scope="session")
def face_engine(tiny_model_dir: Path) -> Any:
    from service.faces.engine import FaceEngine

    return FaceEngine(tiny_model_dir, None, 1)


class InProcessServer:
    """`create_app` served by `service.runtime.server.make_config` (our protocol and limits) in a thread."""

    def __init__(self, settings: Any, face_engine: Any):
        import uvicorn

        from service.app import create_app
        from service.runtime.server import make_config

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, face_engine=face_engine)
        config = make_config(self.app, settings, "127.0.0.1", self.port, "warning")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


# ------------------------------------------------------------------------------ private PostgreSQL


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: start, stop, freeze (SIGSTOP) and thaw (SIGCONT)."""

    def __init__(self, root: Path):
        bindir = _pg_bin()
        if bindir is None or shutil.which("runuser") is None:
            pytest.fail("PostgreSQL server binaries (initdb) or runuser not installed")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("no `postgres` OS user to run a private PostgreSQL as")
        self.bin = bindir
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "postgres")
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, argv: list[str]) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "pg.log"),
             "-w", "-t", "60", "start"]
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def _pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    pids.append(int(proc.name))
        return pids

    def freeze(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.thaw()
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError):
                self.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Under /tmp itself: pytest's tmp dirs are private to root, the postgres user cannot enter them.
    root = Path(tempfile.mkdtemp(prefix="faceverify-faults-pg-"))
    try:
        server = PrivatePostgres(root)
        server.start()
        try:
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def get(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    return client.get(path, headers=api_headers(), **kwargs)


@pytest.fixture(autouse=True, scope="module")
def _restore_logging() -> Iterator[None]:
    """`make_config` applies the service's logging config (dictConfig) to this process; undo it after
    each module so later tests (other suites' caplog) see the logging they expect."""
    import logging

    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate, logger.filters[:], logger.disabled)
    yield
    for name, (handlers, level, propagate, filters, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.filters[:] = filters
        logger.disabled = disabled
