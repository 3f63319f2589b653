#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (a virtualenv with the
# project and its test extras, Debian's Chromium and chromedriver), makes sure MariaDB runs,
# then lints, type-checks and runs every test. Extra arguments go to pytest.
# Under CI=true a missing MariaDB or browser fails the run; it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CLASSROOM_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "test.sh: installing Debian's chromium and chromium-driver" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

mysql_up() {
    "$venv/bin/python" - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 3306), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}
if ! mysql_up && [ -x /usr/sbin/mariadbd ]; then
    echo "test.sh: starting MariaDB" >&2
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 1 30); do mysql_up && break; sleep 1; done
fi

echo "== ruff" >&2
"$venv/bin/ruff" check .
echo "== mypy" >&2
"$venv/bin/mypy"
echo "== pytest" >&2
exec "$venv/bin/pytest" -q "$@"
