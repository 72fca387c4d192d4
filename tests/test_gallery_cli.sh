#!/usr/bin/env bash
# test_gallery_cli.sh - the open-set commands end to end on tiny data (seconds): a small MLP is
# trained on 8x8 synthetic IDX images of 4 classes, then gallery create / enrol (IDX, folder of
# PGM + PNG images, single image, .npy) / list / calibrate / identify / verify / remove /
# compact, embed, classify; and bad inputs with their exit codes: corrupt and truncated
# gallery, wrong model, wrong dimension, NaN in a query, empty gallery, k larger than the
# gallery, an unreadable image, a folder with an empty class, usage errors.
# Usage: test_gallery_cli.sh /path/to/simile
set -u
S=$(realpath "${1:?usage: test_gallery_cli.sh SIMILE}")
T=$(mktemp -d /tmp/simile_galcli_XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE DESCRIPTION -- command...: run, check the exit code, keep output in out.txt
expect() {
  local want=$1 what=$2; shift 3
  "$@" > out.txt 2>&1
  local got=$?
  if [ "$got" = "$want" ]; then ok "$what (exit $got)"; else bad "$what: exit $got, want $want"; cat out.txt; fi
}
has() { if grep -q -- "$1" out.txt; then ok "output has '$1'"; else bad "output lacks '$1'"; cat out.txt; fi; }

# ---- tiny data: class k lights quadrant k of an 8x8 image, plus noise -------------------------
python3 - <<'EOF'
import random, struct, zlib, os
random.seed(7)
def img(k):
    px = [random.randint(0, 40) for _ in range(64)]
    r0, c0 = (k // 2) * 4, (k % 2) * 4
    for r in range(r0, r0 + 4):
        for c in range(c0, c0 + 4):
            px[r * 8 + c] = random.randint(180, 255)
    return px
def idx(name, n_per, classes):
    ims, labs = [], []
    for i in range(n_per):
        for k in classes:
            ims.append(img(k)); labs.append(k)
    with open(name + "-img", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(ims), 8, 8)); f.write(bytes(sum(ims, [])))
    with open(name + "-lab", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labs))); f.write(bytes(labs))
idx("train", 30, range(4))
idx("test", 10, range(4))
def pgm(path, px):
    with open(path, "wb") as f: f.write(b"P5\n8 8\n255\n" + bytes(px))
def png(path, px):
    raw = b"".join(b"\0" + bytes(px[r * 8:(r + 1) * 8]) for r in range(8))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
os.makedirs("folder/quad3"); os.makedirs("folder/quad2")
for i in range(3): pgm("folder/quad3/%d.pgm" % i, img(3))
for i in range(2): png("folder/quad2/%d.png" % i, img(2))
png("q0.png", img(0)); png("q0b.png", img(0)); pgm("q3.pgm", img(3))
with open("broken.png", "wb") as f: f.write(b"\x89PNG\r\n\x1a\nnot really")
os.makedirs("emptyfolder/a"); os.makedirs("emptyfolder/b")
pgm("emptyfolder/a/0.pgm", img(0))
# NaN and wrong-dimension embeddings as .npy
def npy(path, shape, vals):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")
    hdr = hdr.ljust(117) + "\n"
    with open(path, "wb") as f: f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack("<%df" % len(vals), *vals))
npy("dim5.npy", (2, 5), [0.1] * 10)
npy("two8.npy", (2, 8), [1.0] + [0.0] * 7 + [0.0, 1.0] + [0.0] * 6)
# a version-1 gallery file (before item sources), as the old writer laid it out: dimension 8,
# raw embeddings (fingerprint 0), no threshold, class "old" with items 0 and 1
def v1_gallery(path):
    b = b"SMILEGAL" + struct.pack("<IIIIfIIQQ", 1, 8, 0, 0, float("inf"), 0, 1, 2, 2)
    b += struct.pack("<II", 0, 3) + b"old"
    b += struct.pack("<IIq", 0, 0, 0) + struct.pack("<IIq", 0, 0, 1)
    b += struct.pack("<16f", *([0.0, 0.0, 1.0] + [0.0] * 5 + [0.0, 0.0, 0.0, 1.0] + [0.0] * 4))
    with open(path, "wb") as f: f.write(b + struct.pack("<I", zlib.crc32(b) & 0xffffffff))
