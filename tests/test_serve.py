#!/usr/bin/env python3
"""test_serve.py - `simile serve` end to end: trains a tiny model on synthetic 8x8 IDX images,
creates a gallery, starts the server on a free loopback port (--listen 127.0.0.1:0) with API
keys, and drives every route (health, subjects list/get/rename/delete, items list/delete, enrol
of PNG images and of raw embeddings, identify, verify pair and subject, metrics) and every error
path (no key, bad key, read key writing, oversize body, oversize image, malformed JSON, corrupt
image, bad base64, unknown subject/item, bad names, wrong method, unknown route), calibration
(dry run, stored, then used by identify and subject verify), parallel
identifications, a second writer refused, a CLI reader seeing the journaled changes, SIGTERM
(exit 0, checkpoint), a restart that finds every change, and HTTPS (--tls-cert/--tls-key with a
self-signed certificate made by openssl, verified by the client).
Usage: test_serve.py SIMILE_BINARY BUILD_DIR"""
import base64, hashlib, json, os, random, shutil, signal, ssl, subprocess, sys, tempfile, threading
import urllib.request, urllib.error
import simtest
from simtest import check, img, png, start_serve, write_idx

S = os.path.abspath(sys.argv[1])
random.seed(11)


def b64(data):
    return base64.b64encode(data).decode()


def run(*args):
    return subprocess.run([S] + list(args), capture_output=True, text=True, timeout=120)


def start(gallery, *extra):
    p, port = start_serve(S, gallery, *extra)
    if not p:
        raise SystemExit("the server did not start: %s" % port)
    return p, port


