"""The python executor with real imports, real worker processes and real threads.

Tests of what a task sees run both ways: in a worker process (the default) and in the agent's
own thread (`in_process: true`).
"""

from __future__ import annotations

import itertools
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from executor_helpers import RecordingSink, gone_soon, process_alive

from taskplan.executors import Cancellation, ExecRequest, ExecResult, PythonExecutor, executor_for

ModuleWriter = Callable[[str], str]
RequestFactory = Callable[..., ExecRequest]
_serial = itertools.count()


@pytest.fixture
def module(tmp_path: Path) -> ModuleWriter:
    """Write a module into the base dir under a fresh name (sys.modules outlives each test)."""

    def write(source: str) -> str:
        name = f"tp_task_{next(_serial)}_{id(tmp_path):x}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def python() -> Iterator[PythonExecutor]:
    executor = PythonExecutor()
    yield executor
    executor.close()


@pytest.fixture(params=[False, True], ids=["worker", "in_process"])
def make_request(request: pytest.FixtureRequest, plain_request: RequestFactory
                 ) -> RequestFactory:
    """Every test below that takes `make_request` runs in a worker and in process."""
    in_process = request.param

    def make(*args: Any, **kw: Any) -> ExecRequest:
        return plain_request(*args, in_process=in_process, **kw)

    return make


@pytest.fixture
def in_thread(plain_request: RequestFactory) -> RequestFactory:
    """Requests of `in_process: true` tasks only."""

    def make(*args: Any, **kw: Any) -> ExecRequest:
        return plain_request(*args, in_process=True, **kw)

    return make


def test_registered_for_python_kind() -> None:
    assert isinstance(executor_for("python"), PythonExecutor)


def test_called_with_the_context_and_returns_its_result(python, make_request, module, sink):
    name = module("""
        def build(ctx):
            return {"run": ctx.run_id, "task": ctx.task, "attempt": ctx.attempt,
                    "day": ctx.params["day"], "item": ctx.item, "up": ctx.results["up"],
                    "pair": (1, 2), 3: "int key"}
    """)
    request = make_request(
        f"{name}:build", kind="python", task="report", params={"day": "d1"}, item={"v": 1}
    )
    result = python.execute(request, sink, Cancellation())
    assert result == ExecResult(
        ok=True,
        result={"run": 42, "task": "report", "attempt": 2, "day": "d1", "item": {"v": 1},
                "up": 1, "pair": [1, 2], "3": "int key"},
    )


def test_an_async_function_is_awaited(python, make_request, module, sink):
    name = module("""
        import asyncio

        async def fetch(ctx):
            await asyncio.sleep(0.01)
            return {"task": ctx.task, "day": ctx.params["day"]}

        async def broken(ctx):
            await asyncio.sleep(0)
            raise ValueError("no rows")
    """)
    request = make_request(f"{name}:fetch", kind="python", task="pull", params={"day": "d1"})
    assert python.execute(request, sink, Cancellation()) == ExecResult(
        ok=True, result={"task": "pull", "day": "d1"})
    failed = python.execute(make_request(f"{name}:broken", kind="python"), sink, Cancellation())
    assert failed == ExecResult(ok=False, error="ValueError: no rows")


def test_dotted_attribute_and_package_module(python, make_request, tmp_path, sink):
    package = tmp_path / f"tp_pkg_{next(_serial)}"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "jobs.py").write_text(
        "class Tasks:\n    @staticmethod\n    def go(ctx):\n        return 'went'\n"
    )
    request = make_request(f"{package.name}.sub.jobs:Tasks.go", kind="python")
    assert python.execute(request, sink, Cancellation()) == ExecResult(ok=True, result="went")


def test_exception_gives_one_line_error_and_traceback_in_log(python, make_request, module, sink):
    name = module("""
        def helper():
            raise ValueError("bad\\n  thing")

        def build(ctx):
            helper()
    """)
    result = python.execute(make_request(f"{name}:build", kind="python"), sink, Cancellation())
    assert result == ExecResult(ok=False, error="ValueError: bad thing")
    log = sink.text
    assert log.startswith("Traceback (most recent call last):")
    assert "in build" in log and "in helper" in log and "ValueError: bad" in log
    assert "executors/python.py" not in log


