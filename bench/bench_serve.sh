#!/usr/bin/env bash
# bench_serve.sh - load benchmark of `simile serve`: identify with an image (28x28 PNG, base64)
# against a 100,000-item gallery, with wrk on 127.0.0.1 (4 connections, bounded duration).
# Trains a small model (fc 128 ; relu ; fc 64 ; l2norm) on synthetic 28x28 IDX images, creates
# a gallery for it, enrols 100,000 raw 64-d embeddings in bulk over the API (20 requests of
# 5,000), then runs wrk and prints requests/s and the p50 / p99 latency.
# Usage: bench/bench_serve.sh [SIMILE_BINARY] [SECONDS] [SERVER_THREADS]
# (defaults: build/simile, 15, 2).  Needs wrk and python3.  Everything stays on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=$(realpath "${1:-$ROOT/build/simile}")
SECS=${2:-15}
THREADS=${3:-2}
W=$(mktemp -d /tmp/simile_bench_serve.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
python3 - <<'EOF'
import random, struct, zlib, base64, json
random.seed(3)
def img(k):
    px = [random.randint(0, 60) for _ in range(784)]
    r0, c0 = (k // 4) * 7, (k % 4) * 7
    for r in range(r0, r0 + 7):
        for c in range(c0, c0 + 7):
            px[r * 28 + c] = random.randint(160, 255)
    return px
ims, labs = [], []
for i in range(50):
    for k in range(16): ims.append(img(k)); labs.append(k)
open("train-img", "wb").write(struct.pack(">IIII", 0x803, len(ims), 28, 28) + bytes(sum(ims, [])))
open("train-lab", "wb").write(struct.pack(">II", 0x801, len(labs)) + bytes(labs))
raw = b"".join(b"\0" + bytes(img(5)[r * 28:(r + 1) * 28]) for r in range(28))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
body = json.dumps({"image": base64.b64encode(png).decode(), "k": 5})
with open("identify.lua", "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' % json.dumps(body))
EOF
"$S" train --images train-img --labels train-lab --model "fc 128 ; relu ; fc 64 ; l2norm" --loss contrastive \
    --epochs 1 --batch 64 --per-class 8 --threads 2 --quiet --out m.smm >/dev/null
"$S" gallery create --out g.smg --model m.smm >/dev/null
"$S" serve --model m.smm --gallery g.smg --listen 127.0.0.1:0 --threads "$THREADS" --checkpoint-every 0 > serve.out 2> serve.err &
PID=$!
for _ in $(seq 100); do grep -q listening serve.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' serve.out)
[ -n "$PORT" ] || { echo "the server did not start"; cat serve.err; exit 1; }
python3 - "$PORT" <<'EOF'
import json, random, sys, time, urllib.request
port = int(sys.argv[1]); rng = random.Random(1); t0 = time.time()
for b in range(20):
    emb = [[round(rng.gauss(0, 1), 4) for _ in range(64)] for _ in range(5000)]
    r = urllib.request.Request("http://127.0.0.1:%d/api/v1/subjects/s%d/items" % (port, b),
                               data=json.dumps({"embeddings": emb}).encode(), method="POST")
    with urllib.request.urlopen(r, timeout=120) as resp: assert resp.status == 201
with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/health" % port, timeout=10) as resp:
    n = json.loads(resp.read())["items"]
print("enrolled %d items in bulk in %.1f s" % (n, time.time() - t0))
EOF
echo "wrk: identify (image, k 5) against 100,000 items, 4 connections, ${SECS} s, server --threads $THREADS"
wrk -t2 -c4 -d"${SECS}s" --timeout 10s --latency -s identify.lua "http://127.0.0.1:$PORT/api/v1/identify" | tee wrk.txt
rps=$(awk '/Requests\/sec/ {print $2}' wrk.txt)
p50=$(awk '$1 == "50%" {print $2}' wrk.txt)
p99=$(awk '$1 == "99%" {print $2}' wrk.txt)
non2xx=$(awk '/Non-2xx/ {print $NF}' wrk.txt)
echo "RESULT requests/s $rps p50 $p50 p99 $p99 non-2xx ${non2xx:-0} ($(lscpu | sed -n 's/^Model name: *//p'))"
