"""simtest.py - helpers the Python tests share (imported by them, not run as a test): the check
counter, the tiny 8x8 quadrant images the CLI and service tests train on, IDX files of them,
and starting `simile serve` on a free loopback port."""
import random, struct, subprocess, threading, zlib

fails = 0


def check(cond, what, detail=""):
    """One line per check, 'ok: ...' or 'FAIL: ...' (then detail); failures counted in fails."""
    global fails
    if cond:
        print("ok: " + what)
    else:
        fails += 1
        print("FAIL: " + what + ("\n" + detail if detail else ""))


def img(k):
    """An 8x8 grey image of class k (0..3): dark noise, quadrant k bright.  Draws from the random
    module, so a test that seeds it gets the same images every run."""
    px = [random.randint(0, 40) for _ in range(64)]
    r0, c0 = (k // 2) * 4, (k % 2) * 4
    for r in range(r0, r0 + 4):
        for c in range(c0, c0 + 4):
            px[r * 8 + c] = random.randint(180, 255)
    return px


# An 8-bit grey PNG of w x h pixels px (row-major), stored uncompressed (zlib level 0).
def png(px, w=8, h=8):
    raw = b"".join(b"\0" + bytes(px[r * w:(r + 1) * w]) for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


def write_idx(prefix, n_per, classes):
    """PREFIX-img and PREFIX-lab: n_per rounds of one img(k) for each k of classes."""
    ims, labs = [], []
    for _ in range(n_per):
        for k in classes:
            ims.append(img(k))
            labs.append(k)
    with open(prefix + "-img", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(ims), 8, 8) + bytes(sum(ims, [])))
    with open(prefix + "-lab", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labs)) + bytes(labs))


def start_serve(simile, gallery, *extra, stderr=subprocess.PIPE):
    """Start `simile serve --gallery GALLERY --listen 127.0.0.1:0 EXTRA...` and read the port from
    its 'listening on http(s)://127.0.0.1:PORT' line (20 s at most).  Returns (process, port), or
    (None, why) when it did not start (the process is then killed)."""
    p = subprocess.Popen([simile, "serve", "--gallery", gallery, "--listen", "127.0.0.1:0"] + list(extra),
                         stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = [None]

    def reader():
        line[0] = p.stdout.readline()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(20)
    if not line[0] or not ("listening on http://127.0.0.1:" in line[0] or "listening on https://127.0.0.1:" in line[0]):
        p.kill()
        p.wait(10)
        return None, "%r %s" % (line[0], p.stderr.read() if p.stderr else "")
    return p, int(line[0].split("127.0.0.1:")[1].split()[0])