class Client:
    def __init__(self, port, tls=None):
        self.base = "%s://127.0.0.1:%d" % ("https" if tls else "http", port)
        self.tls = tls

    def req(self, method, path, body=None, key=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        r = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            r.add_header("Content-Type", "application/json")
        if key:
            r.add_header("Authorization", "Bearer " + key)
        for k, v in (headers or {}).items():
            r.add_header(k, v)
        try:
            with urllib.request.urlopen(r, timeout=30, context=self.tls) as resp:
                text = resp.read().decode()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            status, ctype = e.code, e.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            return status, json.loads(text)
        return status, text


def is_error(status, doc, want):
    return (status == want and isinstance(doc, dict) and set(doc) == {"error"}
            and doc["error"].get("status") == want and isinstance(doc["error"].get("message"), str)
            and doc["error"]["message"] != "")


def main():
    tmp = tempfile.mkdtemp(prefix="simile_serve_")
    os.chdir(tmp)
    write_idx("train", 30, range(4))
    r = run("train", "--images", "train-img", "--labels", "train-lab", "--model", "fc 32 ; relu ; fc 8 ; l2norm",
            "--loss", "contrastive", "--epochs", "4", "--batch", "32", "--per-class", "8", "--threads", "1",
            "--quiet", "--out", "m.smm")
    check(r.returncode == 0, "train a tiny model")
    check(run("gallery", "create", "--out", "g.smg", "--model", "m.smm").returncode == 0, "create the gallery")
    keys = {"read": "reader-secret-1", "write": "writer-secret-2"}
    with open("keys.txt", "w") as f:
        f.write("# role sha256(key)\n")
        for role, k in keys.items():
            f.write("%s %s\n" % (role, hashlib.sha256(k.encode()).hexdigest()))
    check(subprocess.run(["grep", "-c", "secret", "keys.txt"], capture_output=True, text=True).stdout.strip() == "0",
          "the keys file holds no key in clear")
    RK, WK = keys["read"], keys["write"]
    p, port = start("g.smg", "--model", "m.smm", "--keys", "keys.txt", "--max-body", "65536", "--max-image", "4096",
                    "--threads", "2", "--checkpoint-every", "4")
    c = Client(port)
    try:
        st, doc = c.req("GET", "/api/v1/health")
        check(st == 200 and doc["status"] == "ok" and doc["items"] == 0 and doc["dimension"] == 8 and doc["images"],
              "health (no key needed)")
        # ---- keys and roles
        st, doc = c.req("GET", "/api/v1/subjects")
        check(is_error(st, doc, 401), "no key: 401 with a JSON error")
        st, doc = c.req("GET", "/api/v1/subjects", key="wrong")
        check(is_error(st, doc, 401), "bad key: 401")
        st, doc = c.req("GET", "/api/v1/subjects", headers={"X-API-Key": RK})
        check(st == 200 and doc == {"subjects": []}, "X-API-Key header, empty gallery")
        st, doc = c.req("POST", "/api/v1/subjects/q0/items", {"images": [b64(png(img(0)))]}, key=RK)
        check(is_error(st, doc, 403), "read key may not enrol: 403")
        # ---- enrol
        st, doc = c.req("POST", "/api/v1/subjects/q0/items",
                        {"images": [b64(png(img(0))) for _ in range(3)], "sources": ["a.png", "b.png", None]}, key=WK)
        check(st == 201 and doc["subject"] == "q0" and doc["created"] and doc["ids"] == [0, 1, 2] and doc["items"] == 3,
              "enrol 3 images: 201, ids 0..2")
        st, doc = c.req("POST", "/api/v1/subjects/q1/items", {"images": [b64(png(img(1))) for _ in range(2)]}, key=WK)
        check(st == 201 and doc["ids"] == [3, 4], "enrol a second subject")
        st, doc = c.req("POST", "/api/v1/subjects/q0/items", {"images": [b64(png(img(0)))]}, key=WK)
        check(st == 201 and not doc["created"] and doc["items"] == 4, "enrol into an existing subject")
        emb = [[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 2]]
        st, doc = c.req("POST", "/api/v1/subjects/raw%20one/items", {"embeddings": emb}, key=WK)
        check(st == 201 and doc["subject"] == "raw one" and len(doc["ids"]) == 2, "bulk enrol of raw embeddings (percent-encoded name)")
        st, doc = c.req("POST", "/api/v1/subjects/..%2F..%2Fetc%2Fpasswd/items", {"embeddings": emb[:1]}, key=WK)
        check(st == 201 and doc["subject"] == "../../etc/passwd", "a name with slashes is only a name")
        check(not os.path.exists(os.path.join(tmp, "..", "..", "etc", "passwd.journal")), "no file from a subject name")
        st, doc = c.req("DELETE", "/api/v1/subjects/..%2F..%2Fetc%2Fpasswd", key=WK)
        check(st == 200 and doc["items"] == 1, "and can be deleted by that name")
        # ---- enrol errors
        st, doc = c.req("POST", "/api/v1/subjects/bad%01name/items", {"embeddings": emb[:1]}, key=WK)
        check(is_error(st, doc, 400), "control character in a name: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"embeddings": [[1, 2, 3]]}, key=WK)
        check(is_error(st, doc, 400) and "dimension" in doc["error"]["message"], "wrong dimension: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"embeddings": [["a"] * 8]}, key=WK)
        check(is_error(st, doc, 400), "a string in an embedding: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"images": [b64(b"\x89PNG\r\n\x1a\nnot really")]}, key=WK)
        check(is_error(st, doc, 400) and "PNG" in doc["error"]["message"], "corrupt image: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"images": ["@@@ not base64 @@@"]}, key=WK)
        check(is_error(st, doc, 400) and "base64" in doc["error"]["message"], "bad base64: 400")
        big = png([random.randint(0, 255) for _ in range(80 * 80)], 80, 80)
        check(len(big) > 4096, "a large image (%d bytes)" % len(big))
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"images": [b64(big)]}, key=WK)
        check(is_error(st, doc, 413), "image over --max-image: 413")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", raw=b'{"embeddings": [' + b"[0,0,0,0,0,0,0,1]," * 5000 + b"[1]]}", key=WK)
        check(is_error(st, doc, 413), "body over --max-body: 413")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", raw=b'{"images": [', key=WK)
        check(is_error(st, doc, 400) and "JSON" in doc["error"]["message"], "malformed JSON: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", raw=b'[1, 2]', key=WK)
        check(is_error(st, doc, 400), "a JSON array as the body: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"images": []}, key=WK)
        check(is_error(st, doc, 400), "an empty enrolment: 400")
        st, doc = c.req("POST", "/api/v1/subjects/x/items", {"images": [b64(png(img(0)))], "embeddings": emb}, key=WK)
        check(is_error(st, doc, 400), "images and embeddings together: 400")
        st, doc = c.req("GET", "/api/v1/subjects/x", key=RK)
        check(is_error(st, doc, 404), "no subject was created by the refused enrolments")
        # ---- lists
        st, doc = c.req("GET", "/api/v1/subjects", key=RK)
        check(st == 200 and {s["name"]: s["items"] for s in doc["subjects"]} == {"q0": 4, "q1": 2, "raw one": 2},
              "list subjects with item counts")
        st, doc = c.req("GET", "/api/v1/subjects/q1", key=RK)
        check(st == 200 and doc == {"name": "q1", "items": 2}, "get a subject")
        st, doc = c.req("GET", "/api/v1/subjects/q0/items", key=RK)
        check(st == 200 and [i["source"] for i in doc["items"]] == ["a.png", "b.png", "", ""], "a subject's items with sources")
        st, doc = c.req("GET", "/api/v1/items", key=RK)
        check(st == 200 and len(doc["items"]) == 8 and doc["items"][3]["subject"] == "q1", "all items")
        st, doc = c.req("GET", "/api/v1/subjects/nobody/items", key=RK)
        check(is_error(st, doc, 404), "items of an unknown subject: 404")
        # ---- identify
        st, doc = c.req("POST", "/api/v1/identify", {"image": b64(png(img(0))), "k": 3}, key=RK)
        check(st == 200 and len(doc["matches"]) == 3 and doc["matches"][0]["subject"] == "q0"
              and doc["decision"]["result"] == "match" and doc["decision"]["subject"] == "q0"
              and doc["decision"]["threshold"] is None, "identify an image: top 3, match (no threshold)")
        d0 = doc["matches"][0]["distance"]
        check(all(doc["matches"][i]["distance"] <= doc["matches"][i + 1]["distance"] for i in range(2)), "matches sorted")
        st, doc = c.req("POST", "/api/v1/identify", {"image": b64(png(img(1))), "threshold": -1}, key=RK)
        check(st == 200 and doc["decision"]["result"] == "unknown" and doc["decision"]["subject"] is None
              and doc["decision"]["nearest_subject"] == "q1" and doc["decision"]["threshold_source"] == "request",
              "identify with a request threshold below every distance: unknown")
        st, doc = c.req("POST", "/api/v1/identify", {"embedding": [0, 0, 0, 0, 0, 0, 0, 5], "k": 1}, key=RK)
        check(st == 200 and doc["matches"][0]["subject"] == "raw one" and abs(doc["matches"][0]["distance"]) < 1e-5,
              "identify an embedding (L2-normalised)")
        for bad, what in [({"image": b64(png(img(0))), "k": 0}, "k = 0"), ({"image": b64(png(img(0))), "k": 1.5}, "k = 1.5"),
                          ({"k": 2}, "no query"), ({"image": 7}, "image not a string"),
                          ({"image": b64(b"GIF89a....")}, "a GIF"), ({"embedding": [1] * 8, "rule": "best"}, "unknown rule"),
                          ({"embedding": [1] * 8, "threshold": "x"}, "threshold not a number")]:
            st, doc = c.req("POST", "/api/v1/identify", bad, key=RK)
            check(is_error(st, doc, 400), "identify with %s: 400" % what)
        st, doc = c.req("GET", "/api/v1/identify", key=RK)
        check(is_error(st, doc, 405), "GET on identify: 405")
        # ---- verify
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}, "b": {"image": b64(png(img(0)))}}, key=RK)
        check(st == 200 and doc["mode"] == "pair" and doc["decision"] is None and doc["threshold"] is None and doc["distance"] >= 0,
              "verify a pair without a threshold: a score, no decision")
        same_d = doc["distance"]
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}, "b": {"image": b64(png(img(3)))},
                                                   "threshold": same_d + 0.05}, key=RK)
        check(st == 200 and doc["decision"] == "different" and doc["distance"] > same_d, "verify a different pair with a threshold")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}, "subject": "q0"}, key=RK)
        check(st == 200 and doc["mode"] == "subject" and doc["decision"] is None and doc["rule"] == "nearest",
              "verify against a subject, uncalibrated gallery: no decision")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}, "subject": "q0", "threshold": 2}, key=RK)
        check(st == 200 and doc["decision"] == "same" and doc["threshold_source"] == "request", "verify against a subject with a threshold")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}, "subject": "nobody"}, key=RK)
        check(is_error(st, doc, 404), "verify against an unknown subject: 404")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(0)))}}, key=RK)
        check(is_error(st, doc, 400), "verify with one query: 400")
        # ---- calibrate
        cal = {"images": [b64(png(img(k))) for k in (0, 0, 1, 1, 2, 2, 3, 3)],
               "labels": ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3"], "far": 0.1, "dry_run": True}
        st, doc = c.req("POST", "/api/v1/calibrate", cal, key=RK)
        check(st == 200 and doc["stored"] is False and doc["genuine_pairs"] == 4 and doc["impostor_pairs"] == 20
              and doc["far"] <= 0.1 and doc["rule"] == "nearest", "calibrate, dry run with a read key: 4 genuine, 20 impostor pairs")
        cal["dry_run"] = False
        st, doc = c.req("POST", "/api/v1/calibrate", cal, key=RK)
        check(is_error(st, doc, 403), "storing a threshold needs a write key: 403")
        st, doc = c.req("POST", "/api/v1/calibrate", dict(cal, labels=["q0"]), key=WK)
        check(is_error(st, doc, 400), "labels of the wrong length: 400")
        st, doc = c.req("POST", "/api/v1/calibrate", dict(cal, far=2), key=WK)
        check(is_error(st, doc, 400), "far outside [0, 1]: 400")
        st, doc = c.req("POST", "/api/v1/calibrate", cal, key=WK)
        check(st == 200 and doc["stored"] is True, "calibrate and store the threshold")
        thr = doc["threshold"]
        st, doc = c.req("POST", "/api/v1/identify", {"image": b64(png(img(0)))}, key=RK)
        check(st == 200 and doc["decision"]["threshold_source"] == "gallery" and abs(doc["decision"]["threshold"] - thr) < 1e-6
              and doc["decision"]["result"] == ("match" if doc["decision"]["distance"] <= thr else "unknown"),
              "identify uses the calibrated threshold")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(1)))}, "subject": "q1"}, key=RK)
        check(st == 200 and doc["threshold_source"] == "gallery" and doc["decision"] == ("same" if doc["distance"] <= thr else "different"),
              "verify against a subject uses the calibrated threshold")
        st, doc = c.req("POST", "/api/v1/verify", {"a": {"image": b64(png(img(1)))}, "b": {"image": b64(png(img(1)))}}, key=RK)
        check(st == 200 and doc["decision"] is None, "verify of a pair does not use it")
        # ---- parallel identifications
        res = []

        def worker():
            for _ in range(10):
                res.append(c.req("POST", "/api/v1/identify", {"image": b64(png(img(0))), "k": 2}, key=RK)[0])
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        check(res == [200] * 40, "40 identifications from 4 threads: all 200")
        # ---- rename, delete
        st, doc = c.req("PATCH", "/api/v1/subjects/q1", {"name": "quad one"}, key=WK)
        check(st == 200 and doc == {"name": "quad one", "previous": "q1"}, "rename a subject")
        st, doc = c.req("PATCH", "/api/v1/subjects/q0", {"name": "quad one"}, key=WK)
        check(is_error(st, doc, 409), "rename onto an existing name: 409")
        st, doc = c.req("PATCH", "/api/v1/subjects/q0", {"name": ""}, key=WK)
        check(is_error(st, doc, 400), "rename to an empty name: 400")
        st, doc = c.req("PATCH", "/api/v1/subjects/nobody", {"name": "z"}, key=WK)
        check(is_error(st, doc, 404), "rename an unknown subject: 404")
        st, doc = c.req("PATCH", "/api/v1/subjects/q0", {"name": "z"}, key=RK)
        check(is_error(st, doc, 403), "read key may not rename: 403")
        st, doc = c.req("DELETE", "/api/v1/items/2", key=WK)
        check(st == 200 and doc == {"removed": 2}, "delete an item")
        st, doc = c.req("DELETE", "/api/v1/items/2", key=WK)
        check(is_error(st, doc, 404), "delete it again: 404")
        st, doc = c.req("DELETE", "/api/v1/items/abc", key=WK)
        check(is_error(st, doc, 400), "delete item 'abc': 400")
        st, doc = c.req("DELETE", "/api/v1/subjects/raw%20one", key=WK)
        check(st == 200 and doc["items"] == 2, "delete a subject")
        st, doc = c.req("DELETE", "/api/v1/subjects/raw%20one", key=WK)
        check(is_error(st, doc, 404), "delete it again: 404")
        st, doc = c.req("GET", "/api/v1/nothing", key=RK)
        check(is_error(st, doc, 404), "unknown route: 404")
        st, doc = c.req("GET", "/", key=RK)
        check(is_error(st, doc, 404), "/: 404")
        st, doc = c.req("PUT", "/api/v1/subjects", {"x": 1}, key=WK)
        check(is_error(st, doc, 405), "PUT on subjects: 405")
        # ---- metrics
        st, text = c.req("GET", "/api/v1/metrics", key=RK)
        check(st == 200 and 'simile_requests_total{route="identify",status="200"}' in text
              and 'simile_requests_total{route="subject_items",status="413"} 2' in text
              and "simile_request_duration_seconds_bucket{le=\"+Inf\"}" in text
              and "simile_gallery_items 5" in text, "Prometheus metrics: requests by route and status, latency, size")
        st, doc = c.req("GET", "/api/v1/metrics")
        check(is_error(st, doc, 401), "metrics need a key")
        # ---- other processes
        r = run("gallery", "list", "--gallery", "g.smg", "--json")
        check(r.returncode == 0 and json.loads(r.stdout)["items"] == 5, "a CLI reader sees the journaled changes")
        p2 = subprocess.run([S, "serve", "--gallery", "g.smg", "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
        check(p2.returncode != 0 and "locked" in p2.stderr, "a second server on the gallery is refused")
        check(os.path.getsize("g.smg.journal") > 0, "changes are in the journal")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = -1
    check(rc == 0, "SIGTERM: exit 0")
    check(os.path.getsize("g.smg.journal") == 0, "shutdown checkpointed the journal into the gallery")
    r = run("gallery", "list", "--gallery", "g.smg", "--json", "--items")
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    check(doc.get("items") == 5, "the gallery file holds every change after the shutdown")
    # restart: the same state; no model, embeddings only
    p, port = start("g.smg")
    c = Client(port)
    try:
        st, doc = c.req("GET", "/api/v1/subjects")
        check(st == 200 and {s["name"]: s["items"] for s in doc["subjects"]} == {"q0": 3, "quad one": 2},
              "after a restart: the subjects as left (no keys: open)")
        st, doc = c.req("POST", "/api/v1/identify", {"image": b64(png(img(0)))})
        check(is_error(st, doc, 400) and "model" in doc["error"]["message"], "an image without --model: 400")
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    check(rc == 0, "SIGINT: exit 0")
    # HTTPS: a self-signed certificate for 127.0.0.1, verified by the client
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "make a self-signed certificate (openssl)")
    p, port = start("g.smg", "--tls-cert", "cert.pem", "--tls-key", "key.pem")
    try:
        ctx = ssl.create_default_context(cafile="cert.pem")
        c = Client(port, ctx)
        st, doc = c.req("POST", "/api/v1/subjects/tls/items", {"embeddings": [[0, 0, 0, 0, 0, 1, 0, 0]]})
        check(st == 201, "HTTPS: enrol")
        st, doc = c.req("POST", "/api/v1/identify", {"embedding": [0, 0, 0, 0, 0, 1, 0, 0], "k": 1})
        check(st == 200 and doc["matches"][0]["subject"] == "tls", "HTTPS: identify")
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/api/v1/health" % port, timeout=10)
            plain = "answered"
        except Exception as e:  # the server speaks TLS only
            plain = type(e).__name__
        check(plain != "answered", "plain HTTP to the HTTPS port is not answered (%s)" % plain)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    check(rc == 0, "HTTPS server: SIGTERM, exit 0")
    r = run("serve", "--gallery", "g.smg", "--tls-cert", "cert.pem")
    check(r.returncode == 2, "--tls-cert without --tls-key: usage error")
    r = run("serve", "--gallery", "g.smg", "--listen", "0.0.0.0")
    check(r.returncode == 2, "a --listen without a port: usage error")
    r = run("serve", "--gallery", "missing.smg", "--listen", "127.0.0.1:0")
    check(r.returncode != 0 and "missing.smg" in r.stderr, "a missing gallery is refused")
    os.chdir("/")
    shutil.rmtree(tmp, ignore_errors=True)
    print("test_serve: %d failures" % simtest.fails)
    return 1 if simtest.fails else 0


if __name__ == "__main__":
    sys.exit(main())
