#!/usr/bin/env bash
# test_compare.sh - `simile compare` end to end (CLI path as $1) on a small slice of
# Fashion-MNIST written here (the first 60 train and 40 test images of each class; random images
# if the dataset is not installed): the run succeeds and prints the table; its report.json agrees
# with `simile eval` run separately on the saved models (P@1, R-precision, MAP@R, mean intra and
# inter distances on the unseen and the seen classes, the softmax head's accuracy; tolerance
# 1e-6); each figure's bootstrap uncertainty is centred on it and every verdict follows its
# interval (supported only when the interval excludes 0), with the quick-run banner on top of the
# page; a second run with the same seed gives the same figures (timings aside), another seed
# or --schedule cosine other ones (the schedule recorded in the settings); usage errors
# exit 2.  One line per check; exits non-zero if any check fails.
set -u
SIMILE=${1:?usage: test_compare.sh path/to/simile}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sm_test_compare.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"

# ---- data: a slice of Fashion-MNIST in IDX files with Fashion-MNIST names -------------------
$PY - "$TMP/data" <<'EOF'
import gzip, os, random, struct, sys
out = sys.argv[1]; os.makedirs(out)
src = "/usr/share/datasets/fashion-mnist"
def read(split):
    with gzip.open(f"{src}/{split}-images-idx3-ubyte.gz") as f: img = f.read()
    with gzip.open(f"{src}/{split}-labels-idx1-ubyte.gz") as f: lab = f.read()
    return img[16:], lab[8:]
