"""taskplan: a job orchestrator whose every state lives in a database."""

__version__ = "0.1.0"
