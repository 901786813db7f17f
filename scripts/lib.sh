# Shared by scripts/dev and scripts/test: install what is missing, start and
# stop throwaway Postgres and Temporal servers. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TEMPORAL="$VENV/bin/temporal"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  if [ -z "${APT_UPDATED:-}" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Python tools of scripts/requirements-dev.txt (the Temporal CLI, schemathesis,
# ...) into the project's .venv; reinstalled when that file changes.
ensure_python_tools() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  local want; want="$(sha256sum "$ROOT/scripts/requirements-dev.txt" | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.requirements-dev.sha256" 2>/dev/null)" != "$want" ]; then
    log "installing the Python tools into .venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/requirements-dev.txt"
    echo "$want" > "$VENV/.requirements-dev.sha256"
  fi
}

ensure_postgres() {
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    apt_install postgresql postgresql-client
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  command -v psql >/dev/null || apt_install postgresql-client
  export PGBIN
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_postgres DIR PORT: a fresh cluster in DIR (kept if it exists), trust auth on loopback.
start_postgres() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  # initdb refuses to run as root, and the server must be able to read DIR.
  if id postgres >/dev/null 2>&1; then RUNAS=(su postgres -s /bin/sh -c); chown postgres "$dir"; chmod 700 "$dir"; else RUNAS=(sh -c); fi
  local parent; parent="$(dirname "$dir")"; chmod o+x "$parent" 2>/dev/null || true
  if [ ! -f "$dir/PG_VERSION" ]; then
    "${RUNAS[@]}" "'$PGBIN/initdb' -D '$dir' -U postgres -A trust --no-sync -E UTF8" >/dev/null
  fi
  "${RUNAS[@]}" "'$PGBIN/pg_ctl' -D '$dir' -l '$dir/server.log' -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=${PG_FSYNC:-on} ${PG_OPTS:-}\" -w start" >/dev/null \
    || { cat "$dir/server.log" >&2; die "Postgres did not start"; }
}

stop_postgres() {
  local dir="$1"
  [ -f "$dir/postmaster.pid" ] || return 0
  "${RUNAS[@]}" "'$PGBIN/pg_ctl' -D '$dir' -m fast -w stop" >/dev/null 2>&1 || true
}

# start_temporal DBFILE PORT UI_PORT|"" : the dev server (SQLite), with the Web UI when a UI port is given.
start_temporal() {
  local dbfile="$1" port="$2" ui="$3" args
  # The server completes a stopping worker's polls, so no task is left to its timeout (docs/deploying.md).
  args=(server start-dev --ip 127.0.0.1 --port "$port" --db-filename "$dbfile" --log-level warn
        --metrics-port "$(free_port)" --http-port "$(free_port)"
        --dynamic-config-value frontend.enableCancelWorkerPollsOnShutdown=true)
  if [ -n "$ui" ]; then args+=(--ui-port "$ui" --ui-disable-news-fetch); else args+=(--headless); fi
  "$TEMPORAL" "${args[@]}" >"$dbfile.log" 2>&1 &
  TEMPORAL_PID=$!
  for _ in $(seq 1 100); do
    if "$TEMPORAL" operator cluster health --address "127.0.0.1:$port" 2>/dev/null | grep -q SERVING; then return 0; fi
    kill -0 "$TEMPORAL_PID" 2>/dev/null || { cat "$dbfile.log" >&2; die "Temporal dev server exited"; }
    sleep 0.2
  done
  cat "$dbfile.log" >&2; die "Temporal dev server did not become healthy"
}
