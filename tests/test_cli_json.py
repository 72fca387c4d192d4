#!/usr/bin/env python3
"""test_cli_json.py - the --json outputs of train, eval, gallery list / calibrate, identify,
verify and classify, parsed with Python's json module: exactly one document on stdout, strings
that round-trip (class names with spaces, '/', quotes, backslashes and UTF-8; file names with
control characters and DEL; bytes that are not UTF-8 replaced by U+FFFD), numbers where the text output has them, null where no value applies;
and verify's distance, decision and exit status (0 same, 10 different, 0 without a threshold).
Usage: test_cli_json.py SIMILE [BUILD_DIR]"""
import json, os, random, shutil, subprocess, sys, tempfile
import simtest
from simtest import check, img, write_idx

S = os.path.realpath(sys.argv[1])
T = tempfile.mkdtemp(prefix="simile_json_")
def run(*args, want=0):
    p = subprocess.run([S] + list(args), cwd=T, capture_output=True)
    check(p.returncode == want, "%s: exit %d (want %d)" % (" ".join(args[:3]), p.returncode, want),
          p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    return p


def doc(*args, want=0):
    """Run with --json; stdout must be exactly one JSON document."""
    p = run(*args, want=want)
    try:
        d = json.loads(p.stdout.decode("utf-8"))  # raises on a second document or trailing text
    except Exception as e:  # noqa: BLE001 - report any parse failure as a test failure
        check(False, "%s: stdout is one JSON document (%s)" % (args[0], e), p.stdout.decode(errors="replace")[:2000])
        return None
    check(isinstance(d, dict), "%s %s: parsed one JSON object" % (args[0], args[1] if len(args) > 1 else ""))
    return d


# ---- tiny data (as test_gallery_cli.sh): class k lights quadrant k of an 8x8 image ----------
random.seed(11)


def pgm(path, px):
    with open(os.path.join(T, path), "wb") as f:
        f.write(b"P5\n8 8\n255\n" + bytes(px))


write_idx(os.path.join(T, "train"), 30, range(4))
write_idx(os.path.join(T, "test"), 10, range(4))
NAMES = ["Zoë Ångström", "a/b", 'quo"te \\ back', "日本"]
os.makedirs(os.path.join(T, "faces"))
for k, name in ((0, NAMES[0]), (2, NAMES[2])):  # "a/b" cannot be a folder name: --class below
    os.makedirs(os.path.join(T, "faces", name))
    for i in range(4):
        pgm(os.path.join("faces", name, "%d.pgm" % i), img(k))
pgm("q0.pgm", img(0))
pgm("q0b.pgm", img(0))
pgm("q3.pgm", img(3))
pgm("tab\tnew\nline.pgm", img(1))
D = ["--images", "train-img", "--labels", "train-lab"]
DT = ["--images", "test-img", "--labels", "test-lab"]

try:
    # ---- train / eval ------------------------------------------------------------------------
    # --val-split reads from --data, not --images: a usage error, and no document
    p = run("train", *D, "--model", "fc 32 ; relu ; fc 8 ; l2norm", "--loss", "contrastive", "--epochs", "2",
            "--batch", "32", "--per-class", "8", "--threads", "1", "--out", "m.smm", "--json", "--val-split", "x", want=2)
    check(p.stdout == b"", "a refused train --json writes nothing on stdout")
    t = doc("train", *D, "--model", "fc 32 ; relu ; fc 8 ; l2norm", "--loss", "contrastive", "--epochs", "3",
            "--batch", "32", "--per-class", "8", "--threads", "1", "--out", "m.smm", "--json")
    if t:
        check(t["command"] == "train" and t["epochs"] == 3 and len(t["epoch_log"]) == 3, "train: 3 epochs logged")
        check(all(isinstance(e["loss"], float) and e["loss"] > 0 for e in t["epoch_log"]), "train: a positive loss per epoch")
        check(t["images"] == 120 and t["classes"] == 4 and t["out"] == "m.smm", "train: images, classes, out")
        ver = subprocess.run([S, "--version"], capture_output=True, text=True).stdout
        core = [l.split(None, 1)[1] for l in ver.splitlines() if l.startswith("kernel ")]
        c = t.get("compute", {})
        check(core and c.get("blas_core") == core[0] and c.get("vector_isa") and c.get("cpu"),
              "train: the compute block names the CPU and the kernel --version names", repr(c))
        check((c.get("blas_warning") is None) == ("\nwarning " not in "\n" + ver),
              "train: blas_warning is set exactly when --version warns", repr(c.get("blas_warning")))
    # the normalisation used and the class names: IDX data (Fashion-MNIST's defaults, no names),
    # the same with --no-normalize, a folder (its sub-folders' names, in sorted order) with its own
    # per-channel values; each as `simile info` reads it back from the saved model
    if t:
        nz = t.get("normalization", {})
        info = run("info", "m.smm").stdout.decode()
        check(nz.get("kind") == "mean_std" and len(nz.get("mean", [])) == 1 and len(nz.get("std", [])) == 1
              and abs(nz["mean"][0] - 0.2860) < 1e-6 and abs(nz["std"][0] - 0.3530) < 1e-6,
              "train: IDX data's normalisation is Fashion-MNIST's mean/std", repr(nz))
        check("normalisation: mean %.4g std %.4g\n" % (nz["mean"][0], nz["std"][0]) in info,
              "train: the JSON's mean/std are the model's", info)
        check("class_names" not in t, "train: IDX data has no class names, and none are listed", repr(t.get("class_names")))
    t0 = doc("train", *D, "--model", "fc 8 ; l2norm", "--loss", "contrastive", "--epochs", "1", "--batch", "32",
             "--per-class", "8", "--threads", "1", "--out", "nn.smm", "--no-normalize", "--json")
    if t0:
        check(t0.get("normalization") == {"kind": "none"}, "train --no-normalize: kind none", repr(t0.get("normalization")))
    tf = doc("train", "--folder", "faces", "--channels", "3", "--mean", "0.25,0.5,0.75", "--std", "0.5,0.125,2",
             "--model", "fc 8 ; l2norm", "--loss", "contrastive", "--epochs", "1", "--batch", "8", "--per-class", "4",
             "--threads", "1", "--out", "f.smm", "--json")
    if tf:
        check(tf.get("normalization") == {"kind": "mean_std", "mean": [0.25, 0.5, 0.75], "std": [0.5, 0.125, 2]},
              "train --folder: the per-channel mean/std given", repr(tf.get("normalization")))
        check(tf.get("class_names") == sorted([NAMES[0], NAMES[2]]) and tf["classes"] == 2,
              "train --folder: class names round-trip in label order", repr(tf.get("class_names")))
        info = run("info", "f.smm").stdout.decode()
        check("normalisation: mean 0.25,0.5,0.75 std 0.5,0.125,2\n" in info, "train --folder: the JSON's mean/std are the model's", info)
        check("class names: 0 %s, 1 %s\n" % tuple(tf["class_names"]) in info, "train --folder: the JSON's names are the model's", info)
    doc("train", *D, "--model", "fc 32 ; relu ; fc 8", "--loss", "softmax", "--epochs", "4", "--batch", "32",
        "--threads", "1", "--quiet", "--out", "soft.smm", "--json")
    e = doc("eval", "--model", "m.smm", *DT, "--json", "-")
    if e:
        for k in ("precision_at_1", "r_precision", "map_at_r", "recall_at_1", "recall_at_2", "recall_at_4",
                  "recall_at_8", "nmi", "mean_intra", "mean_inter"):
            check(isinstance(e.get(k), (int, float)) and 0 <= e[k] <= 2, "eval: %s = %r" % (k, e.get(k)))
        check(e["recall_at_1"] <= e["recall_at_2"] <= e["recall_at_4"] <= e["recall_at_8"], "eval: Recall@K grows with K")
    p = run("eval", "--model", "m.smm", *DT, "--json", "ev.json")
    ef = json.load(open(os.path.join(T, "ev.json")))
    check(e is not None and ef["map_at_r"] == e["map_at_r"], "eval --json FILE holds the same figures as --json -")
    check(b"MAP@R" in p.stdout, "eval --json FILE still prints the text on stdout")
    ec = doc("eval", "--model", "soft.smm", *DT, "--json", "-")
    if ec:
        check(0 <= ec["accuracy"] <= 1 and sum(map(sum, ec["confusion"])) == 40, "eval: accuracy and a 40-image confusion matrix")

    # ---- gallery with awkward class names ---------------------------------------------------
    run("gallery", "create", "--out", "g.smg", "--model", "m.smm")
    run("gallery", "enrol", "--gallery", "g.smg", "--model", "m.smm", "--folder", "faces")
    run("gallery", "enrol", "--gallery", "g.smg", "--model", "m.smm", "--class", NAMES[3], "q3.pgm")
    pgm("q1.pgm", img(1))
    run("gallery", "enrol", "--gallery", "g.smg", "--model", "m.smm", "--class", NAMES[1], "q1.pgm", "q1.pgm", "q1.pgm", "q1.pgm")
    gl = doc("gallery", "list", "--gallery", "g.smg", "--items", "--json")
    if gl:
        names = [c["name"] for c in gl["classes"]]
        check(sorted(names) == sorted(NAMES), "gallery list: class names round-trip: %r" % names)
        check(gl["items"] == 13 and len(gl["item_list"]) == 13, "gallery list: 13 items listed")
        check(sorted({i["class"] for i in gl["item_list"]}) == sorted(NAMES), "gallery list --items: every class named")
        fs = [i["source"] for i in gl["item_list"] if i["class"] == NAMES[0]]
        check(fs == ["faces/%s/%d.pgm" % (NAMES[0], i) for i in range(4)], "gallery list --items: sources %r" % fs)
        check(gl["threshold"] is None and gl["threshold_rule"] is None, "gallery list: no threshold -> null")
        check(gl["metric"] == "l2" and gl["dimension"] == 8, "gallery list: metric and dimension")

    idf = doc("identify", "--gallery", "g.smg", "--model", "m.smm", "q0.pgm", "tab\tnew\nline.pgm", "--top", "13", "--json")
    if idf:
        q = idf["queries"]
        check([x["input"] for x in q] == ["q0.pgm", "tab\tnew\nline.pgm"], "identify: inputs with control characters round-trip")
        check(q[0]["decision"] == NAMES[0] and q[0]["best_class"] == NAMES[0], "identify: q0 -> %r" % q[0]["decision"])
        check(len(q[0]["top"]) == 13 and {m["class"] for m in q[0]["top"]} == set(NAMES), "identify: top-13 names every class")
        check(all(a["distance"] <= b["distance"] for a, b in zip(q[0]["top"], q[0]["top"][1:])), "identify: top sorted by distance")
        check(idf["threshold"] is None and "summary" not in idf, "identify: no threshold (null), no summary for unlabelled queries")

    # bytes that are not UTF-8 become U+FFFD; DEL is escaped and reads back
    with open(os.path.join(T.encode(), b"bad\xff.pgm"), "wb") as f:
        f.write(b"P5\n8 8\n255\n" + bytes(img(0)))
    pgm("del\x7f.pgm", img(0))
    pr = subprocess.run([S, "identify", "--gallery", "g.smg", "--model", "m.smm", "--json", b"bad\xff.pgm", "del\x7f.pgm"],
                        cwd=T, capture_output=True)
    check(pr.returncode == 0 and b"\\u007f" in pr.stdout and b"\xff" not in pr.stdout, "identify: DEL escaped, no raw invalid byte")
    try:
        ins = [x["input"] for x in json.loads(pr.stdout.decode("utf-8"))["queries"]]
    except Exception as e:  # noqa: BLE001
        ins = repr(e)
    check(ins == ["bad\ufffd.pgm", "del\x7f.pgm"], "identify: invalid UTF-8 -> U+FFFD, DEL round-trips: %r" % (ins,))

    # labelled queries: summary figures; calibrate
    run("gallery", "create", "--out", "n.smg", "--model", "m.smm")
    run("gallery", "enrol", "--gallery", "n.smg", "--model", "m.smm", *D, "--classes", "0-2", "--first-per-class", "5")
    cal = doc("gallery", "calibrate", "--gallery", "n.smg", "--model", "m.smm", *D, "--classes", "0-2",
              "--skip-per-class", "5", "--far", "0.05", "--json")
    if cal:
        check(cal["genuine_pairs"] == 75 and cal["impostor_pairs"] == 150, "calibrate: 75 genuine, 150 impostor pairs")
        check(isinstance(cal["threshold"], float) and cal["stored"] is True, "calibrate: threshold stored")
        check(0.5 <= cal["roc_auc"] <= 1 and cal["mode"] == "far" and abs(cal["target_far"] - 0.05) < 1e-7, "calibrate: AUC, mode %r" % cal)
        t = cal["tar_at_far"]
        check(isinstance(t["1e-2"], (int, float)) and t["1e-3"] is None and t["1e-4"] is None,
              "calibrate: TAR at FAR 1e-3, 1e-4 null with 150 impostor pairs: %r" % t)
        check(cal["target_far_supported"] is True, "calibrate: FAR 0.05 is supported by 150 impostor pairs")
    cal3 = doc("gallery", "calibrate", "--gallery", "n.smg", "--model", "m.smm", *D, "--classes", "0-2",
               "--skip-per-class", "5", "--far", "0.001", "--dry-run", "--json")
    if cal3:
        check(cal3["target_far_supported"] is False and cal3["stored"] is False, "calibrate: FAR 0.001 not supported by 150 pairs")
    gl2 = doc("gallery", "list", "--gallery", "n.smg", "--json")
    if gl2 and cal:
        check(gl2["threshold"] == cal["threshold"] and gl2["threshold_rule"] == "nearest", "list shows the calibrated threshold")
        check(gl2["items_at_calibration"] == 15 and gl2["changed_since_calibration"] is False, "list: calibrated on 15 items, unchanged")
    idl = doc("identify", "--gallery", "n.smg", "--model", "m.smm", *DT, "--json")
    if idl:
        sm = idl["summary"]
        check(sm["enrolled_class_queries"] == 30 and sm["unenrolled_class_queries"] == 10, "identify: 30 known, 10 unknown queries")
        check(len(idl["queries"]) == 40 and all("top" in x for x in idl["queries"]), "identify --json: every query with its top matches")
        unk = sum(1 for x in idl["queries"] if x["truth"] == "3" and x["decision"] is None)
        check(abs(sm["rejection_rate"] - unk / 10) < 1e-12, "identify: rejection rate = rejected class-3 queries / 10")

    # ---- verify: distance always, decision only with a threshold, exit 0 / 10 ---------------
    v = doc("verify", "--model", "m.smm", "q0.pgm", "q0b.pgm", "--json")
    if v:
        check(isinstance(v["distance"], float) and v["decision"] is None and v["threshold"] is None, "verify without a threshold: distance, no decision")
    far_d = v["distance"] if v else 0.0
    vd = doc("verify", "--model", "m.smm", "q0.pgm", "q3.pgm", "--json", "--threshold", "0.0001", want=10)
    if vd:
        check(vd["decision"] == "different" and vd["distance"] > 0.0001 and vd["threshold_source"] == "--threshold", "verify: different, exit 10")
    vs = doc("verify", "--model", "m.smm", "q0.pgm", "q0b.pgm", "--json", "--threshold", "100")
    if vs:
        check(vs["decision"] == "same" and vs["distance"] == far_d, "verify: same at threshold 100, the same distance")
    p = run("verify", "--model", "m.smm", "q0.pgm", "q3.pgm", "--gallery", "n.smg", "--json")
    vg = json.loads(p.stdout)
    check(vg["decision"] is None and vg["threshold"] is None, "verify: a pair never uses the gallery's identification threshold")
    check(b"not for a single pair" in p.stderr, "verify: says why the gallery threshold is not used")
    vc = doc("verify", "--model", "m.smm", "q0.pgm", "--gallery", "n.smg", "--class", "0", "--json")
    if vc and cal:
        check(vc["mode"] == "class" and vc["threshold_source"] == "gallery" and vc["threshold"] == cal["threshold"], "verify --class uses the calibrated threshold")
        check(vc["decision"] == ("same" if vc["distance"] <= vc["threshold"] else "different"), "verify --class: decision follows the distance")

    # after an enrolment the calibration is stale: list says so, identify warns (stderr only)
    run("gallery", "enrol", "--gallery", "n.smg", "--model", "m.smm", "--class", "0", "q0.pgm")
    gl3 = doc("gallery", "list", "--gallery", "n.smg", "--json")
    if gl3:
        check(gl3["changed_since_calibration"] is True and gl3["items"] == 16, "list: changed since calibration")
    p = run("identify", "--gallery", "n.smg", "--model", "m.smm", "q0.pgm", "--json")
    check(b"changed since its threshold was calibrated" in p.stderr and json.loads(p.stdout)["queries"][0]["decision"] == "0",
          "identify --json: the change warning on stderr, the document intact")

    # ---- classify -------------------------------------------------------------------------
    cl = doc("classify", "--model", "soft.smm", *DT, "--top", "2", "--json")
    if cl:
        check(len(cl["inputs"]) == 40 and all(len(x["top"]) == 2 for x in cl["inputs"]), "classify: 40 inputs, top 2 each")
        top1 = sum(1 for x in cl["inputs"] if x["top"][0]["class"] == x["label"]) / 40
        check(abs(cl["top1_accuracy"] - top1) < 1e-12, "classify: top-1 accuracy = share of inputs whose top class is the label")
        check(all(abs(sum(t["probability"] for t in x["top"])) <= 1.000001 for x in cl["inputs"]), "classify: probabilities")

    # classify a folder: accuracy only when the folder names are the model's class numbers
    for k in (0, 3):
        os.makedirs(os.path.join(T, "num", str(k)))
        for i in range(3):
            pgm(os.path.join("num", str(k), "%d.pgm" % i), img(k))
    cn = doc("classify", "--model", "soft.smm", "--folder", "num", "--json")
    if cn:
        check([x["label"] for x in cn["inputs"]] == [0, 0, 0, 3, 3, 3], "classify: folders '0' and '3' are classes 0 and 3 (not 0 and 1)")
        want = sum(1 for x in cn["inputs"] if x["top"][0]["class"] == x["label"]) / 6
        check(abs(cn["top1_accuracy"] - want) < 1e-12, "classify --folder: accuracy against the class numbers")
    p = run("classify", "--model", "soft.smm", "--folder", "faces", "--json")
    cf = json.loads(p.stdout)
    check("top1_accuracy" not in cf and all("label" not in x for x in cf["inputs"]), "classify: no accuracy for folder names that are not class numbers")
    check([x["class_name"] for x in cf["inputs"]][:1] == [NAMES[0]] and b"no accuracy" in p.stderr, "classify: says why there is no accuracy")
    p = run("classify", "--model", "soft.smm", "--folder", "faces")
    check(b"accuracy" not in p.stdout, "classify --folder (text): no accuracy line for names that are not class numbers")

    # ---- a refused command writes no half document -------------------------------------------
    p = run("identify", "--gallery", "g.smg", "--model", "m.smm", "--json", want=2)
    check(p.stdout == b"", "a refused identify --json writes nothing on stdout")
    p = run("identify", "--gallery", "nosuch.smg", "--model", "m.smm", "q0.pgm", "--json", want=3)
    check(p.stdout == b"", "a failed identify --json writes nothing on stdout")
finally:
    shutil.rmtree(T, ignore_errors=True)

print("test_cli_json: %d failures" % simtest.fails)
sys.exit(1 if simtest.fails else 0)
