"""Helpers for scripts/bench (stdlib only).

Everything here talks to processes on 127.0.0.1 only: redis-server instances the
benchmark starts itself in a temporary directory, and the ferry binary under test.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# ---------------------------------------------------------------------------
# small utilities


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require_tools(names):
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BenchError(
            "required tool(s) not found on PATH: " + ", ".join(missing)
            + " (install redis-server / redis-tools 7.x)"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, fn, timeout: float, interval: float = 0.02):
    """Poll fn() until it returns a truthy value; raise BenchError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except (OSError, RedisError) as e:  # not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def human(n: float, unit: str = "") -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suf}{unit}"
    return f"{n:.3g}{unit}"


def mib(nbytes) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1048576:.1f} MiB"


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


# ---------------------------------------------------------------------------
# minimal RESP2 client (pipelining capable)


class RedisError(Exception):
    pass


def encode_command(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        elif isinstance(a, float):
            a = repr(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0):
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RedisError("connection closed by server")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def _reply(self, raise_errors=True):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            err = RedisError(rest.decode("utf-8", "replace"))
            if raise_errors:
                raise err
            return err
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[: n + 2]
            return data
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            # errors nested in arrays are returned, not raised
            return [self._reply(raise_errors=False) for _ in range(n)]
        raise RedisError(f"unexpected reply {line[:60]!r}")

    def cmd(self, *args):
        self.sock.sendall(encode_command(*args))
        return self._reply()

    def pipeline(self, commands, raise_errors=True):
        if not commands:
            return []
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))
        return [self._reply(raise_errors=raise_errors) for _ in commands]

    def info(self, *sections) -> dict:
        raw = self.cmd("INFO", *sections)
        out = {}
        for line in raw.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out


def parse_kv(s: str) -> dict:
    """Parse 'ip=127.0.0.1,port=1,offset=5' style INFO values."""
    return dict(p.split("=", 1) for p in s.split(",") if "=" in p)


# ---------------------------------------------------------------------------
# process management (every child is recorded and killed at exit)


class Procs:
    """Registry of child processes; kills all of them on cleanup (finally, atexit, signals)."""

    def __init__(self):
        self.items = []  # (Popen, description)
        self._done = False
        atexit.register(self.cleanup)

    def add(self, p, desc):
        self.items.append((p, desc))
        return p

    def kill(self, p, sig=signal.SIGKILL):
        if p.returncode is not None:
            return
        try:
            # every child is started with start_new_session=True -> own process group
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self, p, timeout=10.0):
        if p.returncode is not None:
            return
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p, signal.SIGKILL)
            try:
                p.wait(timeout=5)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
        except ChildProcessError:
            pass

    def cleanup(self):
        for p, _ in reversed(self.items):
            self.kill(p, signal.SIGKILL)
        for p, _ in reversed(self.items):
            self.reap(p, timeout=5)
        self.items.clear()


class RedisServer:
    """A redis-server on a free loopback port, persistence off, DEBUG enabled."""

    def __init__(self, procs: Procs, tmpdir: str, name: str, extra=()):
        self.name = name
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.logfile = os.path.join(self.dir, "redis.log")
        last = None
        for _attempt in range(5):
            self.port = free_port()
            args = [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", self.dir,
                "--save", "",
                "--appendonly", "no",
                "--enable-debug-command", "yes",
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--logfile", self.logfile,
                *extra,
            ]
            self.proc = procs.add(
                subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True),
                f"redis-server {name}",
            )
            try:
                wait_until(f"redis-server '{name}' to answer PING on port {self.port}",
                           lambda: self.proc.poll() is None and self._ping(), timeout=10)
                return
            except BenchError as e:
                last = e
                procs.kill(self.proc)
                procs.reap(self.proc)
        raise BenchError(f"could not start redis-server '{name}': {last}; log:\n{tail(self.logfile)}")

    def _ping(self):
        c = Redis(self.port, timeout=2)
        try:
            return c.cmd("PING") == "PONG"
        finally:
            c.close()

    def client(self, timeout=60.0) -> Redis:
        return Redis(self.port, timeout=timeout)

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def stop(self, procs: Procs):
        procs.kill(self.proc, signal.SIGKILL)
        procs.reap(self.proc)