v1_gallery("v1.smg")
# a folder with one corrupt image; images of other sizes (1x1, 100x64)
os.makedirs("badfolder/a"); os.makedirs("badfolder/b")
pgm("badfolder/a/0.pgm", img(0)); pgm("badfolder/b/0.pgm", img(1))
with open("badfolder/a/1.png", "wb") as f: f.write(b"\x89PNG\r\n\x1a\ntruncated")
with open("tiny.pgm", "wb") as f: f.write(b"P5\n1 1\n255\n\x80")
with open("wide.pgm", "wb") as f: f.write(b"P5\n100 64\n255\n" + bytes(random.randint(0, 255) for _ in range(6400)))
npy("nan.npy", (1, 8), [float("nan")] + [0.0] * 7)
EOF
D="--images train-img --labels train-lab"
DT="--images test-img --labels test-lab"

expect 0 "train a metric model" -- "$S" train $D --model "fc 32 ; relu ; fc 8 ; l2norm" --loss contrastive --epochs 4 --batch 32 --per-class 8 --threads 1 --quiet --out m.smm
expect 0 "train a second model" -- "$S" train $D --model "fc 32 ; relu ; fc 8 ; l2norm" --loss contrastive --epochs 1 --batch 32 --per-class 8 --threads 1 --quiet --seed 9 --out m2.smm
expect 0 "train a softmax model" -- "$S" train $D --model "fc 32 ; relu ; fc 8" --loss softmax --epochs 4 --batch 32 --threads 1 --quiet --out soft.smm

for c in "gallery" "gallery create" "gallery enrol" "gallery remove" "gallery list" "gallery compact" "gallery calibrate" identify verify classify embed; do
  expect 0 "$c --help" -- "$S" $c --help
done

# ---- create, enrol, list -------------------------------------------------------------------------
expect 0 "create" -- "$S" gallery create --out g.smg --model m.smm
expect 3 "create refuses to overwrite" -- "$S" gallery create --out g.smg --model m.smm
has "exists"
expect 2 "create needs --model or --dim" -- "$S" gallery create --out x.smg
expect 0 "enrol classes 0-2, 5 each" -- "$S" gallery enrol --gallery g.smg --model m.smm $D --classes 0-2 --first-per-class 5
has "enrolled 15 items in 3 classes (3 new)"
expect 0 "list" -- "$S" gallery list --gallery g.smg
has "15 items in 3 classes"

# ---- identify: closed set, then open set with a calibrated threshold -------------------------
expect 0 "identify test classes 0-2" -- "$S" identify --gallery g.smg --model m.smm $DT --classes 0-2
acc=$(awk '/closed-set accuracy/ {print $NF}' out.txt)
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }'; then ok "nearest-neighbour accuracy $acc >= 0.9"; else bad "accuracy $acc < 0.9"; cat out.txt; fi
expect 0 "identify by centroid" -- "$S" identify --gallery g.smg --model m.smm $DT --classes 0-2 --rule centroid
has "closed-set accuracy (centroid)"
expect 0 "identify by vote, k larger than the gallery" -- "$S" identify --gallery g.smg --model m.smm $DT --classes 0-2 --rule vote --k 1000 --top 1000 --show 2
has "votes"
expect 0 "identify image files" -- "$S" identify --gallery g.smg --model m.smm q0.png q3.pgm
has "q0.png: 0 "
expect 0 "calibrate on held-out train images (FAR 0.05), dry run" -- "$S" gallery calibrate --gallery g.smg --model m.smm $D --classes 0-2 --skip-per-class 5 --far 0.05 --dry-run
has "TAR at FAR 1e-2"
has "threshold for FAR <= 0.05"
expect 0 "calibrate by best F1" -- "$S" gallery calibrate --gallery g.smg --model m.smm $D --classes 0-2 --skip-per-class 5 --f1
has "best-F1 threshold"
has "stored threshold"
# 75 held-out inputs x 2 other classes = 150 impostor pairs: FAR 1e-3 and 1e-4 cannot be measured
has "TAR at FAR 1e-2 [0-9.]*, 1e-3 not supported (150 impostor pairs), 1e-4 not supported (150 impostor pairs)"
expect 0 "calibrate for FAR 1e-3 on 150 impostor pairs (dry run)" -- "$S" gallery calibrate --gallery g.smg --model m.smm $D --classes 0-2 --skip-per-class 5 --far 0.001 --dry-run
has "warning: --far 0.001 is below 1/150"
expect 0 "list shows the threshold" -- "$S" gallery list --gallery g.smg
has "calibrated for rule nearest"
expect 0 "open-set identify of classes 0-3 (3 not enrolled)" -- "$S" identify --gallery g.smg --model m.smm $DT
has "queries of classes not enrolled: 10, rejection rate"
has "TAR (accepted, right class)"
grep -q "changed since" out.txt && bad "a change warning right after calibration" || ok "no change warning right after calibration"
rej=$(awk '/rejection rate/ {print $NF}' out.txt)
if awk -v a="$rej" 'BEGIN { exit !(a >= 0.5) }'; then ok "rejection rate of class 3: $rej"; else bad "rejection rate $rej < 0.5"; cat out.txt; fi

