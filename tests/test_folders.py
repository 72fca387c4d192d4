"""test_folders.py - colour image folders as training and evaluation data (docs/data.md).

Writes 300 Fashion-MNIST training images (30 a class) and 200 test images as PNG folders, grey
and RGB-converted, and the same images as IDX files in the folders' order (labels = the
sub-folders' sorted ranks, a --class-names file of the folder names).  The pixel values are
exactly equal on both paths (8-bit grey, each scaled by 1/255 as the IDX reader does; an RGB
PNG of equal channels read with --channels 1 gives the same grey), so training with the same
seed and settings must give the same model file, byte for byte, and the same eval figures.
--stream (and --stream --cache) give the same bits as the folder decoded whole.  Then: the
normalisation a model stores is applied by eval without options; --size; the
augmentations give the same bits run to run; bad folders exit 3 naming the problem,
--skip-bad leaves a corrupt file out.  Needs numpy and PIL (python3-numpy, python3-pil) and the
Fashion-MNIST files; skipped (exit 0 with a note) without them."""
import gzip, json, os, shutil, struct, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simtest import check
import simtest

try:
    import numpy as np
    from PIL import Image
except ImportError:
    print("skip: numpy or PIL not available to", sys.executable)
    sys.exit(0)

SIMILE = sys.argv[1]
DATA = "/usr/share/datasets/fashion-mnist"
if not os.path.exists(DATA + "/train-images-idx3-ubyte.gz"):
    print("skip: no Fashion-MNIST in", DATA)
    sys.exit(0)
NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
SORTED = sorted(NAMES)


def run(*args, want=0):
    p = subprocess.run([SIMILE] + [str(a) for a in args], capture_output=True, text=True, errors="replace", timeout=240)
    if want is not None and p.returncode != want:
        print("command:", " ".join(str(a) for a in args), "\nrc", p.returncode, "\n", p.stdout[-2000:], p.stderr[-2000:])
    return p


def read_idx(split):
    x = np.frombuffer(gzip.open("%s/%s-images-idx3-ubyte.gz" % (DATA, split)).read()[16:], np.uint8).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open("%s/%s-labels-idx1-ubyte.gz" % (DATA, split)).read()[8:], np.uint8)
    return x, y


def write_set(tmp, tag, x, y, per):
    """tag-grey/ and tag-rgb/ folders of per images a class, and tag-img / tag-lab IDX files of
    the same images in the folders' order (class folders sorted by name, files by name)."""
    xs, ys = [], []
    for rank, name in enumerate(SORTED):
        k = NAMES.index(name)
        idx = np.nonzero(y == k)[0][:per]
        for kind in ("grey", "rgb"):
            os.makedirs("%s/%s-%s/%s" % (tmp, tag, kind, name))
        for j, i in enumerate(idx):
            im = Image.fromarray(x[i])
            im.save("%s/%s-grey/%s/%03d.png" % (tmp, tag, name, j))
            im.convert("RGB").save("%s/%s-rgb/%s/%03d.png" % (tmp, tag, name, j))
            xs.append(x[i])
            ys.append(rank)
    xs = np.stack(xs)
    with open("%s/%s-img" % (tmp, tag), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(xs), 28, 28) + xs.tobytes())
    with open("%s/%s-lab" % (tmp, tag), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(ys)) + bytes(ys))


def same_file(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def eval_json(model, *src):
    p = run("eval", "--model", model, "--json", "-", "--task", "both", "--threads", 2, *src)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"error": p.stderr}


def figures(j):
    return {k: j.get(k) for k in ("accuracy", "precision_at_1", "r_precision", "map_at_r", "nmi", "confusion")}


