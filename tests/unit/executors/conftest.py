"""Fixtures: a sink that records what executors write, and a request builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from executor_helpers import RecordingSink

from taskplan.executors import AttemptContext, ExecRequest
from taskplan.model import TaskSpec


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


RequestFactory = Callable[..., ExecRequest]


@pytest.fixture
def make_request(plain_request: RequestFactory) -> RequestFactory:
    return plain_request


@pytest.fixture
def plain_request(tmp_path: Path) -> RequestFactory:
    """The request builder (a module may override `make_request` and still reach this one)."""

    def make(
        command: str | tuple[str, ...],
        *,
        kind: str = "shell",
        task: str = "t",
        timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
        item: Any = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        base_dir: str | Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        in_process: bool = False,
    ) -> ExecRequest:
        context = AttemptContext(
            run_id=42, task=task, attempt=2, params=params or {}, item=item, results={"up": 1}
        )
        spec = TaskSpec(name=task, kind=kind, command=command, env=env or {}, cwd=cwd,
                        in_process=in_process)
        return ExecRequest(
            context=context,
            spec=spec,
            command=command,
            base_dir=str(base_dir if base_dir is not None else tmp_path),
            timeout=timeout,
            extra_env=extra_env or {},
        )

    return make
