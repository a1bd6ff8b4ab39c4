from __future__ import annotations

import pytest
from lfw_sets import LFW


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    from faceverify.pipeline import FacePipeline

    return FacePipeline()


@pytest.fixture(autouse=True)
def _needs_lfw(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lfw") and not (LFW / "images").is_dir():
        pytest.fail(f"LFW not found at {LFW} (expected ../shared/data next to the repo)")
