"""benchlib.py - what the side-by-side benchmark scripts share: running a command under
/usr/bin/time -v for its peak resident memory, and where the data lives."""
import re, subprocess, sys

DATA = "/usr/share/datasets/fashion-mnist"


def peak_mib(time_stderr):
    """Peak resident memory in MiB from /usr/bin/time -v's report, or None if it is missing."""
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_stderr)
    return int(m.group(1)) / 1024 if m else None


def timed(cmd, env=None):
    """Run cmd under /usr/bin/time -v; return (stdout, stderr, peak RSS in MiB); exit on failure."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit("command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    return p.stdout, p.stderr, peak_mib(p.stderr)
