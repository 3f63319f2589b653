#!/usr/bin/env bash
# The small netlab scenario CI runs after the tests (about a minute): the tree with the bus,
# 20 clients on two chat servers, 20% loss on a link, chat1 killed mid-session and restarted,
# a kick across servers (presence before and after, the student's next event refused);
# 0 lost or doubled; then the tree comes down and nothing of it may be left.
# Needs root, iproute2, nftables, the mariadb client, redis-server and MariaDB at
# 127.0.0.1:3306; as root it installs the Debian packages of the tools that are missing.
# Without them it is skipped, except under CI=true, where that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
declare -A package_of=([ip]=iproute2 [nft]=nftables [mariadb]=mariadb-client
                       [redis-server]=redis-server)
for tool in ip nft mariadb redis-server; do
    command -v "$tool" >/dev/null || packages+=("${package_of[$tool]}")
done
if [ ${#packages[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "netlab: installing ${packages[*]}" >&2
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null || true
fi

missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
for tool in ip nft mariadb redis-server; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "netlab: missing ${missing[*]}" >&2
        exit 1
    fi
    echo "netlab: skipped (missing ${missing[*]})"
    exit 0
fi

export NETLAB_RUN="${NETLAB_RUN:-$(mktemp -d /tmp/netlab-ci.XXXXXX)}"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
tree() { timeout 300 "$python" netlab/tree.py "$@"; }

if [ -e "$NETLAB_RUN/state.json" ] || ip netns list | grep -q '^netlab-'; then
    echo "netlab: a tree is already up; not touching it" >&2
    exit 1
fi
trap 'tree down >/dev/null 2>&1 || true' EXIT
tree up --clients 20 --chats 2
status=0
tree scenario --with-faults --messages 10 --check-kick --timeout 180 || status=$?
tree down
trap - EXIT
left=$(ip netns list | grep '^netlab-' || true)
procs=$(pgrep -f "$NETLAB_RUN" || true)
if [ -n "$left" ] || [ -n "$procs" ]; then
    echo "netlab: left behind: namespaces [$left] processes [$procs]" >&2
    exit 1
fi
echo "netlab: scenario exit $status; nothing left behind (logs in $NETLAB_RUN)"
exit "$status"
