"""Serving: model store, keys, batching, replicas, autoscaler, HTTP gateway, endpoint handle.

Imports the runtime and below; the gateway runs FastAPI on uvicorn inside a detached Ray actor.
"""