# ---- verify ------------------------------------------------------------------------------------
# a pair: the score always; a decision only with --threshold (the gallery's threshold is for
# identification, nearest of several items); exit 0 same, 10 different, 0 with no threshold
expect 0 "verify two images of a class, gallery given (its threshold does not apply to a pair)" -- "$S" verify --model m.smm --gallery g.smg q0.png q0b.png
has "^distance [0-9.]* (metric l2; no threshold"
has "not for a single pair"
d_same=$(awk '/^distance/ {print $2}' out.txt)
expect 0 "verify two images of a class at threshold 0.3" -- "$S" verify --model m.smm --threshold 0.3 q0.png q0b.png
has "^same (distance $d_same <= threshold 0.3000"
expect 10 "verify images of two classes: different, exit 10" -- "$S" verify --model m.smm --threshold 0.3 q0.png q3.pgm
has "^different"
expect 0 "verify without a threshold prints the distance, exit 0" -- "$S" verify --model m.smm q0.png q3.pgm
has "^distance [0-9.]* (metric l2; no threshold"
expect 0 "verify an image against an enrolled class (the gallery's calibrated threshold)" -- "$S" verify --model m.smm --gallery g.smg --class 0 q0.png
has "same as class '0' (distance [0-9.]* <= threshold [0-9.]* from gallery, nearest)"
expect 10 "verify an image of class 3 against class 0" -- "$S" verify --model m.smm --gallery g.smg --class 0 q3.pgm
has "different from class '0'"
expect 0 "verify against a class by centroid: the nearest-rule threshold does not apply" -- "$S" verify --model m.smm --gallery g.smg --class 0 --rule centroid q3.pgm
has "no threshold applies"
has "calibrated for rule nearest, not centroid"
expect 1 "verify against a missing class" -- "$S" verify --model m.smm --gallery g.smg --class nope q0.png

# ---- embed, .npy inputs -----------------------------------------------------------------------
expect 0 "embed" -- "$S" embed --model m.smm $DT --out e.npy --labels-out l.npy
has "embedded 40 inputs"
expect 0 "identify from .npy embeddings" -- "$S" identify --gallery g.smg --npy e.npy --npy-labels l.npy
has "queries of classes not enrolled: 10"
expect 0 "enrol .npy embeddings of class 3 under a new name" -- "$S" gallery enrol --gallery g.smg --npy e.npy --npy-labels l.npy --skip-per-class 9 --class npy3
has "enrolled 4 items"

