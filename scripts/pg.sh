# Starts and stops a throwaway PostgreSQL from the local binaries; sourced by
# scripts/test and scripts/bench. Installs Debian's `postgresql` package
# first when the binaries are missing and we are root.

find_pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

start_throwaway_postgres() {
    local bin
    if ! bin=$(find_pg_bin); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "keysmith: installing PostgreSQL (apt-get install postgresql)" >&2
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
            bin=$(find_pg_bin)
        else
            echo "keysmith: no PostgreSQL binaries found; install postgresql or set DATABASE_URL" >&2
            exit 1
        fi
    fi
    PG_DIR=$(mktemp -d /tmp/keysmith-pg.XXXXXX)
    local run=()
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root.
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PG_DIR"
        run=(runuser -u postgres --)
    fi
    PG_RUN=("${run[@]}")
    PG_BIN=$bin
    # Tests that stop and start a server of their own use the same binaries.
    export KEYSMITH_PG_BIN=$bin
    "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    local port
    for _ in $(seq 1 20); do
        port=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        # For tests, fsync is off: the cluster is thrown away, and keysmith's
        # own durability is tested against a live server, not a host crash.
        # Benchmarks set PG_DURABLE=1 to measure real commits.
        local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        [ "${PG_DURABLE:-}" = 1 ] && durability=""
        if "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start \
            -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 $durability" \
            >/dev/null; then
            export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            echo "keysmith: throwaway PostgreSQL on port $port" >&2
            return 0
        fi
    done
    cat "$PG_DIR/server.log" >&2
    exit 1
}

stop_throwaway_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}