def test_non_json_result_is_a_failure(python, make_request, module, sink):
    name = module("""
        def obj(ctx):
            return {"x": object()}

        def nan(ctx):
            return float("nan")

        def deep(ctx):
            value = []
            for _ in range(5000):
                value = [value]
            return value
    """)
    # A result nested deeper than the encoder recurses killed the worker ("the python worker
    # exited with code 1"), and in process raised RecursionError on the agent's slot thread.
    for function in ("obj", "nan", "deep"):
        result = python.execute(
            make_request(f"{name}:{function}", kind="python"), sink, Cancellation()
        )
        assert not result.ok
        assert (result.error or "").startswith("result is not JSON-serialisable")


def test_sys_exit(python, make_request, module, sink):
    name = module("""
        import sys

        def clean(ctx):
            sys.exit(0)

        def dirty(ctx):
            sys.exit(4)
    """)
    clean = python.execute(make_request(f"{name}:clean", kind="python"), sink, Cancellation())
    assert clean == ExecResult(ok=True, result=None)
    dirty = python.execute(make_request(f"{name}:dirty", kind="python"), sink, Cancellation())
    assert dirty == ExecResult(ok=False, error="SystemExit: 4")


def test_an_item_holding_nan_reaches_the_function(python, make_request, module, sink):
    # A sql foreach's row with a NaN float failed its python item before it ran ("ValueError:
    # Out of range float values are not JSON compliant", an empty log).
    name = module("""
        import math

        def check(ctx):
            return [math.isnan(ctx.item["x"]), math.isinf(ctx.params["p"])]
    """)
    request = make_request(f"{name}:check", kind="python", item={"x": float("nan")},
                           params={"p": float("inf")})
    assert python.execute(request, sink, Cancellation()) == ExecResult(ok=True,
                                                                       result=[True, True])


def test_a_task_changing_ctx_params_changes_them_for_itself_only(python, make_request, module,
                                                               sink):
    # In process, ctx.params was the run's own dict, read by every later task of the run
    # (ctx.params, templates, TASKPLAN_PARAM_*): a function's ctx.params["day"] = ... leaked.
    name = module("""
        def change(ctx):
            ctx.params["day"] = "changed"
            ctx.params["days"].append("changed")
            return ctx.params["day"]
    """)
    run_params = {"day": "2026-01-01", "days": ["2026-01-01"]}
    request = make_request(f"{name}:change", kind="python", params=run_params)
    assert python.execute(request, sink, Cancellation()) == ExecResult(ok=True, result="changed")
    assert run_params == {"day": "2026-01-01", "days": ["2026-01-01"]}


def test_a_worker_task_starts_in_its_agents_folder_environment_and_umask(
        python, plain_request, module, sink, tmp_path, monkeypatch):
    # A task's os.chdir, os.environ and os.umask stayed in its worker for every later task,
    # of any job, that the worker ran.
    monkeypatch.setenv("TP_KEPT", "kept")  # before the worker starts: it inherits it
    name = module("""
        import os

        def move(ctx):
            os.chdir(ctx.params["to"])
            os.environ["TP_LEFT_BEHIND"] = "yes"
            os.environ.pop("TP_KEPT", None)
            os.umask(0o077)

        def look(ctx):
            mask = os.umask(0o022)
            os.umask(mask)
            return [os.getcwd(), os.environ.get("TP_LEFT_BEHIND"), os.environ.get("TP_KEPT"),
                    mask]
    """)
    before = python.execute(plain_request(f"{name}:look", kind="python"), sink, Cancellation())
    assert before.ok
    moved = python.execute(plain_request(f"{name}:move", kind="python",
                                         params={"to": str(tmp_path)}), sink, Cancellation())
    assert moved.ok
    after = python.execute(plain_request(f"{name}:look", kind="python"), sink, Cancellation())
    assert after == before and before.result[2] == "kept"
    assert len(python._idle) == 1  # one worker ran all three


