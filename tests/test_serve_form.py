#!/usr/bin/env python3
"""test_serve_form.py - what `simile serve` gained with issue 19's second part, end to end:
multipart/form-data uploads (curl -F and a urllib-built body) for enrolment, identify, verify
and calibrate, and their errors (no boundary, a torn body, unknown fields, a field given twice,
a bad number, an image over --max-image, a body over --max-body); enrolment times in the item
lists (JSON, and the CLI's list --items) that survive a checkpoint and a restart; a version-2
gallery file served (its items' times unknown); deletions followed by searches that answer as a
fresh gallery with the same items does; and identifications that complete while an enrolment
is held in its journal fsync (SIMILE_TEST_SLOW_FSYNC_MS, a test-only hook).
Usage: test_serve_form.py SIMILE_BINARY BUILD_DIR"""
import base64, json, os, random, shutil, signal, struct, subprocess, sys, tempfile, threading, time, zlib
import urllib.request, urllib.error
import simtest
from simtest import check, img, png, start_serve, write_idx

S = os.path.abspath(sys.argv[1])
random.seed(19)


def run(*args):
    return subprocess.run([S] + list(args), capture_output=True, text=True, timeout=120)


def req(port, method, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    if data is not None:
        r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def form(parts, boundary="simile-test-boundary-19"):
    """A multipart/form-data body: parts are (name, value bytes or str, filename or None)."""
    out = b""
    for name, value, filename in parts:
        if isinstance(value, str):
            value = value.encode()
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        if filename:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + value + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary


def post_form(port, path, parts, **kw):
    body, ctype = form(parts, **kw)
    return req(port, "POST", path, raw=body, ctype=ctype)


def curl(port, path, *fields):
    """curl -F each field; returns (HTTP status, JSON)."""
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}"] + sum([["-F", f] for f in fields], [])
                       + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True, timeout=60)
    body, _, code = r.stdout.rpartition("\n")
    try:
        return int(code), json.loads(body)
    except ValueError:
        return -1, r.stdout + r.stderr


def is_error(st, doc, want):
    return st == want and isinstance(doc, dict) and set(doc) == {"error"} and doc["error"].get("status") == want


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        return -1


def write_v2(path):
    """A version-2 gallery (before enrolment times) as that writer laid it out: dim 8, L2, no
    model; classes "old" and "gone" (removed); items 0 (old, source "old/0.png"), 1 (gone,
    removed), 2 (old)."""
    b = b"SMILEGAL" + struct.pack("<IIIIfIIQQ", 2, 8, 0, 0, float("inf"), 0, 2, 3, 3)
    b += struct.pack("<II", 0, 3) + b"old" + struct.pack("<II", 1, 4) + b"gone"
    b += struct.pack("<IIq", 0, 0, 0) + struct.pack("<IIq", 1, 1, 1) + struct.pack("<IIq", 0, 0, 2)
    for row in ([1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]):
        b += struct.pack("<8f", *row)
    b += struct.pack("<QQq", 2, 0, -1)
    b += struct.pack("<I", 9) + b"old/0.png" + struct.pack("<I", 0) + struct.pack("<I", 0)
    b += struct.pack("<I", zlib.crc32(b) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b)


