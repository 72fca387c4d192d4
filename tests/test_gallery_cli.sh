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
expect 0 "list shows the threshold" -- "$S" gallery list --gallery g.smg
has "calibrated for rule nearest"
expect 0 "open-set identify of classes 0-3 (3 not enrolled)" -- "$S" identify --gallery g.smg --model m.smm $DT
has "queries of classes not enrolled: 10, rejection rate"
has "TAR (accepted, right class)"
rej=$(awk '/rejection rate/ {print $NF}' out.txt)
if awk -v a="$rej" 'BEGIN { exit !(a >= 0.5) }'; then ok "rejection rate of class 3: $rej"; else bad "rejection rate $rej < 0.5"; cat out.txt; fi

# ---- verify ------------------------------------------------------------------------------------
expect 0 "verify two images of a class" -- "$S" verify --model m.smm --gallery g.smg q0.png q0b.png
has "^same"
expect 0 "verify images of two classes" -- "$S" verify --model m.smm --threshold 0.3 q0.png q3.pgm
has "^different"
expect 0 "verify an image against an enrolled class" -- "$S" verify --model m.smm --gallery g.smg --class 0 q0.png
has "same as class '0'"
expect 1 "verify against a missing class" -- "$S" verify --model m.smm --gallery g.smg --class nope q0.png
expect 2 "verify without a threshold" -- "$S" verify --model m.smm q0.png q0b.png

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
ls g.smg.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok "no temporary file left"

echo "test_gallery_cli: $fails failures"
[ "$fails" = 0 ]