# ---------------------------------------------------------------------------
# dataset generation: RESP streamed into `redis-cli --pipe` (no per-key round trips)


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


class _Pool:
    """Concatenated pre-encoded RESP items with offsets: items [s, s+n) are one slice."""

    def __init__(self, items):
        self.offsets = [0]
        parts = []
        for it in items:
            parts.append(it)
            self.offsets.append(self.offsets[-1] + len(it))
        self.data = b"".join(parts)
        self.n = len(items)

    def take(self, start: int, count: int) -> bytes:
        return self.data[self.offsets[start]:self.offsets[start + count]]


MAX_ELEMS = 1000        # largest collection in the fill
POOL_ITEMS = 2 * MAX_ELEMS


def _collection_size(rnd) -> int:
    r = rnd()
    if r < 0.85:
        return 1 + int(rnd() * 8)          # 1..8    (listpack / intset)
    if r < 0.98:
        return 9 + int(rnd() * 24)         # 9..32   (listpack)
    if r < 0.998:
        return 33 + int(rnd() * 168)       # 33..200 (hashtable / skiplist above 128)
    return 201 + int(rnd() * (MAX_ELEMS - 200))  # 201..1000


def _string_value(rnd, blob: bytes) -> bytes:
    r = rnd()
    if r < 0.25:                                   # integer-encoded
        return b"%d" % int((rnd() - 0.3) * 2_000_000_000)
    if r < 0.70:
        n = 1 + int(rnd() * 32)
    elif r < 0.94:
        n = 33 + int(rnd() * 224)
    elif r < 0.995:
        n = 257 + int(rnd() * 768)
    else:
        n = 1025 + int(rnd() * 7168)
    if rnd() < 0.3:                                # compressible (LZF in the RDB)
        return (b"abcdefgh" * (n // 8 + 1))[:n]
    off = int(rnd() * (len(blob) - n))
    return blob[off:off + n]


def generate_fill(n_keys: int, seed: int, write, chunk_bytes: int = 1 << 20):
    """Generate the dataset as RESP commands, calling write(bytes) with ~1 MiB chunks.

    Mix: ~60% strings (ints, 1 B..8 KiB, some compressible), 10% hashes, 10% lists,
    10% sets (1/3 integer-only -> intset), 10% zsets, plus a few streams (some with a
    consumer group and pending entries). ~5% of keys get a TTL 30..365 days ahead.
    Returns (commands_sent, counts_by_type).
    """
    rng = random.Random(seed)
    rnd = rng.random
    alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    blob = rng.randbytes(1 << 20).translate(bytes(alnum[i % len(alnum)] for i in range(256)))

    def rstr(lo, hi):
        n = lo + int(rnd() * (hi - lo + 1))
        o = int(rnd() * (len(blob) - n))
        return blob[o:o + n]

    variants = 4
    hash_pools = [_Pool([_bulk(b"f%d" % j) + _bulk(rstr(1, 24) if rnd() < 0.7 else b"%d" % rng.randrange(10**6))
                         for j in range(POOL_ITEMS)]) for _ in range(variants)]
    list_pools = [_Pool([_bulk(rstr(1, 32)) for _ in range(POOL_ITEMS)]) for _ in range(variants)]
    set_pools = [_Pool([_bulk(b"m%d:%s" % (j, rstr(0, 12))) for j in range(POOL_ITEMS)]) for _ in range(variants)]
    intset_pools = [_Pool([_bulk(b"%d" % (j * 7919 + v * 13)) for j in range(POOL_ITEMS)]) for v in range(variants)]
    zset_pools = [_Pool([_bulk(repr(round(rng.uniform(-1e6, 1e6), 3)).encode()) + _bulk(b"z%d" % j)
                         for j in range(POOL_ITEMS)]) for _ in range(variants)]

    n_streams = max(3, n_keys // 100_000)
    n_rest = max(0, n_keys - n_streams)
    counts = {"string": 0, "hash": 0, "list": 0, "set": 0, "zset": 0, "stream": 0, "ttl": 0}
    buf = []
    size = 0
    ncmd = 0
    now = int(time.time())

    for i in range(n_rest):
        r = rnd()
        if r < 0.6:
            key = b"s:%d" % i
            val = _string_value(rnd, blob)
            cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val)
            counts["string"] += 1
        else:
            n = _collection_size(rnd)
            start = int(rnd() * (POOL_ITEMS - n))
            v = int(rnd() * variants)
            if r < 0.7:
                key = b"h:%d" % i
                cmd = b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * n, len(key), key) + hash_pools[v].take(start, n)
                counts["hash"] += 1
            elif r < 0.8:
                key = b"l:%d" % i
                cmd = b"*%d\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n" % (2 + n, len(key), key) + list_pools[v].take(start, n)
                counts["list"] += 1
            elif r < 0.9:
                key = b"t:%d" % i
                pool = intset_pools[v] if rnd() < 0.33 else set_pools[v]
                cmd = b"*%d\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n" % (2 + n, len(key), key) + pool.take(start, n)
                counts["set"] += 1
            else:
                key = b"z:%d" % i
                cmd = b"*%d\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n" % (2 + 2 * n, len(key), key) + zset_pools[v].take(start, n)
                counts["zset"] += 1
        buf.append(cmd)
        size += len(cmd)
        ncmd += 1
        if rnd() < 0.05:
            ttl = b"%d" % (now + 30 * 86400 + int(rnd() * 335 * 86400))
            buf.append(b"*3\r\n$8\r\nEXPIREAT\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(ttl), ttl))
            ncmd += 1
            counts["ttl"] += 1
        if size >= chunk_bytes:
            write(b"".join(buf))
            buf.clear()
            size = 0

    for j in range(n_streams):
        key = b"x:%d" % j
        for e in range(50 + int(rnd() * 450)):
            nf = 1 + int(rnd() * 3)
            fields = b"".join(_bulk(b"field%d" % f) + _bulk(rstr(1, 30)) for f in range(nf))
            buf.append(b"*%d\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n" % (3 + 2 * nf, len(key), key) + fields)
            ncmd += 1
        if j % 2 == 0:
            buf.append(encode_command("XGROUP", "CREATE", key, "g1", "0"))
            buf.append(encode_command("XREADGROUP", "GROUP", "g1", "c1", "COUNT", "10", "STREAMS", key, ">"))
            ncmd += 2
        counts["stream"] += 1
    if buf:
        write(b"".join(buf))
    return ncmd, counts


def fill(port: int, n_keys: int, seed: int, tmpdir: str, timeout: float):
    """Stream the generated dataset into redis-cli --pipe. Returns (seconds, counts)."""
    out_path = os.path.join(tmpdir, "fill-redis-cli.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe",
                              "--pipe-timeout", str(int(timeout))],
                             stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        t0 = time.monotonic()
        try:
            ncmd, counts = generate_fill(n_keys, seed, p.stdin.write)
            p.stdin.close()
            rc = p.wait(timeout=timeout)
        except BaseException:
            p.kill()
            p.wait()
            raise
        secs = time.monotonic() - t0
    text = open(out_path, encoding="utf-8", errors="replace").read()
    errors = replies = None
    for line in text.splitlines():
        if line.startswith("errors:"):
            parts = dict(x.strip().split(": ") for x in line.split(","))
            errors, replies = int(parts["errors"]), int(parts["replies"])
    if rc != 0 or errors is None or errors > 0 or replies != ncmd:
        raise BenchError(f"fill via redis-cli --pipe failed (exit {rc}, errors {errors}, "
                         f"replies {replies} of {ncmd}):\n{text[-2000:]}")
    return secs, ncmd, counts


# ---------------------------------------------------------------------------
# running a measured child (ferry) with exact peak-RSS attribution
#
# How peak RSS is measured, and why this is unambiguous:
# * RUSAGE_CHILDREN of the bench process would mix in every redis-server/redis-cli/
#   redis-benchmark it has reaped (ru_maxrss there is the max over all of them), so it
#   is not used.
# * ferry is started through a tiny wrapper (`python3 -S -I -c`), which fork()s and
#   exec()s ferry and is the only process that ever waits for it. The wrapper reports
#   os.wait4(ferry_pid).ru_maxrss -- the kernel's peak RSS of exactly that one child.
#   Caveat: Linux keeps, in that figure, the pre-exec high-water mark of the forked
#   copy of the wrapper (a few MiB). The wrapper therefore also reports its own VmHWM
#   as an upper bound of that floor.
# * In parallel the bench polls /proc/<ferry pid>/status VmHWM every 20 ms. VmHWM is
#   the high-water mark of ferry's own address space (fresh at exec, so it never
#   includes the wrapper); it can only miss growth in the last <20 ms before exit.
# * Reported peak = max(wait4 ru_maxrss, last VmHWM sample) when ru_maxrss exceeds the
#   wrapper floor (then it is ferry's own peak), otherwise the last VmHWM sample (ferry
#   stayed below the floor). All raw numbers are kept in the JSON.

_WRAPPER = r"""
import os, sys, json, signal
report, argv = sys.argv[1], sys.argv[2:]
def hwm(pid):
    try:
        for line in open('/proc/%d/status' % pid):
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    except OSError:
        pass
    return None
import time
floor_kb = hwm(os.getpid())
t_fork = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
def fwd(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, fwd)
signal.signal(signal.SIGINT, fwd)
with open(report + '.pid', 'w') as f:
    f.write('%d %d\n' % (pid, floor_kb or 0))
_, status, ru = os.wait4(pid, 0)
t_exit = time.monotonic()
code = os.waitstatus_to_exitcode(status)
with open(report + '.tmp', 'w') as f:
    json.dump({'pid': pid, 'exit': code, 'maxrss_kb': ru.ru_maxrss, 'floor_kb': floor_kb,
               'utime': ru.ru_utime, 'stime': ru.ru_stime, 't_fork': t_fork, 't_exit': t_exit}, f)
os.rename(report + '.tmp', report)
sys.exit(code if code >= 0 else 128 - code)
"""


class MeasuredProcess:
    def __init__(self, procs: Procs, argv, tmpdir: str, name: str, env=None):
        self.name = name
        self.report = os.path.join(tmpdir, f"{name}.rusage.json")
        self.stderr_path = os.path.join(tmpdir, f"{name}.stderr")
        self.stdout_path = os.path.join(tmpdir, f"{name}.stdout")
        self.hwm_kb = None
        self.samples_rss = []
        self._stop = threading.Event()
        self.t_start = time.monotonic()
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.wrapper = procs.add(
                subprocess.Popen([sys.executable, "-S", "-I", "-c", _WRAPPER, self.report, *argv],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 start_new_session=True, env=env),
                name)
        self.procs = procs
        self.pid = None
        self.floor_kb = None
        try:
            wait_until(f"{name} to start (pid file)", self._read_pid, timeout=10, interval=0.005)
        except BenchError:
            if self.wrapper.poll() is not None:
                raise BenchError(f"{name} exited immediately (code {self.wrapper.returncode}); stderr:\n"
                                 f"{tail(self.stderr_path)}")
            raise
        self._thread = threading.Thread(target=self._poll_hwm, daemon=True)
        self._thread.start()

    def _read_pid(self):
        try:
            with open(self.report + ".pid") as f:
                parts = f.read().split()
            if len(parts) == 2:
                self.pid, self.floor_kb = int(parts[0]), int(parts[1])
                return True
        except (OSError, ValueError):
            return False
        return False

    def _sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        v = int(line.split()[1])
                        if self.hwm_kb is None or v > self.hwm_kb:
                            self.hwm_kb = v
                    elif line.startswith("State:") and line.split()[1] == "Z":
                        return
        except (OSError, ValueError, IndexError):
            pass

    def _poll_hwm(self):
        while not self._stop.is_set() and self.wrapper.poll() is None:
            self._sample()
            time.sleep(0.02)

    def running(self):
        return self.wrapper.poll() is None

    def terminate(self):
        self._sample()
        if self.running():
            os.kill(self.wrapper.pid, signal.SIGTERM)  # wrapper forwards to ferry

    def wait(self, timeout: float, what: str):
        try:
            self.wrapper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._sample()
            self.procs.kill(self.wrapper)
            self.procs.reap(self.wrapper)
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}; {self.name} stderr tail:\n"
                             f"{tail(self.stderr_path)}")
        finally:
            self._stop.set()
        self.seconds = time.monotonic() - self.t_start
        return self.result()

    def result(self) -> dict:
        r = {"exit": self.wrapper.returncode, "vmhwm_kb": self.hwm_kb, "floor_kb": self.floor_kb}
        try:
            with open(self.report) as f:
                rep = json.load(f)
            r.update(exit=rep["exit"], maxrss_kb=rep["maxrss_kb"], floor_kb=rep["floor_kb"],
                     cpu_user_s=rep["utime"], cpu_sys_s=rep["stime"],
                     t_fork=rep["t_fork"], t_exit=rep["t_exit"],
                     seconds=rep["t_exit"] - rep["t_fork"])
        except (OSError, ValueError, KeyError):
            r["maxrss_kb"] = None
        mr, fl, hw = r.get("maxrss_kb"), r.get("floor_kb") or 0, r.get("vmhwm_kb")
        if mr is not None and mr > fl:
            # VmHWM can only be a lower bound of the same quantity; take the max of both
            r["peak_rss_bytes"] = max(mr, hw or 0) * 1024
            r["peak_rss_source"] = "wait4 ru_maxrss" if mr >= (hw or 0) else "VmHWM sample"
        elif hw is not None:
            r["peak_rss_bytes"] = hw * 1024
            r["peak_rss_source"] = "VmHWM (below wrapper floor)"
        else:
            r["peak_rss_bytes"] = None
            r["peak_rss_source"] = "unavailable"
        return r