def main():
    tmp = tempfile.mkdtemp(prefix="simile_form_")
    os.chdir(tmp)
    write_idx("train", 20, range(4))
    r = run("train", "--images", "train-img", "--labels", "train-lab", "--model", "fc 32 ; relu ; fc 8 ; l2norm",
            "--loss", "contrastive", "--epochs", "3", "--batch", "32", "--per-class", "8", "--threads", "1",
            "--quiet", "--out", "m.smm")
    check(r.returncode == 0, "train a tiny model")
    check(run("gallery", "create", "--out", "g.smg", "--model", "m.smm").returncode == 0, "create the gallery")
    for k in range(4):
        with open("q%d.png" % k, "wb") as f:
            f.write(png(img(k)))
    p, port = start_serve(S, "g.smg", "--model", "m.smm", "--max-body", "65536", "--max-image", "4096",
                          "--threads", "2", "--checkpoint-every", "3")
    check(p is not None, "start the server", str(port))
    if not p:
        return 1
    try:
        # ---- multipart enrolment: curl -F, file names as the default sources
        t0 = int(time.time()) * 1000
        st, doc = curl(port, "/api/v1/subjects/q0/items", "image=@q0.png", "image=@q0.png;filename=second.png")
        check(st == 201 and doc.get("ids") == [0, 1] and doc.get("created") is True, "curl -F: enrol two images", str(doc))
        st, doc = curl(port, "/api/v1/subjects/q1/items", "images=@q1.png", "source=camera 7")
        check(st == 201 and doc.get("ids") == [2], "curl -F: enrol with a source field", str(doc))
        st, doc = post_form(port, "/api/v1/subjects/q2/items", [("image", png(img(2)), "a.png"), ("image", png(img(2)), "b.png"),
                                                                ("source", "s-a", None), ("source", "s-b", None)])
        check(st == 201 and doc.get("ids") == [3, 4], "urllib multipart: enrol two images with two sources", str(doc))
        st, doc = req(port, "POST", "/api/v1/subjects/q3/items", {"images": [base64.b64encode(png(img(3))).decode()]})
        check(st == 201 and doc["ids"] == [5], "base64 JSON enrolment still works")
        t1 = (int(time.time()) + 1) * 1000
        st, doc = req(port, "GET", "/api/v1/items")
        items = doc.get("items", [])
        check(st == 200 and [i["source"] for i in items] == ["q0.png", "second.png", "camera 7", "s-a", "s-b", ""],
              "items list the sources (file names by default)", str(items))
        check(all(isinstance(i.get("enrolled_ms"), (int, float)) and t0 <= i["enrolled_ms"] <= t1 for i in items),
              "every item has its enrolment time (ms since the epoch, UTC)", str([i.get("enrolled_ms") for i in items]))
        check(all(isinstance(i.get("enrolled"), str) and i["enrolled"].endswith("Z")
                  and time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(i["enrolled_ms"] // 1000)) == i["enrolled"][:19]
                  for i in items), "and as ISO 8601 UTC, the same instant")
        times = {i["id"]: i["enrolled_ms"] for i in items}
        st, doc = req(port, "GET", "/api/v1/subjects/q2/items")
        check(st == 200 and [i["enrolled_ms"] for i in doc["items"]] == [times[3], times[4]], "a subject's items with times")
        # ---- multipart identify / verify / calibrate
        st, doc = curl(port, "/api/v1/identify", "image=@q0.png", "k=2")
        check(st == 200 and len(doc.get("matches", [])) == 2 and doc["matches"][0]["subject"] == "q0", "curl -F: identify", str(doc))
        st, doc = post_form(port, "/api/v1/identify", [("image", png(img(1)), "x.png"), ("threshold", "-1", None), ("rule", "nearest", None)])
        check(st == 200 and doc["decision"]["result"] == "unknown" and doc["decision"]["threshold_source"] == "request",
              "multipart identify with a threshold field", str(doc))
        st, doc = curl(port, "/api/v1/verify", "a=@q0.png", "subject=q0", "threshold=2")
        check(st == 200 and doc.get("mode") == "subject" and doc.get("decision") == "same", "curl -F: verify against a subject", str(doc))
        st, doc = curl(port, "/api/v1/verify", "a=@q0.png", "b=@q3.png")
        check(st == 200 and doc.get("mode") == "pair" and doc["distance"] > 0, "curl -F: verify a pair", str(doc))
        parts = [("image", png(img(k)), "c%d.png" % i) for i, k in enumerate((0, 1, 2, 3))] + \
                [("label", "q%d" % k, None) for k in (0, 1, 2, 3)] + [("dry_run", "true", None), ("far", "0.2", None)]
        st, doc = post_form(port, "/api/v1/calibrate", parts)
        check(st == 200 and doc.get("stored") is False and doc.get("genuine_pairs") == 4, "multipart calibrate (dry run)", str(doc))
        st, doc = post_form(port, "/api/v1/identify", [("embedding", "[0,0,0,0,0,0,0,1]", None), ("k", "1", None)])
        check(st == 200 and len(doc["matches"]) == 1, "multipart identify with an embedding field (JSON text)", str(doc))
        # ---- multipart errors
        body, _ = form([("image", png(img(0)), "x.png")])
        st, doc = req(port, "POST", "/api/v1/identify", raw=body, ctype="multipart/form-data")
        check(is_error(st, doc, 400), "multipart without a boundary: 400", str(doc))
        st, doc = post_form(port, "/api/v1/identify", [("picture", png(img(0)), "x.png")])
        check(is_error(st, doc, 400) and "picture" in doc["error"]["message"], "an unknown file field: 400", str(doc))
        st, doc = post_form(port, "/api/v1/identify", [("image", png(img(0)), "x.png"), ("colour", "red", None)])
        check(is_error(st, doc, 400) and "colour" in doc["error"]["message"], "an unknown field: 400")
        st, doc = post_form(port, "/api/v1/identify", [("image", png(img(0)), "x.png"), ("k", "two", None)])
        check(is_error(st, doc, 400) and "number" in doc["error"]["message"], "a field that is not a number: 400")
        st, doc = post_form(port, "/api/v1/identify", [("image", png(img(0)), "x.png"), ("image", png(img(0)), "y.png")])
        check(is_error(st, doc, 400) and "twice" in doc["error"]["message"], "two images for identify: 400")
        st, doc = post_form(port, "/api/v1/identify", [("image", b"GIF89a not an image", "x.gif")])
        check(is_error(st, doc, 400), "a corrupt image file: 400")
        big = png([random.randint(0, 255) for _ in range(80 * 80)], 80, 80)
        st, doc = post_form(port, "/api/v1/subjects/big/items", [("image", big, "big.png")])
        check(len(big) > 4096 and is_error(st, doc, 413), "an image file over --max-image: 413", str(doc))
        st, doc = post_form(port, "/api/v1/subjects/big/items", [("image", png(img(0)), "i%d.png" % i) for i in range(600)])
        check(is_error(st, doc, 413), "a form over --max-body: 413", str(doc))
        st, doc = curl(port, "/api/v1/subjects/big/items", "source=only a source")
        check(is_error(st, doc, 400), "a form with no image: 400", str(doc))
        st, doc = req(port, "GET", "/api/v1/subjects/big")
        check(is_error(st, doc, 404), "no subject was created by the refused forms")
    finally:
        rc = stop(p)
    check(rc == 0, "SIGTERM: exit 0 (checkpoint)")
    # ---- deletions, then searches as over a fresh gallery with the same items
    check(run("gallery", "create", "--out", "raw.smg", "--dim", "8").returncode == 0, "a gallery of raw embeddings")
    p, port = start_serve(S, "raw.smg")
    try:
        emb = [[random.gauss(0, 1) for _ in range(8)] for _ in range(30)]
        ids = []
        for i in range(0, 30, 3):
            st, doc = req(port, "POST", "/api/v1/subjects/e%d/items" % (i % 4), {"embeddings": emb[i:i + 3]})
            ids += doc["ids"]
        gone = set(ids[0::4]) | set(ids[5:8])
        for i in sorted(gone):
            st, _ = req(port, "DELETE", "/api/v1/items/%d" % i)
            check(st == 200, "delete item %d" % i)
        queries = [[random.gauss(0, 1) for _ in range(8)] for _ in range(6)] + [emb[1], emb[10]]
        got = [req(port, "POST", "/api/v1/identify", {"embedding": q, "k": 8})[1]["matches"] for q in queries]
        st, doc = req(port, "GET", "/api/v1/items")
        live = doc["items"]
        check(len(live) == 30 - len(gone), "the live items after the deletions")
    finally:
        stop(p)
    # a fresh gallery of raw embeddings with the same live items in the same order
    check(run("gallery", "create", "--out", "fresh.smg", "--dim", "8").returncode == 0, "a fresh gallery")
    p, port = start_serve(S, "fresh.smg")
    try:
        by_id = {ids[k]: emb[k] for k in range(30)}
        for it in live:
            req(port, "POST", "/api/v1/subjects/%s/items" % it["subject"], {"embeddings": [by_id[it["id"]]]})
        want = [req(port, "POST", "/api/v1/identify", {"embedding": q, "k": 8})[1]["matches"] for q in queries]
        fresh_ids = [i["id"] for i in req(port, "GET", "/api/v1/items")[1]["items"]]
    finally:
        stop(p)
    to_old = dict(zip(fresh_ids, [it["id"] for it in live]))
    same = all([(to_old[m["item_id"]], m["subject"]) for m in w] == [(m["item_id"], m["subject"]) for m in g_]
               and all(abs(a["distance"] - b["distance"]) < 1e-5 for a, b in zip(w, g_)) for w, g_ in zip(want, got))
    check(same, "after deletions, identify answers as a fresh gallery with the same items (ids, subjects, distances)")
    # ---- the times survive the checkpoint and a restart; the CLI lists them
    r = run("gallery", "list", "--gallery", "g.smg", "--items", "--json")
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    cli = {i["id"]: i.get("enrolled_ms") for i in doc.get("item_list", [])}
    check(all(cli.get(i) == t for i, t in times.items()), "the CLI lists the same times after the checkpoint", str(cli))
    with open("g.smg", "rb") as f:
        check(struct.unpack("<I", f.read(12)[8:12])[0] == 3, "the gallery file is version 3")
    r = run("gallery", "list", "--gallery", "g.smg", "--items")
    check(r.returncode == 0 and time.strftime("%Y-%m-%dT", time.gmtime(times[0] // 1000)) in r.stdout, "and in its text listing")
    p, port = start_serve(S, "g.smg", "--threads", "2")
    try:
        st, doc = req(port, "GET", "/api/v1/items")
        check(st == 200 and all({i["id"]: i["enrolled_ms"] for i in doc["items"]}.get(k) == t for k, t in times.items()),
              "after a restart the items have the same times")
    finally:
        stop(p)
    # ---- a version-2 file: served, its items' times unknown; new items get one
    write_v2("v2.smg")
    p, port = start_serve(S, "v2.smg")
    try:
        st, doc = req(port, "GET", "/api/v1/items")
        check(st == 200 and [(i["id"], i["source"], i["enrolled"], i["enrolled_ms"]) for i in doc["items"]]
              == [(0, "old/0.png", None, None), (2, "", None, None)], "a version-2 gallery: items with unknown times", str(doc))
        st, doc = req(port, "POST", "/api/v1/identify", {"embedding": [0, 0, 1, 0, 0, 0, 0, 0], "k": 1})
        check(st == 200 and doc["matches"][0]["item_id"] == 2, "and it answers identify")
        st, doc = req(port, "POST", "/api/v1/subjects/new/items", {"embeddings": [[0, 0, 0, 1, 0, 0, 0, 0]]})
        st, doc = req(port, "GET", "/api/v1/items")
        check(st == 200 and doc["items"][-1]["enrolled_ms"] and doc["items"][0]["enrolled_ms"] is None, "a new item gets a time")
    finally:
        check(stop(p) == 0, "SIGTERM: exit 0")
    with open("v2.smg", "rb") as f:
        check(struct.unpack("<I", f.read(12)[8:12])[0] == 3, "written back as version 3")
    # ---- searches go on while an enrolment is in its fsync (SIMILE_TEST_SLOW_FSYNC_MS)
    env = dict(os.environ, SIMILE_TEST_SLOW_FSYNC_MS="4000")
    p = subprocess.Popen([S, "serve", "--gallery", "v2.smg", "--listen", "127.0.0.1:0", "--threads", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    port = int(line.split("127.0.0.1:")[1].split()[0]) if "127.0.0.1:" in line else 0
    try:
        done = {}

        def enrol():
            done["enrol"] = req(port, "POST", "/api/v1/subjects/slow/items", {"embeddings": [[0, 0, 0, 0, 1, 0, 0, 0]]})
        t = threading.Thread(target=enrol)
        t.start()
        time.sleep(0.5)  # let the enrolment reach its fsync (not an assertion on time)
        answers = [req(port, "POST", "/api/v1/identify", {"embedding": [0, 0, 1, 0, 0, 0, 0, 0], "k": 1}) for _ in range(5)]
        listed = req(port, "GET", "/api/v1/subjects")
        during = t.is_alive()
        t.join(60)
        check(all(a[0] == 200 and a[1]["matches"][0]["item_id"] == 2 for a in answers) and listed[0] == 200,
              "5 identifications and a listing answered")
        check(during, "while the enrolment was still in its journal fsync")
        check(done.get("enrol", (0,))[0] == 201, "then the enrolment was acknowledged")
        st, doc = req(port, "POST", "/api/v1/identify", {"embedding": [0, 0, 0, 0, 1, 0, 0, 0], "k": 1})
        check(st == 200 and doc["matches"][0]["subject"] == "slow", "and is found")
    finally:
        p.kill()
        p.wait(30)
    p, port = start_serve(S, "v2.smg")
    try:
        st, doc = req(port, "GET", "/api/v1/subjects/slow")
        check(st == 200 and doc["items"] == 1, "after a SIGKILL the acknowledged enrolment is in the journal")
    finally:
        stop(p)
    os.chdir("/")
    shutil.rmtree(tmp, ignore_errors=True)
    print("test_serve_form: %d failures" % simtest.fails)
    return 1 if simtest.fails else 0


if __name__ == "__main__":
    sys.exit(main())