# ---- other sources -----------------------------------------------------------------------------
expect 0 "enrol a folder (PGM + PNG)" -- "$S" gallery enrol --gallery g.smg --model m.smm --folder folder
has "enrolled 5 items in 2 classes (2 new)"
expect 0 "enrol one image into an existing class" -- "$S" gallery enrol --gallery g.smg --model m.smm --class 0 q0.png
has "(0 new)"
expect 0 "list" -- "$S" gallery list --gallery g.smg --items
has "quad3"
# the threshold was calibrated on 15 items; enrolments since are reported, once
expect 0 "identify after enrolments since the calibration" -- "$S" identify --gallery g.smg --model m.smm q0.png
has "warning: g.smg changed since its threshold was calibrated (on 15 items; 25 now"
[ "$(grep -c "changed since" out.txt)" = 1 ] && ok "warned once" || { bad "warning count"; cat out.txt; }
expect 0 "identify with --threshold: no calibration warning" -- "$S" identify --gallery g.smg --model m.smm --threshold 0.5 q0.png
grep -q "changed since" out.txt && bad "warned about a threshold not used" || ok "no warning for --threshold"
expect 0 "verify --class after enrolments since the calibration" -- "$S" verify --model m.smm --gallery g.smg --class 0 q0.png
has "changed since its threshold was calibrated"
expect 0 "list says the gallery changed since calibration" -- "$S" gallery list --gallery g.smg
has "on 15 items); the gallery has changed since: calibrate again"
# the same image twice in a class: a warning (it is still enrolled); in another class: none
expect 0 "enrol q0.png into class 0 again" -- "$S" gallery enrol --gallery g.smg --model m.smm --class 0 q0.png
has "warning: q0.png (class '0') has the same embedding as item 24 already enrolled in that class"
expect 0 "remove the duplicate again" -- "$S" gallery remove --gallery g.smg --item 25
"$S" gallery create --out dup.smg --model m.smm >/dev/null
"$S" gallery enrol --gallery dup.smg --model m.smm --class 0 q0.png >/dev/null
expect 0 "enrol q0.png twice into another class" -- "$S" gallery enrol --gallery dup.smg --model m.smm --class other q0.png q0.png
has "warning: q0.png (class 'other') has the same embedding as input 0 of this enrolment in that class"
[ "$(grep -c warning out.txt)" = 1 ] && ok "one warning (the second copy in the batch; none for class 0's copy)" || { bad "duplicate warnings"; cat out.txt; }
"$S" gallery enrol --gallery dup.smg --model m.smm $D --classes 1 --first-per-class 1 >/dev/null
expect 0 "the same IDX sample again" -- "$S" gallery enrol --gallery dup.smg --model m.smm $D --classes 1 --first-per-class 1
has "warning: train-img#1 (class '1') has the same embedding as item 3 already enrolled in that class"
# a different image from the same file name (source) in the same class
cp q3.pgm q0b-saved.pgm; cp q0.png q0-saved.png; cp q0b.png q0.png
expect 0 "another image under an enrolled file name" -- "$S" gallery enrol --gallery dup.smg --model m.smm --class 0 q0.png
has "warning: q0.png (class '0') has the same source as item 0 already enrolled in that class"
cp q0-saved.png q0.png
expect 0 "list" -- "$S" gallery list --gallery g.smg --items

# provenance: each item keeps its source (image file, or <IDX file>#<index in that file>)
has " quad3  *20[0-9-]*T[0-9:.]*Z  *folder/quad3/0.pgm$"  # class, enrolment time (UTC), source
has " 0  *20[0-9-]*T[0-9:.]*Z  *q0.png$"
awk '$1 == 14 {print $4}' out.txt | grep -qx "train-img#18" && ok "item 14 (5th of class 2) came from train-img#18" || { bad "item 14's source"; cat out.txt; }
has "e.npy#36"