tmp = tempfile.mkdtemp(prefix="sm_folders_")
try:
    xtr, ytr = read_idx("train")
    xte, yte = read_idx("t10k")
    write_set(tmp, "train", xtr, ytr, 30)
    write_set(tmp, "test", xte, yte, 20)
    with open(tmp + "/names", "w") as f:
        f.write("\n".join(SORTED) + "\n")
    T = lambda *a: tmp + "/" + "".join(a)
    common = ["--model", "mlp", "--epochs", 2, "--batch", 50, "--seed", 3, "--quiet"]

    # 1. grey PNG folder and IDX, same seed and settings: the same model file, the same figures
    run("train", "--folder", T("train-grey"), "--out", T("g.smm"), *common)
    run("train", "--images", T("train-img"), "--labels", T("train-lab"), "--class-names", T("names"), "--out", T("i.smm"), *common)
    check(os.path.exists(T("g.smm")) and same_file(T("g.smm"), T("i.smm")), "grey PNG folder and IDX train to the same model bits")
    fg = figures(eval_json(T("g.smm"), "--folder", T("test-grey")))
    fi = figures(eval_json(T("i.smm"), "--images", T("test-img"), "--labels", T("test-lab")))
    check(fg["accuracy"] is not None and fg == fi, "eval on the grey test folder and its IDX give the same figures",
          "%s\n%s" % (fg, fi))
    check(fg["accuracy"] is not None and fg["accuracy"] > 0.4, "the model learnt something (accuracy %s > 0.4 on 10 classes)" % fg["accuracy"])
    # RGB-converted PNGs read as grey: the same bits again
    run("train", "--folder", T("train-rgb"), "--channels", 1, "--out", T("r1.smm"), *common)
    check(os.path.exists(T("r1.smm")) and same_file(T("r1.smm"), T("g.smm")), "RGB-converted PNGs with --channels 1 train to the same bits")
    # class-disjoint subsets: --classes on the folder as on IDX
    run("train", "--folder", T("train-grey"), "--classes", "0-4", "--out", T("gc.smm"), *common)
    run("train", "--images", T("train-img"), "--labels", T("train-lab"), "--class-names", T("names"), "--classes", "0-4",
        "--out", T("ic.smm"), *common)
    check(os.path.exists(T("gc.smm")) and same_file(T("gc.smm"), T("ic.smm")), "--classes 0-4: folder and IDX give the same bits")
    p = run("train", "--folder", T("train-grey"), "--classes", "0-4", "--val-classes", "5-9", "--loss", "multisimilarity",
            "--per-class", 10, "--out", T("gv.smm"), *common[:-1])
    check(p.returncode == 0 and "val  P@1" in p.stdout, "--val-classes 5-9 validates on other classes of the same folder", p.stdout[-500:])

    # 2. names and normalisation stored, printed, reapplied
    p = run("info", T("g.smm"))
    check("class names: 0 bag, 1 boot, 2 coat" in p.stdout, "info prints the folder names as class names", p.stdout)
    check("normalisation: mean 0.286 std 0.353" in p.stdout, "a grey folder defaults to Fashion-MNIST's normalisation", p.stdout)
    p = run("eval", "--model", T("g.smm"), "--folder", T("test-grey"))
    check("  bag " in p.stdout and "classes: 0 bag, 1 boot" in p.stdout, "eval's confusion matrix names the classes", p.stdout[:600])
    run("train", "--folder", T("train-rgb"), "--out", T("c.smm"), *common)
    p = run("info", T("c.smm"))
    check("input 28x28x3" in p.stdout, "an RGB folder gives a 3-channel model (the first image's colour)", p.stdout[:200])
    check("normalisation: mean 0.485,0.456,0.406 std 0.229,0.224,0.225" in p.stdout, "a colour folder defaults to ImageNet's normalisation",
          p.stdout)
    auto = figures(eval_json(T("c.smm"), "--folder", T("test-rgb")))
    given = figures(eval_json(T("c.smm"), "--folder", T("test-rgb"), "--normalize", "imagenet"))
    none = figures(eval_json(T("c.smm"), "--folder", T("test-rgb"), "--no-normalize"))
    check(auto["map_at_r"] is not None and auto == given, "eval applies the stored normalisation by itself", "%s\n%s" % (auto, given))
    check(none["map_at_r"] is not None and none != auto, "and --no-normalize changes the figures (the stored one is really applied)")
    run("train", "--folder", T("train-rgb"), "--mean", "0.3,0.3,0.3", "--std", "0.35", "--out", T("c2.smm"), *common)
    p = run("info", T("c2.smm"))
    check("normalisation: mean 0.3,0.3,0.3 std 0.35,0.35,0.35" in p.stdout, "--mean A,B,C --std S is stored per channel", p.stdout)
    p = run("train", "--folder", T("train-grey"), "--normalize", "imagenet", "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 2 and "3 mean" in p.stderr, "ImageNet's 3-channel normalisation on a grey folder: usage error (exit 2)", p.stderr)
    # --size: resized to the size asked, and eval resizes to the model's input by itself
    run("train", "--folder", T("train-grey"), "--size", "16x20", "--out", T("s.smm"), *common)
    p = run("info", T("s.smm"))
    check("input 16x20x1" in p.stdout, "--size 16x20 gives a 16x20 model", p.stdout[:200])
    j = eval_json(T("s.smm"), "--folder", T("test-grey"))
    check(j.get("accuracy") is not None, "eval resizes a folder to the model's input size", str(j)[:300])
    # embed: the folder and the IDX give the same embeddings (names and bits)
    run("embed", "--model", T("g.smm"), "--folder", T("test-grey"), "--out", T("ef.npy"))
    run("embed", "--model", T("g.smm"), "--images", T("test-img"), "--labels", T("test-lab"), "--out", T("ei.npy"))
    check(os.path.exists(T("ef.npy")) and same_file(T("ef.npy"), T("ei.npy")), "embed: folder and IDX give the same embeddings")

    # 3. augmentation: the same seed gives the same bits; not the bits of a run without it.  (The
    # trainer's BLAS sums depend on the thread count, so two runs compare at one count here;
    # test_augment.c checks that the augmented images themselves are the same for 1 and 4.)
    aug = ["--aug-crop", "scale=0.3-1,ratio=0.75-1.333", "--aug-jitter", "brightness=0.4,contrast=0.4,saturation=0.4",
           "--aug-erase", "p=0.5", "--aug-flip", "--aug-shift", 2]
    run("train", "--folder", T("train-rgb"), *aug, "--threads", 2, "--out", T("a1.smm"), *common)
    run("train", "--folder", T("train-rgb"), *aug, "--threads", 2, "--out", T("a2.smm"), *common)
    run("train", "--folder", T("train-rgb"), "--threads", 2, "--out", T("a0.smm"), *common)
    check(os.path.exists(T("a1.smm")) and same_file(T("a1.smm"), T("a2.smm")), "augmented training: the same seed, the same bits")
    check(os.path.exists(T("a1.smm")) and not same_file(T("a1.smm"), T("a0.smm")), "and other bits than without augmentation")
    # --stream (batches decoded on a worker thread while the network computes) and --cache: the
    # same bits as the folder decoded whole, augmentation included
    run("train", "--folder", T("train-rgb"), *aug, "--threads", 2, "--stream", "--out", T("as.smm"), *common)
    run("train", "--folder", T("train-rgb"), *aug, "--threads", 2, "--stream", "--cache", "--out", T("ac.smm"), *common)
    check(os.path.exists(T("as.smm")) and same_file(T("as.smm"), T("a1.smm")), "--stream trains to the bits of the folder decoded whole")
    check(os.path.exists(T("ac.smm")) and same_file(T("ac.smm"), T("a1.smm")), "--stream --cache too")
    run("train", "--folder", T("train-grey"), "--classes", "0-4", "--stream", "--out", T("gcs.smm"), *common)
    check(os.path.exists(T("gcs.smm")) and same_file(T("gcs.smm"), T("gc.smm")), "--stream --classes 0-4: the same bits")
    for bad_opt, what in ((["--aug-crop", "scale=0.5-2"], "crop scale above 1"), (["--aug-jitter", "hue=0.1"], "an unknown jitter key"),
                          (["--aug-erase", "p=1.5"], "an erasing probability above 1")):
        p = run("train", "--folder", T("train-grey"), *bad_opt, "--out", T("bad.smm"), *common, want=None)
        check(p.returncode == 2, "%s: usage error (exit 2)" % what, p.stderr)

    # 4. bad folders
    os.makedirs(T("empty"))
    p = run("train", "--folder", T("empty"), "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 3 and "no class sub-folder" in p.stderr, "an empty folder: exit 3, said", p.stderr)
    shutil.copytree(T("train-grey"), T("broken"))
    with open(T("broken/coat/000.png"), "r+b") as f:
        f.seek(40)
        f.write(b"\xff" * 64)
    p = run("train", "--folder", T("broken"), "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 3 and "broken/coat/000.png" in p.stderr, "a corrupt PNG: exit 3 and the file named", p.stderr)
    p = run("train", "--folder", T("broken"), "--skip-bad", "--out", T("sk.smm"), *common, want=None)
    check(p.returncode == 0 and "skipped: " in p.stderr and "broken/coat/000.png" in p.stderr and "skipped 1 of 300" in p.stderr,
          "--skip-bad: trains without it and names it", p.stderr)
    p = run("train", "--folder", T("broken"), "--stream", "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 3 and "broken/coat/000.png" in p.stderr, "--stream: a corrupt PNG met in training: exit 3, named", p.stderr)
    p = run("train", "--folder", T("broken"), "--stream", "--skip-bad", "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 2, "--stream --skip-bad: usage error (exit 2)", p.stderr)
    os.makedirs(T("one"))
    shutil.copytree(T("train-grey/bag"), T("one/bag"))
    p = run("train", "--folder", T("one"), "--out", T("bad.smm"), *common, want=None)
    check(p.returncode == 3 and "one class only" in p.stderr, "a folder of one class: exit 3, said", p.stderr)
    p = run("eval", "--model", T("g.smm"), "--folder", T("test-grey"), "--size", "16x16", want=None)
    check(p.returncode == 3 and "the model takes 28x28x1" in p.stderr, "eval --size other than the model's: exit 3", p.stderr)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_folders.py: %d failed" % simtest.fails)
sys.exit(1 if simtest.fails else 0)
