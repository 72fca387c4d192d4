#!/usr/bin/env bash
# test_report_chromium.sh - the HTML report renders in headless Chromium (CLI path as $1): a small
# `simile compare` run on random IDX images written here, then Chromium loads report.html from
# disk: the DOM must hold every chart listed in report.json's "figures" as an <svg> element, the
# page must log no console message at all (it has no script, so any message is an error), load
# nothing from outside the file, and a screenshot must come out.  At 1400 px width (the
# layout check, tests/report_layout_check.js) no legend may overlap a chart's plot area and every
# legend entry's series must be visible, not drawn under another line.  Fails with a clear message if
# Chromium is missing (scripts/setup.sh installs Debian's chromium).
set -u
SIMILE=${1:?usage: test_report_chromium.sh path/to/simile}
PY=/usr/bin/python3
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
    echo "FAIL chromium not found: install Debian's chromium (scripts/setup.sh does) or set CHROMIUM=/path"
    exit 1
fi
TMP=$(mktemp -d /tmp/sm_test_chromium.XXXXXX)
[ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$TMP"' EXIT
FAILS=0
pass() { echo "ok   $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL $1"; }

# random 28x28 images with a class-dependent brightness, 40 train and 30 test a class
$PY - "$TMP/data" <<'PYEOF'
import gzip, os, random, struct, sys
out = sys.argv[1]; os.makedirs(out); rnd = random.Random(3)
for split, per in (("train", 40), ("t10k", 30)):
    ys = [i % 10 for i in range(10 * per)]
    img = bytes(min(255, rnd.randrange(128) + 12 * y) for y in ys for _ in range(784))
    with gzip.open(f"{out}/{split}-images-idx3-ubyte.gz", "wb") as f: f.write(struct.pack(">IIII", 0x803, len(ys), 28, 28) + img)
    with gzip.open(f"{out}/{split}-labels-idx1-ubyte.gz", "wb") as f: f.write(struct.pack(">II", 0x801, len(ys)) + bytes(ys))
PYEOF
"$SIMILE" compare --data "$TMP/data" --quick --epochs 1 --train-per-class 0 --test-per-class 0 \
    --losses softmax,multisimilarity,triplet --batch 20 --per-class 5 --shots 3 --calib-per-class 10 --gallery-per-class 20 \
    --pairs-per-class 15 --scatter-per-class 15 --triplets 1000 --few-per-class 8 --few-epochs 2 \
    --no-save --quiet --out "$TMP/out" >"$TMP/compare.out" 2>&1
if [ $? -ne 0 ]; then fail "simile compare"; tail -5 "$TMP/compare.out"; exit 1; fi
pass "report written"
WANT=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["figures"]))' "$TMP/out/report.json")

URL="file://$TMP/out/report.html"
timeout 120 "$CHROMIUM" --headless --disable-gpu --no-sandbox --enable-logging=stderr --v=0 \
    --user-data-dir="$TMP/profile" --dump-dom "$URL" >"$TMP/dom.html" 2>"$TMP/chromium.log"
rc=$?
[ $rc -eq 0 ] && pass "chromium loads the page" || { fail "chromium exit $rc"; tail -5 "$TMP/chromium.log"; }
GOT=$(grep -o '<svg' "$TMP/dom.html" | wc -l)
[ "$GOT" -eq "$WANT" ] && [ "$WANT" -eq 10 ] && pass "DOM has all $WANT charts as <svg>" ||
    fail "DOM has $GOT <svg> elements, report.json lists $WANT figures (want 10 for 3 losses)"
grep -q '<circle' "$TMP/dom.html" && grep -q '<polyline' "$TMP/dom.html" && grep -q '<rect' "$TMP/dom.html" &&
    pass "the charts have points, lines and bars" || fail "charts without content"
if grep -E 'CONSOLE|Uncaught|Failed to load' "$TMP/chromium.log" >"$TMP/console.txt"; then
    fail "console messages:"; sed 's/^/     | /' "$TMP/console.txt" | head -5
else
    pass "no console messages"
fi
grep -Eq '(src|href)="(https?:)?//' "$TMP/out/report.html" && fail "the report loads something from the network" ||
    pass "self-contained: nothing loaded from outside the file"
