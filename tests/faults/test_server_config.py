"""What `faceverify serve` configures: the guarded protocol with the settings' limits, JSON logs,
keep-alive and graceful-stop bounds, and the open-files limit raised to its hard limit."""

from __future__ import annotations

import resource

from service.runtime.config import Settings
from service.runtime.server import GuardedH11Protocol, make_config, raise_fd_limit


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - not served
    raise AssertionError


def test_serve_config_carries_the_robustness_settings() -> None:
    settings = Settings(header_timeout_s=7, keep_alive_s=3, max_connections=123, graceful_timeout_s=9)
    config = make_config(_app, settings, "127.0.0.1", 8123, "warning")
    assert issubclass(config.http, GuardedH11Protocol)
    assert config.http.header_timeout_s == 7 and config.http.max_connections == 123
    assert config.timeout_keep_alive == 3 and config.timeout_graceful_shutdown == 9
    assert config.log_config["formatters"]["default"]["()"].__name__ == "JsonFormatter"


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert raise_fd_limit() == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
