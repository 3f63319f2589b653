from datetime import datetime

from storage import Storage


async def test_user_roundtrip(storage: Storage) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901)
    user = await storage.create_user("ada", "Ada 🧮", "hash", now)
    assert await storage.get_user(user.id) == user
    assert (await storage.get_password_hash("ada")) == (user, "hash")