def write(split, per_class):
    try:
        img, lab = read(split)
    except OSError:  # no dataset: random images, interleaved labels
        rnd = random.Random(7); n = 10 * per_class
        lab = bytes(i % 10 for i in range(n)); img = bytes(rnd.randrange(256) for _ in range(n * 784))
    count = [0] * 10; xs = []; ys = []
    for i, y in enumerate(lab):
        if count[y] < per_class:
            count[y] += 1; ys.append(y); xs.append(img[i * 784:(i + 1) * 784])
    with gzip.open(f"{out}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(ys), 28, 28) + b"".join(xs))
    with gzip.open(f"{out}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(ys)) + bytes(ys))
write("train", 60); write("t10k", 40)
EOF
[ -f "$TMP/data/t10k-labels-idx1-ubyte.gz" ] && pass "data slice written" || { fail "data slice"; exit 1; }

ARGS=(--data "$TMP/data" --quick --epochs 1 --train-per-class 0 --test-per-class 0
      --losses softmax,multisimilarity,triplet --shots 3 --calib-per-class 10 --gallery-per-class 30
      --pairs-per-class 20 --scatter-per-class 20 --triplets 2000 --few-per-class 10 --few-epochs 3 --quiet)

# ---- the run -----------------------------------------------------------------------------------
"$SIMILE" compare "${ARGS[@]}" --out "$TMP/a" >"$TMP/a.out" 2>"$TMP/a.err"
rc=$?
if [ $rc -eq 0 ]; then pass "compare runs (exit 0)"; else fail "compare exit $rc"; sed 's/^/     | /' "$TMP/a.err" | tail -5; exit 1; fi
grep -Eq '^multisimilarity +\| +[0-9.]+ ' "$TMP/a.out" && grep -q "embedding structure" "$TMP/a.out" &&
    grep -q "few samples" "$TMP/a.out" && pass "the table is printed" || fail "no table on stdout"
grep -Eq 'softmax: [0-9]+ images x 1 epoch in [0-9.]+ s, [0-9]+ images/s' "$TMP/a.out" &&
    pass "a time and throughput line per run" || fail "no time and throughput line"
for f in report.html report.json report.txt softmax.smm multisimilarity.smm triplet.smm few_softmax.smm; do
    [ -s "$TMP/a/$f" ] || fail "missing $f"
done
pass "report files and models written"

# ---- agreement with simile eval ----------------------------------------------------------------
for loss in softmax multisimilarity triplet; do
    "$SIMILE" eval --model "$TMP/a/$loss.smm" --data "$TMP/data" --classes 5-9 --task retrieval \
        --json "$TMP/$loss.unseen.json" >/dev/null 2>"$TMP/eval.err" || { fail "eval $loss unseen"; cat "$TMP/eval.err"; }
    "$SIMILE" eval --model "$TMP/a/$loss.smm" --data "$TMP/data" --classes 0-4 --task retrieval \
        --json "$TMP/$loss.seen.json" >/dev/null 2>"$TMP/eval.err" || { fail "eval $loss seen"; cat "$TMP/eval.err"; }
done
"$SIMILE" eval --model "$TMP/a/softmax.smm" --data "$TMP/data" --classes 0-4 --task classify \
    --json "$TMP/softmax.classify.json" >/dev/null 2>"$TMP/eval.err" || fail "eval softmax classify"
$PY - "$TMP" <<'EOF'
import json, sys
tmp = sys.argv[1]
rep = json.load(open(f"{tmp}/a/report.json"))
bad = 0
for m in rep["models"]:
    if m["experiment"] != "main": continue
    loss = m["loss"]
    for part in ("unseen", "seen"):
        ev = json.load(open(f"{tmp}/{loss}.{part}.json"))
        for key in ("precision_at_1", "r_precision", "map_at_r", "mean_intra", "mean_inter", "nmi"):
            a, b = m[part][key], ev[key]
            ok = abs(a - b) <= 1e-6
            bad += not ok
            print(("ok  " if ok else "FAIL") + f" {loss} {part} {key}: report {a:.6f}, simile eval {b:.6f}")
ev = json.load(open(f"{tmp}/softmax.classify.json"))
m = [m for m in rep["models"] if m["loss"] == "softmax" and m["experiment"] == "main"][0]
ok = abs(m["closed_set"]["argmax"] - ev["accuracy"]) <= 1e-6
bad += not ok
print(("ok  " if ok else "FAIL") + f" softmax argmax accuracy: report {m['closed_set']['argmax']:.6f}, simile eval {ev['accuracy']:.6f}")
sys.exit(1 if bad else 0)
EOF
[ $? -eq 0 ] && pass "report.json agrees with simile eval (tolerance 1e-6)" || fail "report.json differs from simile eval"
core=$("$SIMILE" --version | sed -n 's/^kernel  *//p')
$PY -c 'import json, sys; r = json.load(open(sys.argv[1]))["run"]; sys.exit(not (r["blas_core"] == sys.argv[2] and r["vector_isa"] and r["cpu_family"] >= 0 and ("blas_warning" in r)))' \
    "$TMP/a/report.json" "$core" && pass "report.json names the CPU and the BLAS kernel ($core)" || fail "report.json's run block lacks the CPU or kernel $core"

# ---- uncertainties in report.json; the verdicts follow them; the quick banner -----------------
$PY - "$TMP/a/report.json" "$TMP/a/report.html" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1])); html = open(sys.argv[2]).read()
bad = []
pairs = {"unseen_map_at_r": ("unseen", "map_at_r"), "unseen_precision_at_1": ("unseen", "precision_at_1"),
         "seen_map_at_r": ("seen", "map_at_r"), "fewshot_nearest_neighbour": ("fewshot", "nearest_neighbour"),
         "closed_set_nearest_neighbour": ("closed_set", "nearest_neighbour")}
for m in rep["models"]:
    u = m["uncertainty"]
    for key, (part, fig) in pairs.items():
        iv = u[key]
        if abs(iv["value"] - m[part][fig]) > 1e-6 or not (iv["lo95"] <= iv["value"] <= iv["hi95"]) or not iv["se"] > 0:
            bad.append(f"{m['loss']} {key}: {iv} against {m[part][fig]}")
