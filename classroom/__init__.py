"""The domain: users, classes, membership, posts, rooms, attendance, live events; every
permission rule (rules.py), config, the `classroom` command and process start-up."""

from .errors import ClassroomError
from .services import Services

__all__ = ["ClassroomError", "Services"]
