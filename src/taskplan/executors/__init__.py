"""How one attempt of a task is executed: one protocol (base), one module per task kind.

The built-in kinds (shell, python, sql) are registered on first use, and the executor classes
are imported only when named: a python worker process imports this package and must not pay
for SQLAlchemy. Other kinds plug in with `register_executor(kind, executor)`.
"""

from taskplan.executors.base import (
    AttemptContext,
    Cancellation,
    ExecRequest,
    ExecResult,
    Executor,
    LogSink,
    UnknownKindError,
    executor_for,
    register_executor,
)
from taskplan.lazy import lazy_names

_CLASSES = {
    "PythonExecutor": "taskplan.executors.python",
    "ShellExecutor": "taskplan.executors.shell",
    "SqlExecutor": "taskplan.executors.sql",
}


__getattr__ = lazy_names(__name__, _CLASSES)


__all__ = [
    "AttemptContext",
    "Cancellation",
    "ExecRequest",
    "ExecResult",
    "Executor",
    "LogSink",
    "PythonExecutor",
    "ShellExecutor",
    "SqlExecutor",
    "UnknownKindError",
    "executor_for",
    "register_executor",
]