timeout 120 "$CHROMIUM" --headless --disable-gpu --no-sandbox --hide-scrollbars --window-size=1400,3000 \
    --user-data-dir="$TMP/profile" --screenshot="$TMP/shot.png" "$URL" >/dev/null 2>&1
SIZE=$(stat -c %s "$TMP/shot.png" 2>/dev/null || echo 0)
[ "$SIZE" -gt 50000 ] && pass "screenshot rendered ($SIZE bytes)" || fail "screenshot missing or blank ($SIZE bytes)"

# ---- layout at 1400 px: legends off the plot area, every legend entry's series visible ----------
# tests/report_layout_check.js is appended to a copy of the page; it writes its findings into the
# DOM, which --dump-dom prints.  First on a page made to fail (a legend over the plot area, an
# entry whose line lies under another with the same points), so the check is known to bite.
JS="$(dirname "$0")/report_layout_check.js"
with_check() { $PY - "$1" "$2" "$JS" <<'PYEOF'
import sys
page, out, js = sys.argv[1:4]
html = open(page).read()
open(out, "w").write(html.replace("</body>", "<script>" + open(js).read() + "</script></body>"))
PYEOF
}
layout() { timeout 120 "$CHROMIUM" --headless --disable-gpu --no-sandbox --window-size=1400,3000 \
    --user-data-dir="$TMP/profile" --dump-dom "file://$1" 2>/dev/null |
    $PY -c 'import re,sys; m = re.findall(r"<pre id=\"layout-check\">(.*?)</pre>", sys.stdin.read(), re.S); print(m[-1] if m else "LAYOUT-FAIL the check did not run")'; }
cat >"$TMP/bad.html" <<'HTMLEOF'
<!DOCTYPE html><html><body><svg width="300" height="200" viewBox="0 0 300 200">
<rect class="plot-area" x="50" y="30" width="230" height="130" fill="none" stroke="#555"/>
<polyline fill="none" stroke="#aaaaaa" points="50,100 280,60"/><polyline fill="none" stroke="#1f77b4" points="50,100 280,60"/>
<g class="legend"><g class="legend-item" data-color="#aaaaaa"><rect x="200" y="35" width="12" height="10" fill="#aaaaaa"/><text x="215" y="45">raw</text></g>
<g class="legend-item" data-color="#1f77b4"><rect x="200" y="50" width="12" height="10" fill="#1f77b4"/><text x="215" y="60">avg</text></g></g>
</svg></body></html>
HTMLEOF
with_check "$TMP/bad.html" "$TMP/bad_checked.html"
layout "$TMP/bad_checked.html" >"$TMP/bad_layout.txt"
grep -q "legend overlaps the plot area" "$TMP/bad_layout.txt" && grep -q 'legend entry "raw"' "$TMP/bad_layout.txt" &&
    ! grep -q 'legend entry "avg"' "$TMP/bad_layout.txt" && pass "the layout check catches an overlapping legend and a hidden line" ||
    { fail "the layout check missed the faults of a bad page:"; sed 's/^/     | /' "$TMP/bad_layout.txt"; }
# 10 batches a run (--batch 20): the loss charts carry a moving average, so its legend entry is checked too
grep -q "moving average (" "$TMP/out/report.html" && pass "the loss charts draw a moving average" ||
    fail "no moving average drawn for 10-batch runs"
with_check "$TMP/out/report.html" "$TMP/out/checked.html"
layout "$TMP/out/checked.html" >"$TMP/layout.txt"
if grep -q "LAYOUT-FAIL" "$TMP/layout.txt" || ! grep -q "LAYOUT-OK $WANT charts, $WANT legends" "$TMP/layout.txt"; then
    fail "layout at 1400 px:"; sed 's/^/     | /' "$TMP/layout.txt" | head -10
else
    pass "at 1400 px no legend overlaps a plot area and every legend entry's series is visible ($(grep -o 'LAYOUT-OK.*' "$TMP/layout.txt"))"
fi

if [ $FAILS -gt 0 ]; then echo "$FAILS check(s) failed"; exit 1; fi
echo "all checks passed"
