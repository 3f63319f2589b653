import pytest

from classroom.cli import _config, _parser
from classroom.config import Config


def test_connection_caps_come_from_flags_over_env() -> None:
    env = {"CLASSROOM_HTTP_PER_ADDRESS": "50", "CLASSROOM_CHAT_PER_ADDRESS": "70",
           "CLASSROOM_CHAT_PER_USER": "4"}
    config = Config.from_env(env)
    assert (config.http_per_address, config.chat_per_address, config.chat_per_user) == (
        50, 70, 4)
    assert Config.from_env({}).http_per_address is None  # the listener's own default
    args = _parser().parse_args(["serve", "--http-per-address", "9", "--chat-per-user", "2",
                                 "--signups-per-address", "3"])
    config = _config(args)
    assert config.http_per_address == 9 and config.chat_per_user == 2
    assert config.signups_per_address == 3
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValueError):
            Config.from_env({"CLASSROOM_CHAT_PER_USER": bad})
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--chat-per-address", "0"])