class BgsaveWatch:
    """Polls a server's INFO persistence every 20 ms in a thread; records when an RDB
    child (BGSAVE for a full sync) started and finished, relative to t0."""

    def __init__(self, port: int, t0: float):
        self.t0 = t0
        self.started = self.finished = None
        self._stop = threading.Event()
        self._c = Redis(port, timeout=10)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                busy = self._c.info("persistence").get("rdb_bgsave_in_progress") == "1"
                now = time.monotonic() - self.t0
                if busy and self.started is None:
                    self.started = now
                if not busy and self.started is not None and self.finished is None:
                    self.finished = now
                time.sleep(0.02)
        except (OSError, RedisError):
            pass

    def stop(self) -> dict:
        self._stop.set()
        self._t.join(timeout=2)
        self._c.close()
        return {"rdb_child_started_s": self.started, "rdb_child_finished_s": self.finished}


def proc_cpu_s(pid):
    """User + system CPU seconds a live process has used so far (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def http_json(url: str, timeout: float = 1.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


# ---------------------------------------------------------------------------
# statistics


def series_summary(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None}
    s = sorted(vals)
    mid = len(s) // 2
    med = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    return {"min": s[0], "median": med, "max": s[-1]}


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    n = float(n)
    for div, suf in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suf}"
    return f"{int(n)}"