def test_threads_a_task_leaves_running_do_not_print_into_the_next_attempt(
        python, plain_request, module):
    # A thread the task started and left running went on in the pooled worker, and what it
    # printed landed in the log of the next attempt (of any job) that the worker ran.
    name = module("""
        import threading
        import time

        def leave(ctx):
            def chatter():
                for _ in range(200):
                    print("left behind", flush=True)
                    time.sleep(0.01)
            threading.Thread(target=chatter, name="chatter").start()
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()

        def wait(ctx):
            time.sleep(0.3)
            print("mine")
    """)
    first, second = RecordingSink(), RecordingSink()
    assert python.execute(plain_request(f"{name}:leave", kind="python"), first,
                          Cancellation()).ok
    assert first.text.endswith("taskplan: the task left threads running (chatter); they are"
                               " stopped with its worker\n")
    assert python.execute(plain_request(f"{name}:wait", kind="python"), second,
                          Cancellation()).ok
    assert second.text == "mine\n"


def test_a_task_raising_keyboard_interrupt_fails_with_it(python, make_request, module, sink):
    # A worker said "the python worker was killed by SIGINT" (no one sent one), and in process
    # the KeyboardInterrupt went up the agent's slot thread.
    name = module("""
        def stop(ctx):
            raise KeyboardInterrupt("enough")
    """)
    result = python.execute(make_request(f"{name}:stop", kind="python"), sink, Cancellation())
    assert result == ExecResult(ok=False, error="KeyboardInterrupt: enough")
    assert "raise KeyboardInterrupt" in sink.text


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("no_colon", "python task needs 'module:function', got 'no_colon'"),
        (":fn", "python task needs 'module:function', got ':fn'"),
        ("tp_absent_module_xyz:fn", "cannot import tp_absent_module_xyz: ModuleNotFoundError"),
    ],
)
def test_bad_targets(python, make_request, sink, target, error):
    result = python.execute(make_request(target, kind="python"), sink, Cancellation())
    assert not result.ok
    assert (result.error or "").startswith(error)


def test_missing_attribute_not_callable_and_broken_module(python, make_request, module, sink):
    name = module("VALUE = 3\n")
    missing = python.execute(make_request(f"{name}:nope", kind="python"), sink, Cancellation())
    assert missing == ExecResult(ok=False, error=f"{name} has no attribute nope")
    value = python.execute(make_request(f"{name}:VALUE", kind="python"), sink, Cancellation())
    assert value == ExecResult(ok=False, error=f"{name}:VALUE is not callable")
    broken = module("raise RuntimeError('at import')\n")
    result = python.execute(make_request(f"{broken}:fn", kind="python"), sink, Cancellation())
    assert result.error == f"cannot import {broken}: RuntimeError: at import"
    assert "at import" in sink.text


def _twin_folders(tmp_path: Path) -> tuple[str, Path, Path]:
    name = f"tp_twin_{next(_serial)}"
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, answer in ((first, "a"), (second, "b")):
        folder.mkdir()
        (folder / f"{name}.py").write_text(f"def fn(ctx):\n    return {answer!r}\n")
    return name, first, second


def test_same_module_name_in_two_job_folders_in_process_is_refused(python, in_thread, tmp_path,
                                                                     sink):
    name, first, second = _twin_folders(tmp_path)
    ok = python.execute(
        in_thread(f"{name}:fn", kind="python", base_dir=first), sink, Cancellation()
    )
    assert ok == ExecResult(ok=True, result="a")
    clash = python.execute(
        in_thread(f"{name}:fn", kind="python", base_dir=second), sink, Cancellation()
    )
    assert not clash.ok and "already loaded from" in (clash.error or "")


def test_same_module_name_in_two_job_folders_runs_each_folders_own(python, plain_request,
                                                                   tmp_path, sink):
    # A `tasks.py` in two job folders: the job that ran second on an agent failed ("module
    # 'tasks' is already loaded from .../a/tasks.py"), depending on what its worker ran before.
    name, first, second = _twin_folders(tmp_path)
    for folder, answer in ((first, "a"), (second, "b"), (first, "a"), (second, "b")):
        result = python.execute(
            plain_request(f"{name}:fn", kind="python", base_dir=folder), sink, Cancellation()
        )
        assert result == ExecResult(ok=True, result=answer)
    assert sink.text == ""