# ---- a corrupt image: the enrolment fails whole, or --skip-bad enrols the rest and names it ----
"$S" gallery create --out sb.smg --model m.smm >/dev/null
"$S" gallery enrol --gallery sb.smg --model m.smm --class 0 q0.png >/dev/null
n_before=$("$S" gallery list --gallery sb.smg | awk '/items in/ {print $1}')
expect 3 "a folder with a corrupt image" -- "$S" gallery enrol --gallery sb.smg --model m.smm --folder badfolder
has "badfolder/a/1.png"
n_after=$("$S" gallery list --gallery sb.smg | awk '/items in/ {print $1}')
[ "$n_before" = "$n_after" ] && ok "nothing enrolled ($n_after items)" || bad "gallery went from $n_before to $n_after items"
expect 0 "the same folder with --skip-bad" -- "$S" gallery enrol --gallery sb.smg --model m.smm --folder badfolder --skip-bad
has "skipped: badfolder/a/1.png"
has "skipped 1 of 3 images that could not be read"
has "enrolled 2 items in 2 classes (2 new)"
expect 3 "--skip-bad with nothing readable" -- "$S" identify --gallery g.smg --model m.smm --skip-bad broken.png
has "the one image given could not be read"
# images of another size are resized, and a note says so once
expect 0 "identify a 1x1 and a 100x64 image" -- "$S" identify --gallery g.smg --model m.smm tiny.pgm wide.pgm q0.png
[ "$(grep -c "resized" out.txt)" = 1 ] && ok "one note about resizing" || { bad "resize note count"; cat out.txt; }
has "note: 2 of 3 images were resized to the model's 8x8 (e.g. tiny.pgm is 1x1)"
expect 0 "an image of the model's size: no note" -- "$S" identify --gallery g.smg --model m.smm q0.png
grep -q resized out.txt && bad "a resize note for an 8x8 image" || ok "no resize note for 8x8 images"

# ---- an old-version (1) gallery file still loads, and is upgraded when written ------------------
expect 0 "list a version-1 gallery" -- "$S" gallery list --gallery v1.smg --items
has "2 items in 1 class"
has "^ *1   old  *-  *-$"  # a version-1 item: no enrolment time, no source
expect 0 "enrol into a version-1 gallery" -- "$S" gallery enrol --gallery v1.smg --npy two8.npy --class new
expect 0 "list it again (now version 3)" -- "$S" gallery list --gallery v1.smg --items
has "4 items in 2 classes"
has "two8.npy#1$"
# the enrolment went to the journal (the file is not rewritten); compact writes the whole file
python3 -c "import struct,sys; sys.exit(struct.unpack('<I', open('v1.smg','rb').read()[8:12])[0] != 1)" && ok "the enrolment did not rewrite the file" || bad "the file was rewritten"
[ -s v1.smg.journal ] && ok "the enrolment is in v1.smg.journal" || bad "no journal"
expect 0 "compact the version-1 gallery" -- "$S" gallery compact --gallery v1.smg
python3 -c "import struct,sys; sys.exit(struct.unpack('<I', open('v1.smg','rb').read()[8:12])[0] != 3)" && ok "written back as version 3" || bad "not version 3"
[ ! -s v1.smg.journal ] && ok "the journal is empty after a full write" || bad "journal left"
expect 0 "list it after compaction" -- "$S" gallery list --gallery v1.smg --items
has "4 items in 2 classes"

# ---- embed --folder writes the label map -------------------------------------------------------
expect 0 "embed a folder" -- "$S" embed --model m.smm --folder folder --out fe.npy --labels-out fl.npy
has "fe.labels.json"
python3 - <<'PY' && ok "fe.labels.json maps labels 0, 1 to quad2, quad3 and names each row's file" || bad "label map"
import json, struct
m = json.load(open("fe.labels.json"))
lab = open("fl.npy", "rb").read()
hl = struct.unpack("<H", lab[8:10])[0]
labels = list(struct.unpack("<5i", lab[10 + hl:]))
assert m["classes"] == ["quad2", "quad3"], m
assert [m["classes"][y] for y in labels] == [s.split("/")[1] for s in m["sources"]], (labels, m)
assert m["sources"][0] == "folder/quad2/0.png", m
PY

# ---- remove, compact ---------------------------------------------------------------------------
expect 0 "remove an item" -- "$S" gallery remove --gallery g.smg --item 0
expect 1 "remove it again" -- "$S" gallery remove --gallery g.smg --item 0
expect 0 "remove a class" -- "$S" gallery remove --gallery g.smg --class quad2
has "2 items"
expect 1 "remove a missing class" -- "$S" gallery remove --gallery g.smg --class quad2
expect 0 "compact" -- "$S" gallery compact --gallery g.smg
has "1 class slot dropped"
expect 0 "list after compaction" -- "$S" gallery list --gallery g.smg
has "22 items in 5 classes"

