"""The web console, REST API and Prometheus metrics (`taskplan web`, `taskplan serve --port`).

Everything here reads and writes through the engine and the store's named operations: no SQL.
FastAPI, uvicorn and prometheus_client are imported only when a server starts.
"""