def _twin_helpers(tmp_path: Path) -> tuple[str, str, Path, Path]:
    """Folders a and b, each with its own task module importing a `helpers` of its own."""
    serial = next(_serial)
    helpers, first, second = f"tp_helpers_{serial}", tmp_path / "a", tmp_path / "b"
    for folder, answer in ((first, "a"), (second, "b")):
        folder.mkdir()
        (folder / f"{helpers}.py").write_text(f"ANSWER = {answer!r}\n")
        (folder / f"tp_uses_{answer}_{serial}.py").write_text(
            f"import {helpers}\n\ndef fn(ctx):\n    return {helpers}.ANSWER\n")
    return f"tp_uses_a_{serial}:fn", f"tp_uses_b_{serial}:fn", first, second


def test_a_helper_module_of_the_same_name_in_two_job_folders(python, plain_request, in_thread,
                                                             tmp_path, sink):
    # Task modules of different names each importing their folder's `helpers.py`: the second
    # folder's task silently ran the first folder's helpers.
    target_a, target_b, first, second = _twin_helpers(tmp_path)
    for target, folder, answer in ((target_a, first, "a"), (target_b, second, "b"),
                                   (target_a, first, "a")):
        result = python.execute(
            plain_request(target, kind="python", base_dir=folder), sink, Cancellation())
        assert result == ExecResult(ok=True, result=answer)
    # In process there is one interpreter: refused, not run with the other folder's helpers.
    (tmp_path / "in_process").mkdir()
    target_a, target_b, first, second = _twin_helpers(tmp_path / "in_process")
    assert python.execute(in_thread(target_a, kind="python", base_dir=first), sink,
                          Cancellation()) == ExecResult(ok=True, result="a")
    clash = python.execute(in_thread(target_b, kind="python", base_dir=second), sink,
                           Cancellation())
    assert not clash.ok and "already loaded from" in (clash.error or ""), clash


