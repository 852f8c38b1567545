#!/usr/bin/env bash
# The embedded mode: SQLite and a filesystem Celery broker under var/, the web server and one worker together.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-webapp.settings.dev}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
PY=.venv/bin/python
VAR_DIR="${RUBRICON_VAR_DIR:-var}"
mkdir -p "$VAR_DIR"

$PY manage.py migrate --noinput -v 0
$PY manage.py seed_demo
$PY manage.py prepare_model

$PY -m celery -A workers worker -Q default,judge,rollout,train --pool threads --concurrency 2 -n "embedded@%h" \
  --loglevel INFO >"$VAR_DIR/worker.log" 2>&1 &
worker=$!
cleanup() { kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

cat <<BANNER

  Rubricon is running at  http://$HOST:$PORT/
  Log in as               demo / demo
  Worker log              $VAR_DIR/worker.log
  Stop with Ctrl-C.

BANNER
$PY manage.py runserver "$HOST:$PORT" --noreload
