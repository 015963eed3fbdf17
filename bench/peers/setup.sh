#!/usr/bin/env bash
# Installs the peers of the `peers` benchmark, once: redis-server from Debian (apt-get, when
# missing) and a virtual environment with pinned Celery (Redis transport), Dask distributed and Ray.
# Idempotent: a venv whose stamp matches the pins is left alone. A peer whose packages fail to
# install is left out (peers.py then reports it with an "error"); the stamp is written only when
# all of them installed, so the next run tries again.
#
# Progress goes to stderr; the last line on stdout is the venv's python.
# Environment: PEERS_VENV (default: <repo>/target/peers-venv), PYTHON (default: python3; the pins
# were resolved on CPython 3.11).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${PEERS_VENV:-$root/target/peers-venv}
python=${PYTHON:-python3}

# What pip resolved on Python 3.11 (2026-11-22), one group per peer.
celery=("celery[redis]==5.7.0" "kombu==5.7.0" "redis==8.1.0")
dask=("dask[distributed]==2026.8.0" "distributed==2026.8.0")
ray=("ray==2.60.0")
pins="$(printf '%s\n' "${celery[@]}" "${dask[@]}" "${ray[@]}")"

say() { echo "  [setup] $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    say "installing redis-server (apt-get)"
    if ! $sudo apt-get install -y redis-server >&2; then
        $sudo apt-get update >&2
        $sudo apt-get install -y redis-server >&2 || say "redis-server could not be installed: Celery will fail"
    fi
fi

stamp="$venv/.peers-pins"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ]; then
    say "$venv is up to date"
    echo "$venv/bin/python"
    exit 0
fi

say "creating $venv with $($python --version 2>&1)"
"$python" -m venv "$venv" || { say "$python -m venv failed (Debian's python3 needs python3-venv)"; exit 1; }
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --upgrade pip >&2 || say "pip could not be upgraded; going on with $("${pip[@]}" --version)"
say "installing ${pins//$'\n'/ } (pip; a few minutes the first time)"
failed=0
# All at once (one consistent resolution); peer by peer when that fails, so one cannot sink the rest.
if ! "${pip[@]}" install "${celery[@]}" "${dask[@]}" "${ray[@]}" >&2; then
    "${pip[@]}" install "${celery[@]}" >&2 || { say "celery failed to install"; failed=1; }
    "${pip[@]}" install "${dask[@]}" >&2 || { say "dask failed to install"; failed=1; }
    "${pip[@]}" install "${ray[@]}" >&2 || { say "ray failed to install"; failed=1; }
fi
if [ "$failed" -eq 0 ]; then
    echo "$pins" >"$stamp"
    say "installed"
fi
echo "$venv/bin/python"
