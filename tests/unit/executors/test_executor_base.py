"""Cancellation, the registry, the gated sink."""

from __future__ import annotations

import threading

import pytest
from executor_helpers import RecordingSink

from taskplan.errors import TaskplanError
from taskplan.executors import (
    Cancellation,
    ExecRequest,
    ExecResult,
    LogSink,
    UnknownKindError,
    executor_for,
    register_executor,
)
from taskplan.executors.base import GatedSink


def test_callbacks_run_once_on_cancel_and_late_ones_run_at_once() -> None:
    cancel = Cancellation()
    calls: list[str] = []
    cancel.on_cancel(lambda: calls.append("early"))
    assert not cancel.is_set() and calls == []
    cancel.cancel()
    cancel.cancel()
    assert cancel.is_set() and calls == ["early"]
    unhook = cancel.on_cancel(lambda: calls.append("late"))
    assert calls == ["early", "late"]
    unhook()  # harmless after the fact


def test_unhooked_callback_never_runs() -> None:
    cancel = Cancellation()
    calls: list[str] = []
    unhook = cancel.on_cancel(lambda: calls.append("x"))
    unhook()
    cancel.cancel()
    assert calls == []


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    cancel = Cancellation()
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    cancel.on_cancel(broken)
    cancel.on_cancel(lambda: calls.append("after"))
    cancel.cancel()
    assert calls == ["after"]
    assert "cancel callback failed" in caplog.text


def test_wait_wakes_on_cancel_from_another_thread() -> None:
    cancel = Cancellation()
    assert not cancel.wait(0.01)
    threading.Timer(0.05, cancel.cancel).start()
    assert cancel.wait(5)


def test_gated_sink_drops_writes_once_closed() -> None:
    target = RecordingSink()
    gate = GatedSink(target)
    gate.write("kept")
    gate.close()
    gate.write("dropped")
    assert target.text == "kept"


def test_registry_is_open_and_unknown_kinds_are_errors() -> None:
    class Echo:
        def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
            return ExecResult(ok=True, result=request.command)

    echo = Echo()
    register_executor("tp_test_echo", echo)
    assert executor_for("tp_test_echo") is echo
    with pytest.raises(UnknownKindError, match="no executor for task kind 'nope'") as info:
        executor_for("nope")
    assert isinstance(info.value, TaskplanError) and isinstance(info.value, LookupError)
