# Sourced by scripts/bench: `scripts/bench json` measures unary Verify over
# gRPC, over Connect's JSON on HTTP/2 (h2c) and over JSON on HTTP/1.1, all
# with h2load against one release server on the embedded default, with the
# same key and the same closed-loop load, so the three figures compare.
#
# Knobs: JSON_BENCH_REQUESTS (default 200000 a run), JSON_BENCH_CONNS (4),
# JSON_BENCH_INFLIGHT (8 a connection on HTTP/2; HTTP/1.1 has one a
# connection, so it gets CONNS × INFLIGHT connections instead).

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        echo "$port"
        return 0
    done
    echo "keysmith: no free port" >&2
    exit 1
}

# "<requests/s> <2xx count>" from h2load's output.
h2load_rate() {
    local out=$1
    local rps ok
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
    echo "${rps:-0} ${ok:-0}"
}

json_bench() {
    if ! command -v h2load >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "keysmith: installing h2load (nghttp2-client)" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
        else
            echo "keysmith: h2load is needed: apt-get install nghttp2-client" >&2
            exit 1
        fi
    fi
    cargo build --release --bin keysmith
    local bin=${CARGO_TARGET_DIR:-target}/release/keysmith
    local dir vport aport
    dir=$(mktemp -d /tmp/keysmith-json-bench.XXXXXX)
    vport=$(free_port)
    aport=$(free_port)
    (cd "$dir" && exec env -u DATABASE_URL "$bin" serve \
        --verify-addr "127.0.0.1:$vport" --admin-addr "127.0.0.1:$aport" >serve.log 2>&1) &
    local server=$!
    # Expanded now: the trap runs after this function's locals are gone.
    trap "kill $server 2>/dev/null; rm -rf '$dir'; trap - RETURN" RETURN
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$vport") 2>/dev/null && break
        sleep 0.1
    done
    local token secret
    token=$(cd "$dir" && env -u DATABASE_URL "$bin" admin-token create 2>/dev/null | tail -n1)
    secret=$(curl -sS "127.0.0.1:$aport/keysmith.v1.KeyAdmin/CreateKey" \
        -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -d '{"ownerId": "acct_bench", "name": "bench", "scopes": ["invoices:read"]}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')
    printf '{"key": "%s", "requiredScopes": ["invoices:read"]}' "$secret" >"$dir/verify.json"
    # The same request as one gRPC frame: VerifyRequest{key = 1, required_scopes = 2}.
    python3 - "$secret" "$dir/verify.grpc" <<'PY'
import sys
key, scope = sys.argv[1].encode(), b"invoices:read"
msg = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(scope)]) + scope
open(sys.argv[2], "wb").write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
PY
    local answer
    answer=$(curl -sS "127.0.0.1:$vport/keysmith.v1.KeyVerify/Verify" \
        -H 'content-type: application/json' -d @"$dir/verify.json")
    case $answer in
        *'"VERIFY_CODE_VALID"'*) ;;
        *) echo "keysmith: JSON Verify answered $answer" >&2; exit 1 ;;
    esac
    local n=${JSON_BENCH_REQUESTS:-200000} c=${JSON_BENCH_CONNS:-4} m=${JSON_BENCH_INFLIGHT:-8}
    local url="http://127.0.0.1:$vport/keysmith.v1.KeyVerify/Verify"
    local grpc json h1
    # A warm-up, then each form in turn, twice, taking the better run.
    h2load -n "$((n / 4))" -c "$c" -m "$m" -d "$dir/verify.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url" >/dev/null
    local best_grpc=0 best_json=0 best_h1=0 r
    for _ in 1 2; do
        grpc=$(h2load -n "$n" -c "$c" -m "$m" -d "$dir/verify.grpc" \
            -H 'content-type: application/grpc' -H 'te: trailers' "$url")
        json=$(h2load -n "$n" -c "$c" -m "$m" -d "$dir/verify.json" \
            -H 'content-type: application/json' "$url")
        h1=$(h2load --h1 -n "$n" -c "$((c * m))" -d "$dir/verify.json" \
            -H 'content-type: application/json' "$url")
        for form in grpc json h1; do
            read -r r ok <<<"$(h2load_rate "${!form}")"
            if [ "$ok" != "$n" ]; then
                echo "keysmith: $form: $ok of $n answers were 2xx" >&2
                exit 1
            fi
            local best="best_$form"
            if python3 -c "import sys; sys.exit(0 if $r > ${!best} else 1)"; then
                printf -v "$best" '%s' "$r"
            fi
        done
    done
    printf 'unary Verify over gRPC (h2c, %s conns x %s in flight)   %10.0f/s\n' "$c" "$m" "$best_grpc"
    printf 'unary Verify over JSON, HTTP/2 (h2c, same load)        %10.0f/s  (%.2f of gRPC)\n' \
        "$best_json" "$(python3 -c "print($best_json / $best_grpc)")"
    printf 'unary Verify over JSON, HTTP/1.1 (%s conns)             %10.0f/s  (%.2f of gRPC)\n' \
        "$((c * m))" "$best_h1" "$(python3 -c "print($best_h1 / $best_grpc)")"
}