def test_print_reaches_the_right_log_from_eight_threads(python, make_request, module, capsys):
    name = module("""
        import sys, time

        def chatter(ctx):
            for i in range(40):
                print(f"{ctx.task} out {i}")
                sys.stderr.write(f"{ctx.task} err {i}\\n")
                time.sleep(0.001)
            return ctx.task
    """)
    sinks = [RecordingSink() for _ in range(8)]
    results: dict[int, ExecResult] = {}
    barrier = threading.Barrier(8)

    def slot(n: int) -> None:
        # Half inline (no timeout), half on the executor's own thread (timeout).
        request = make_request(
            f"{name}:chatter", kind="python", task=f"task{n}", timeout=None if n % 2 else 30
        )
        barrier.wait()
        results[n] = python.execute(request, sinks[n], Cancellation())

    threads = [threading.Thread(target=slot, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    print("from the test thread")
    for thread in threads:
        thread.join(30)
    for n, task_sink in enumerate(sinks):
        assert results[n] == ExecResult(ok=True, result=f"task{n}")
        expected = {f"task{n} out {i}" for i in range(40)} | {f"task{n} err {i}" for i in range(40)}
        assert set(task_sink.text.splitlines()) == expected
    assert capsys.readouterr().out == "from the test thread\n"


def test_in_process_timeout_abandons_the_thread_and_drops_its_output(python, in_thread, module,
                                                                   sink):
    name = module("""
        import time

        finished = []

        def slow(ctx):
            print("before")
            time.sleep(0.5)
            print("late")
            finished.append(True)
            return "ignored"
    """)
    result = python.execute(
        in_thread(f"{name}:slow", kind="python", timeout=0.1), sink, Cancellation()
    )
    assert sys.modules[name].finished == []  # returned at the timeout, not at the end
    assert result == ExecResult(ok=False, error="timed out after 0.1s", timed_out=True)
    time.sleep(0.6)
    assert sink.text == "before\n"


def test_in_process_cancel_with_timeout_returns_without_waiting(python, in_thread, module, sink):
    name = module("""
        import threading
        release = threading.Event()

        finished = []

        def blocked(ctx):
            release.wait(60)
            finished.append(True)
    """)
    cancel = Cancellation()
    threading.Timer(0.1, cancel.cancel).start()
    try:
        result = python.execute(
            in_thread(f"{name}:blocked", kind="python", timeout=30), sink, cancel
        )
        assert sys.modules[name].finished == []  # returned on the cancel, not at the end
    finally:
        sys.modules[name].release.set()
    assert result.cancelled and not result.ok and result.error == "cancelled"
    assert cancel._callbacks == {}


def test_in_process_cancel_without_timeout_runs_to_the_end_then_reports_cancelled(
    python, in_thread, module, sink
):
    name = module("""
        import time

        def slow(ctx):
            time.sleep(0.3)
            print("finished")
            return 1
    """)
    cancel = Cancellation()
    threading.Timer(0.05, cancel.cancel).start()
    result = python.execute(in_thread(f"{name}:slow", kind="python"), sink, cancel)
    assert result.cancelled
    assert sink.text == "finished\n"


def test_not_called_when_already_cancelled(python, make_request, module, sink):
    name = module("""
        def fn(ctx):
            print("called")
    """)
    cancel = Cancellation()
    cancel.cancel()
    assert python.execute(make_request(f"{name}:fn", kind="python"), sink, cancel).cancelled
    assert sink.text == ""


def test_in_process_tasks_run_on_the_calling_thread(python, in_thread, module, sink):
    # in_process: true calls the function on the slot's own thread, in the agent's process:
    # no worker process, no thread of its own (its cost per task is a benchmark row's, not a
    # test's).
    name = module("""
        import os, threading

        seen = []

        def where(ctx):
            seen.append((os.getpid(), threading.get_ident()))
    """)
    request = in_thread(f"{name}:where", kind="python")
    cancel = Cancellation()
    for _ in range(50):
        assert python.execute(request, sink, cancel).ok
    seen = sys.modules[name].seen
    assert seen == [(os.getpid(), threading.get_ident())] * 50


# -- in a worker process (the default) --------------------------------------------------------
_BLOCKER = """
    import os, subprocess, sys, time

    def blocked(ctx):
        child = subprocess.Popen(["sleep", "60"])
        with open(ctx.params["pids"] + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.replace(ctx.params["pids"] + ".tmp", ctx.params["pids"])
        print("started", flush=True)
        while True:  # busy in Python code: no signal or thread trick stops this but a kill
            time.sleep(0.01)

    def pid(ctx):
        return os.getpid()
"""


def _wait_pids(path: Path) -> list[int]:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, "the function never started"
        time.sleep(0.01)
    return [int(p) for p in path.read_text().split()]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_worker_task_is_killed_with_its_children(python, plain_request, module, sink, tmp_path,
                                                   how):
    name = module(_BLOCKER)
    pids = tmp_path / "pids"
    cancel = Cancellation()
    request = plain_request(f"{name}:blocked", kind="python", params={"pids": str(pids)},
                            timeout=None if how == "cancel" else 1.0)
    if how == "cancel":
        watcher = threading.Thread(target=lambda: (_wait_pids(pids), cancel.cancel()))
        watcher.start()
    result = python.execute(request, sink, cancel)
    worker_pid, child_pid = _wait_pids(pids)
    if how == "cancel":
        watcher.join()
        assert result == ExecResult(ok=False, error="cancelled", cancelled=True)
    else:
        assert result == ExecResult(ok=False, error="timed out after 1s", timed_out=True)
    assert sink.text == "started\n"
    assert gone_soon([worker_pid, child_pid])
    assert cancel._callbacks == {}
    # the next attempt gets a fresh worker
    fresh = python.execute(plain_request(f"{name}:pid", kind="python"), sink, Cancellation())
    assert fresh.ok and fresh.result != worker_pid and process_alive(fresh.result)


def test_workers_are_reused_and_a_dead_one_is_reported(python, plain_request, module, sink):
    name = module("""
        import os

        def pid(ctx):
            return os.getpid()

        def die(ctx):
            print("going")
            os._exit(3)
    """)
    pid = plain_request(f"{name}:pid", kind="python")
    first = python.execute(pid, sink, Cancellation())
    assert first.ok and first.result != os.getpid()
    assert python.execute(pid, sink, Cancellation()) == first  # a warm worker, imports kept
    died = python.execute(plain_request(f"{name}:die", kind="python"), sink, Cancellation())
    assert died == ExecResult(ok=False, error="the python worker exited with code 3")
    assert sink.text == "going\n"
    after = python.execute(pid, sink, Cancellation())
    assert after.ok and after.result not in (first.result, None)


def test_a_worker_task_logs_all_it_writes_to_its_fds_in_order(python, plain_request, module,
                                                               sink):
    name = module("""
        import os, subprocess, sys

        def chatty(ctx):
            print("print")
            sys.stderr.write("stderr\\n")
            subprocess.run([sys.executable, "-c", "print('child')"], check=True)
            os.write(2, b"fd 2 \\xff\\n")
            print("fileno", sys.stdout.fileno(), sys.stderr.buffer.fileno())
            print("no newline", end="")
    """)
    result = python.execute(plain_request(f"{name}:chatty", kind="python"), sink, Cancellation())
    assert result == ExecResult(ok=True)
    assert sink.text == "print\nstderr\nchild\nfd 2 \ufffd\nfileno 1 2\nno newline"


def test_what_a_worker_wrote_before_it_died_is_kept(python, plain_request, module, sink):
    name = module("""
        import os

        def crash(ctx):
            print("last words", flush=True)
            os.write(1, b"x" * 200000)
            os._exit(7)
    """)
    result = python.execute(plain_request(f"{name}:crash", kind="python"), sink, Cancellation())
    assert result == ExecResult(ok=False, error="the python worker exited with code 7")
    assert sink.text == "last words\n" + "x" * 200000


def test_one_attempt_redirecting_its_fds_does_not_silence_the_next(python, plain_request,
                                                                    module, tmp_path):
    name = module("""
        import os, subprocess, sys

        def redirect(ctx):
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr.close()
            print("lost")

        def background(ctx):
            # writes once the test says the attempt is over, then says it has tried
            subprocess.Popen(["sh", "-c", "trap '' PIPE; while [ ! -e go ]; do sleep 0.01;"
                              " done; echo late; touch written"], cwd=ctx.params["dir"])
            print("started")

        def speak(ctx):
            print("spoken")
            sys.stderr.write("written\\n")
            return os.getpid()
    """)
    first, second, third = RecordingSink(), RecordingSink(), RecordingSink()
    redirected = python.execute(plain_request(f"{name}:redirect", kind="python"), first,
                                Cancellation())
    assert redirected == ExecResult(ok=True) and first.text == ""
    spoken = python.execute(plain_request(f"{name}:speak", kind="python"), second, Cancellation())
    assert spoken.ok and second.text == "spoken\nwritten\n"

    bg = plain_request(f"{name}:background", kind="python", params={"dir": str(tmp_path)})
    assert python.execute(bg, first, Cancellation()) == ExecResult(ok=True)
    (tmp_path / "go").touch()
    deadline = time.monotonic() + 20
    while not (tmp_path / "written").exists():
        assert time.monotonic() < deadline, "the background program never wrote"
        time.sleep(0.01)
    again = python.execute(plain_request(f"{name}:speak", kind="python"), third, Cancellation())
    assert again.result == spoken.result  # the same worker throughout
    # "late" came after its attempt ended: its pipe was closed, and it is in no log
    assert first.text == "started\n" and third.text == "spoken\nwritten\n"


class _SlowSink(RecordingSink):
    """A log that takes its time (a store write per flush), slower than a task can print."""

    def write(self, text: str) -> None:
        time.sleep(0.002)
        super().write(text[:100])


def test_a_task_printing_without_pause_still_times_out(python, plain_request, module) -> None:
    name = module("""
        import os

        def firehose(ctx):
            while True:
                os.write(1, b"x" * 1000000)
    """)
    box: list[ExecResult] = []
    request = plain_request(f"{name}:firehose", kind="python", timeout=1.0)
    thread = threading.Thread(target=lambda: box.append(
        python.execute(request, _SlowSink(), Cancellation())), daemon=True)
    thread.start()
    thread.join(120)  # a hang guard, not a measure: the deadline is checked between reads
    assert box == [ExecResult(ok=False, error="timed out after 1s", timed_out=True)]


@pytest.mark.parametrize("days", [25, 366])
def test_a_long_timeout_is_waited_for(python, make_request, module, sink, days) -> None:
    """A timeout past ~24.8 days overflowed poll()'s milliseconds: the attempt failed with
    'OverflowError: timeout is too large' inside taskplan instead of running."""
    name = module("""
        def go(ctx):
            print("ran")
            return 7
    """)
    result = python.execute(make_request(f"{name}:go", kind="python", timeout=days * 86400.0),
                            sink, Cancellation())
    assert result == ExecResult(ok=True, result=7)
    assert "ran" in sink.text