# ---- classify ----------------------------------------------------------------------------------
expect 0 "classify with a softmax model" -- "$S" classify --model soft.smm $DT --top 2
has "top-1 accuracy"
expect 0 "classify an image" -- "$S" classify --model soft.smm q0.png
has "q0.png: 0 "
expect 1 "classify with a model without head" -- "$S" classify --model m.smm $DT

# ---- bad inputs --------------------------------------------------------------------------------
cp g.smg corrupt.smg
printf '\x55' | dd of=corrupt.smg bs=1 seek=70 conv=notrunc 2>/dev/null
expect 3 "corrupt gallery" -- "$S" identify --gallery corrupt.smg --model m.smm q0.png
has "checksum"
head -c 100 g.smg > trunc.smg
expect 3 "truncated gallery" -- "$S" gallery list --gallery trunc.smg
expect 3 "gallery built with another model" -- "$S" identify --gallery g.smg --model m2.smm q0.png
has "built with model"
expect 3 "enrol with another model" -- "$S" gallery enrol --gallery g.smg --model m2.smm --class 0 q0.png
expect 3 "query of the wrong dimension" -- "$S" identify --gallery g.smg --npy dim5.npy
has "dimension 5"
expect 4 "NaN in a query" -- "$S" identify --gallery g.smg --npy nan.npy
expect 0 "empty gallery" -- "$S" gallery create --out empty.smg --model m.smm
expect 3 "identify on an empty gallery" -- "$S" identify --gallery empty.smg --model m.smm q0.png
has "empty"
expect 3 "an unreadable image" -- "$S" identify --gallery g.smg --model m.smm broken.png
has "broken.png"
expect 3 "a missing image" -- "$S" identify --gallery g.smg --model m.smm nosuch.png
expect 3 "a folder with an empty class" -- "$S" gallery enrol --gallery g.smg --model m.smm --folder emptyfolder
has "emptyfolder/b"
expect 3 "missing gallery" -- "$S" identify --gallery nosuch.smg --model m.smm q0.png
expect 2 "identify without --gallery" -- "$S" identify --model m.smm q0.png
expect 2 "bad rule" -- "$S" identify --gallery g.smg --model m.smm --rule magic q0.png
expect 2 "two input sources" -- "$S" identify --gallery g.smg --model m.smm --folder folder q0.png
expect 2 "unknown subcommand" -- "$S" gallery frobnicate
expect 2 "image without --class" -- "$S" gallery enrol --gallery g.smg --model m.smm q0.png
# no input at all: a usage error naming the sources, never the built-in Fashion-MNIST
n_before=$("$S" gallery list --gallery g.smg | awk '/items in/ {print $1}')
expect 2 "enrol without an input" -- "$S" gallery enrol --gallery g.smg --model m.smm
has "no input given"
n_after=$("$S" gallery list --gallery g.smg | awk '/items in/ {print $1}')
[ "$n_before" = "$n_after" ] && ok "the refused enrolment left the gallery at $n_after items" || bad "gallery went from $n_before to $n_after items"
expect 2 "identify without an input" -- "$S" identify --gallery g.smg --model m.smm
has "no input given"
expect 2 "calibrate without an input" -- "$S" gallery calibrate --gallery g.smg --model m.smm
has "no input given"
expect 2 "classify without an input" -- "$S" classify --model soft.smm
has "no input given"
expect 2 "embed without an input" -- "$S" embed --model m.smm --out none.npy
has "no input given"
[ -e none.npy ] && bad "embed wrote none.npy without inputs" || ok "embed wrote nothing"
expect 2 "verify without images" -- "$S" verify --model m.smm --threshold 0.5
expect 2 "verify with one image" -- "$S" verify --model m.smm --threshold 0.5 q0.png
expect 2 "calibrate on unlabelled images" -- "$S" gallery calibrate --gallery g.smg --model m.smm q0.png q3.pgm
has "labelled"
ls g.smg.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok "no temporary file left"

echo "test_gallery_cli: $fails failures"
[ "$fails" = 0 ]
