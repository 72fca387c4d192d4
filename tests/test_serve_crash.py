#!/usr/bin/env python3
"""test_serve_crash.py - durability of `simile serve` under SIGKILL: a client streams enrolments
(raw embeddings, 1 to 3 per request, with a source name per item) while the server is killed
with SIGKILL at random moments, 20 times, with a checkpoint every 7 changes so that kills also
land in checkpoints.  After each kill the gallery must open (valid checksums: `gallery list`
succeeds), every acknowledged enrolment must be present with its subject and source, no item
may appear that was not sent, and the restarted server must serve the same items.  Bounded: 20
rounds of at most 0.5 s of streaming each, about 20-40 s in all.
Usage: test_serve_crash.py SIMILE_BINARY BUILD_DIR"""
import json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time
import urllib.request, urllib.error
import simtest
from simtest import check, start_serve

S = os.path.abspath(sys.argv[1])
ROUNDS = 20
def start(gallery):
    p, port = start_serve(S, gallery, "--checkpoint-every", "7", "--threads", "2", stderr=subprocess.DEVNULL)
    return (p, port) if p else (None, 0)


def post(port, path, body):
    r = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(), method="POST")
    r.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(r, timeout=10) as resp:
        return resp.status, json.loads(resp.read().decode())


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as resp:
        return json.loads(resp.read().decode())


def main():
    tmp = tempfile.mkdtemp(prefix="simile_crash_")
    os.chdir(tmp)
    r = subprocess.run([S, "gallery", "create", "--out", "g.smg", "--dim", "8"], capture_output=True, text=True)
    check(r.returncode == 0, "create a gallery of raw embeddings")
    rng = random.Random(5)
    acked = {}   # source -> subject, for every acknowledged item
    sent = set()  # every source ever sent
    serial = [0]
    t_start = time.time()
    for rnd in range(ROUNDS):
        p, port = start("g.smg")
        if not p:
            check(False, "round %d: the server restarts after a kill" % rnd)
            break
        # the restarted server serves every acknowledged item
        items = get(port, "/api/v1/items")["items"]
        have = {i["source"]: i["subject"] for i in items}
        missing = [s for s in acked if have.get(s) != acked[s]]
        check(not missing, "round %d: the server has every acknowledged item (%d)" % (rnd, len(acked)))
        stop = threading.Event()

        def stream():
            while not stop.is_set():
                n = rng.randint(1, 3)
                subject = "s%d" % rng.randint(0, 4)
                srcs = []
                for _ in range(n):
                    serial[0] += 1
                    srcs.append("item-%d" % serial[0])
                sent.update(srcs)
                emb = [[rng.uniform(-1, 1) for _ in range(8)] for _ in range(n)]
                try:
                    st, doc = post(port, "/api/v1/subjects/%s/items" % subject, {"embeddings": emb, "sources": srcs})
                except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                    return  # killed: this one is not acknowledged
                if st == 201 and len(doc["ids"]) == n:
                    for s in srcs:
                        acked[s] = subject
        t = threading.Thread(target=stream)
        t.start()
        time.sleep(rng.uniform(0.02, 0.5))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        stop.set()
        t.join(20)
        # the file opens (both checksums) and holds every acknowledged item, nothing never sent
        r = subprocess.run([S, "gallery", "list", "--gallery", "g.smg", "--json", "--items"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            check(False, "round %d: the gallery opens after SIGKILL: %s" % (rnd, r.stderr.strip()))
            continue
        doc = json.loads(r.stdout)
        have = {i["source"]: i["class"] for i in doc["item_list"]}
        missing = [s for s in acked if have.get(s) != acked[s]]
        extra = [s for s in have if s not in sent]
        check(not missing and not extra and len(have) == len(doc["item_list"]),
              "round %d: after SIGKILL the gallery opens with all %d acknowledged items (%d on disk)"
              % (rnd, len(acked), len(have)))
        if missing:
            print("  missing:", missing[:5])
    check(len(acked) > 50, "enough enrolments were acknowledged (%d)" % len(acked))
    # a clean stop at the end: checkpoint, empty journal, same items
    p, port = start("g.smg")
    if p:
        p.send_signal(signal.SIGTERM)
        check(p.wait(30) == 0, "a clean stop after the crashes")
        # the journal may keep a torn record of the last kill (no complete one): set it aside
        # and read the gallery file alone
        jsize = os.path.getsize("g.smg.journal")
        os.rename("g.smg.journal", "journal.aside")
        r = subprocess.run([S, "gallery", "list", "--gallery", "g.smg", "--json", "--items"], capture_output=True, text=True)
        have = {i["source"]: i["class"] for i in json.loads(r.stdout)["item_list"]} if r.returncode == 0 else {}
        missing = [s for s in acked if have.get(s) != acked[s]]
        check(r.returncode == 0 and not missing,
              "after the checkpoint the gallery file alone holds every acknowledged item (journal left: %d bytes)" % jsize)
        if missing:
            print("  missing:", missing[:5], r.stderr)
    print("test_serve_crash: %d rounds in %.1f s, %d acknowledged items, %d failures"
          % (ROUNDS, time.time() - t_start, len(acked), simtest.fails))
    os.chdir("/")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if simtest.fails else 0


if __name__ == "__main__":
    sys.exit(main())
