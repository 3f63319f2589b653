"""The WebSocket hub: connections, rooms, fan-out, resume, backpressure."""

from .server import ChatServer

__all__ = ["ChatServer"]
