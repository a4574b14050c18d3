"""How one attempt of a task is executed: one protocol (base), one module per task kind.

Importing the package registers the built-in kinds. Other kinds plug in with
`register_executor(kind, executor)`, from their own module or from here.
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
from taskplan.executors.python import PythonExecutor
from taskplan.executors.shell import ShellExecutor
from taskplan.executors.sql import SqlExecutor

register_executor("shell", ShellExecutor())
register_executor("python", PythonExecutor())
register_executor("sql", SqlExecutor())

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