for c in rep["claims"]:
    d, o = c["difference"], c["outcome"]
    if o == "n/a": continue
    closed = c["claim"].startswith("Fixed classes")
    want = ("supported" if d["lo95"] > (-0.01 if closed else 0) else
            "contradicted" if d["hi95"] < 0 else "not decided at this run size")
    if o != want: bad.append(f"claim '{c['claim']}': outcome {o}, interval {d['lo95']:.4f}..{d['hi95']:.4f} says {want}")
    if "95% interval" not in c["result"]: bad.append(f"claim '{c['claim']}' quotes no interval")
if not rep["settings"]["quick"]: bad.append("settings.quick is not true for a --quick run")
if html.find('<p class="quick"><b>Quick run:</b>') < 0 or html.find('<p class="quick">') > html.find("<h2>"):
    bad.append("no quick-run banner at the top of the page")
if "seed's" in html: bad.append("the page still speaks of the seed's claims")
for b in bad: print("     | " + b)
sys.exit(1 if bad else 0)
EOF
[ $? -eq 0 ] && pass "report.json: uncertainties centred on the figures, verdicts follow the intervals, quick banner on top" ||
    fail "uncertainties, verdicts or quick banner"

# ---- same seed, same figures -------------------------------------------------------------------
"$SIMILE" compare "${ARGS[@]}" --out "$TMP/b" --no-save >/dev/null 2>"$TMP/b.err" || fail "second run"
$PY - "$TMP/a/report.json" "$TMP/b/report.json" <<'EOF'
import json, sys
def strip(d):
    d.pop("run", None); d.pop("command", None); d["settings"].pop("model_dir", None)
    for m in d["models"]: m.pop("timing", None); m.pop("file", None)
    return d
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
EOF
[ $? -eq 0 ] && pass "same seed, same figures" || fail "a second run with the same seed gave different figures"
"$SIMILE" compare "${ARGS[@]}" --losses multisimilarity --few-per-class 0 --out "$TMP/c" --no-save --seed 2 >/dev/null 2>&1
if [ $? -ne 0 ]; then fail "run with --seed 2"
elif cmp -s <($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][1]["unseen"])' "$TMP/a/report.json") \
            <($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][0]["unseen"])' "$TMP/c/report.json"); then
    fail "another seed gave identical figures"
else pass "another seed, other figures"; fi
"$SIMILE" compare "${ARGS[@]}" --losses multisimilarity --few-per-class 0 --out "$TMP/e" --no-save --schedule cosine >/dev/null 2>&1
if [ $? -ne 0 ]; then fail "run with --schedule cosine"
elif ! $PY -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["settings"]["schedule"] != "cosine")' "$TMP/e/report.json"; then
    fail "--schedule cosine not recorded in report.json's settings"
elif cmp -s <($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][1]["unseen"])' "$TMP/a/report.json") \
            <($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["models"][0]["unseen"])' "$TMP/e/report.json"); then
    fail "--schedule cosine gave the constant schedule's figures"
else pass "--schedule cosine recorded and used"; fi

# ---- usage errors ------------------------------------------------------------------------------
"$SIMILE" compare --loss-opts nosuch:x=1 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "--loss-opts for a loss not in --losses: exit 2" || fail "--loss-opts nosuch: exit $rc, want 2"
"$SIMILE" compare --schedule step >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "--schedule step: exit 2" || fail "--schedule step: exit $rc, want 2"
"$SIMILE" compare --pairs-per-class 1 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && pass "--pairs-per-class 1: exit 2" || fail "--pairs-per-class 1: exit $rc, want 2"
"$SIMILE" compare --data "$TMP/nowhere" --out "$TMP/d" >/dev/null 2>&1; rc=$?
[ $rc -eq 3 ] && pass "missing data: exit 3" || fail "missing data: exit $rc, want 3"
"$SIMILE" compare --help | grep -q -- "--quick" && pass "--help" || fail "--help"

checks_end test_compare.sh
