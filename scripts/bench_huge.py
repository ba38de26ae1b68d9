"""The huge-values case of scripts/bench (--huge-values): ferry's peak RSS with values of
--huge-mib MiB (default 256), beside Redis's own replication of the same data.

Source (repl-diskless-sync no) holds, before the sync:
  huge:lzf    a text string the snapshot stores LZF-compressed (about 2:1, so far above
              the big-value threshold: decompressed by ferry a chunk at a time),
  huge:plain  random bytes (LZF cannot compress them: stored plain),
  huge:list   a list of 1 MiB text elements adding up to the same size,
  huge:listelem  one text element of that size between two small ones (a listpack node of one
              entry, stored LZF-compressed: read entry by entry, the entry in pieces),
  huge:hash   one field whose value is random bytes of that size, beside a small one,
  small       one small key;
then, once both copies are in their incremental phase, in the command stream, one after
the other:
  huge:stream one SET of a text value of the same size with EX (propagated as SET ... PXAT),
  huge:rpush  one RPUSH of that value,
  huge:hset   one HSET huge:hset f <that value>.
A native replica (REPLICAOF) and ferry (sync, into its own target) run at the same time;
each one's snapshot time and the time until each stream write is visible are printed, with ferry's
peak RSS after the snapshot and overall. Values are compared key by key with DEBUG
DIGEST-VALUE and STRLEN/LLEN.
"""

import os
import random
import subprocess
import time

import bench_lib as bl
from bench_lib import BenchError, log

KEYS = ["huge:lzf", "huge:plain", "huge:list", "huge:listelem", "huge:hash", "small",
        "huge:stream", "huge:rpush", "huge:hset"]
TARGET_RSS = 64 * 1048576


def text_block(rnd, n):
    words = [b"ferry", b"redis", b"stream", b"value", b"huge", b"chunk", b"window", b"literal",
             b"offset", b"replica", b"master", b"append", b"snapshot", b"bounded", b"memory",
             b"piece"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words)
        out += b" .,;:!?-"[rnd.randrange(8):][:1]
    return bytes(out[:n])


def fill(src, mib, rnd):
    blocks = [text_block(rnd, 1 << 20) for _ in range(8)]
    for i in range(mib):
        src.pipeline([
            ("APPEND", "huge:lzf", blocks[i % 8]),
            ("APPEND", "huge:plain", os.urandom(1 << 20)),
            ("RPUSH", "huge:list", blocks[(i * 3 + 1) % 8]),
        ])
    # One element of the full size, sent whole (the server's proto-max-bulk-len is 512 MiB).
    elem = b"".join(blocks[(i * 7 + 3) % 8] for i in range(mib))
    src.cmd("RPUSH", "huge:listelem", "a", elem, "z")
    del elem
    elem = os.urandom(mib << 20)
    src.cmd("HSET", "huge:hash", "f", elem, "g", "small")
    del elem
    src.cmd("SET", "small", "x")
    return blocks


def digests(c):
    present = [k for k in KEYS if c.cmd("EXISTS", k) == 1]
    d = c.cmd("DEBUG", "DIGEST-VALUE", *present) if present else []
    return dict(zip(present, d))


def status(port):
    try:
        return bl.http_json(f"http://127.0.0.1:{port}/status", timeout=0.5)
    except (OSError, ValueError):
        return None


def run(args, ferry, quiet=False):
    """The case once; quiet: its report goes to the log (stderr), for scripts/bench's rounds."""
    procs = bl.Procs()
    import tempfile
    import shutil
    tmp = tempfile.mkdtemp(prefix="ferry-bench-huge-")
    res = {"mib": args.huge_mib, "ferry": ferry}
    errors = []
    try:
        source = bl.RedisServer(procs, tmp, "source", extra=[
            "--repl-diskless-sync", "no",
            # One write of the value's size goes to each replica at once: above the default
            # 256 MiB hard limit the source drops its replicas (native and ferry alike).
            "--client-output-buffer-limit", "replica 0 0 0",
            "--repl-backlog-size", f"{2 * args.huge_mib + 64}mb",
        ])
        src = source.client(timeout=600)
        t = time.monotonic()
        blocks = fill(src, args.huge_mib, random.Random(args.seed))
        src.cmd("SAVE")
        rdb = os.path.getsize(os.path.join(source.dir, "dump.rdb"))
        log(f"huge: source filled in {time.monotonic() - t:.1f}s; used_memory "
            f"{bl.mib(int(src.info('memory')['used_memory']))}, RDB {bl.mib(rdb)}")
        res["rdb_bytes"] = rdb

        # native replica and ferry, started together
        native = bl.RedisServer(procs, tmp, "native")
        nc = native.client(timeout=600)
        target = bl.RedisServer(procs, tmp, "ferry-target")
        tc = target.client(timeout=600)
        sport = bl.free_port()
        argv = [ferry, "sync", "--source", source.url(), "--target", target.url(),
                "--status-addr", f"127.0.0.1:{sport}", "--data-dir", os.path.join(tmp, "ferry-data")]
        log(f"huge: {' '.join(argv)}")
        t0 = time.monotonic()
        nc.cmd("REPLICAOF", "127.0.0.1", str(source.port))
        mp = bl.MeasuredProcess(procs, argv, tmp, "ferry-huge")
        native_loaded = ferry_loaded = None
        deadline = t0 + args.timeout
        while native_loaded is None or ferry_loaded is None:
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"snapshot not done after {args.timeout:.0f}s; ferry stderr:\n"
                                 f"{bl.tail(mp.stderr_path)}")
            if not mp.running():
                raise BenchError(f"ferry exited during the snapshot; stderr:\n{bl.tail(mp.stderr_path)}")
            if native_loaded is None:
                info = nc.info("replication", "persistence")
                if info.get("master_link_status") == "up" and info.get("loading") == "0":
                    native_loaded = now - t0
                    log(f"huge: native replica loaded after {native_loaded:.1f}s")
            if ferry_loaded is None:
                st = status(sport)
                if st and st.get("phase") == "incremental":
                    ferry_loaded = now - t0
                    mp._sample()
                    res["ferry_peak_rss_snapshot_bytes"] = (mp.hwm_kb or 0) * 1024
                    log(f"huge: ferry snapshot done after {ferry_loaded:.1f}s, peak RSS so far "
                        f"{bl.mib(res['ferry_peak_rss_snapshot_bytes'])}")
            time.sleep(0.05)
        res["native_snapshot_s"] = native_loaded
        res["ferry_snapshot_s"] = ferry_loaded

        # Huge writes in the command stream, one after the other: a SET with an expiry (Redis
        # 7 propagates it as SET ... PXAT: options after the value), then an RPUSH and an
        # HSET whose huge argument ferry passes through a temporary key and a script.
        want = args.huge_mib << 20
        value = b"".join(blocks[(i * 5 + 2) % 8] for i in range(args.huge_mib))
        writes = [
            ("set", ("SET", "huge:stream", value, "EX", "36000"),
             lambda c: c.cmd("STRLEN", "huge:stream") == want),
            ("rpush", ("RPUSH", "huge:rpush", value),
             lambda c: c.cmd("LLEN", "huge:rpush") == 1),
            ("hset", ("HSET", "huge:hset", "f", value),
             lambda c: c.cmd("HSTRLEN", "huge:hset", "f") == want),
        ]
        for name, command, arrived in writes:
            t1 = time.monotonic()
            src.cmd(*command)
            n_at = f_at = None
            while n_at is None or f_at is None:
                now = time.monotonic()
                if now > t1 + args.timeout:
                    raise BenchError(f"the stream {name} did not arrive after {args.timeout:.0f}s; "
                                     f"ferry stderr:\n{bl.tail(mp.stderr_path)}")
                if not mp.running():
                    raise BenchError(f"ferry exited in the stream phase; stderr:\n{bl.tail(mp.stderr_path)}")
                if n_at is None and arrived(nc):
                    n_at = now - t1
                if f_at is None and arrived(tc):
                    f_at = now - t1
                time.sleep(0.05)
            res[f"native_stream_{name}_s"] = n_at
            res[f"ferry_stream_{name}_s"] = f_at
            mp._sample()
            res[f"ferry_peak_rss_{name}_bytes"] = (mp.hwm_kb or 0) * 1024
            log(f"huge: stream {name} visible on native after {n_at:.2f}s, on ferry's target after "
                f"{f_at:.2f}s; ferry peak RSS so far {bl.mib(res[f'ferry_peak_rss_{name}_bytes'])}")
        del value, writes

        ds, dn, dt = digests(src), digests(nc), digests(tc)
        res["native_equal"] = dn == ds
        res["ferry_equal"] = dt == ds
        for name, d in (("native", dn), ("ferry", dt)):
            for k in KEYS:
                if d.get(k) != ds.get(k):
                    errors.append(f"{name}: {k} differs from the source")
        mp.terminate()
        r = mp.wait(timeout=60, what="ferry to stop")
        res.update({"ferry_" + k: v for k, v in r.items()})
        res["ferry_peak_rss_bytes"] = r.get("peak_rss_bytes")
    except (BenchError, bl.RedisError, OSError) as exc:
        errors.append(str(exc))
        log(f"ERROR: {exc}")
    finally:
        procs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    res["errors"] = errors
    if quiet:
        for line in report(res).splitlines():
            log(line)
    else:
        print(report(res), flush=True)
    return res


def report(r):
    def s(v):
        return f"{v:.1f}s" if isinstance(v, (int, float)) else "n/a"

    peak = r.get("ferry_peak_rss_bytes")
    lines = [
        f"== huge values: {r['mib']} MiB each (lzf text, random, list of 1 MiB items, one list "
        f"item, one hash value; then a SET, an RPUSH and an HSET in the stream); ferry {r['ferry']}",
        f"RDB {bl.mib(r.get('rdb_bytes'))}",
        f"snapshot:   native replica {s(r.get('native_snapshot_s'))}   ferry {s(r.get('ferry_snapshot_s'))}"
        f"   (ferry peak RSS by then {bl.mib(r.get('ferry_peak_rss_snapshot_bytes'))})",
        f"stream SET: native replica {s(r.get('native_stream_set_s'))}   ferry {s(r.get('ferry_stream_set_s'))}"
        f"   (ferry peak RSS by then {bl.mib(r.get('ferry_peak_rss_set_bytes'))})",
        f"stream RPUSH: native replica {s(r.get('native_stream_rpush_s'))}   ferry {s(r.get('ferry_stream_rpush_s'))}"
        f"   (ferry peak RSS by then {bl.mib(r.get('ferry_peak_rss_rpush_bytes'))})",
        f"stream HSET: native replica {s(r.get('native_stream_hset_s'))}   ferry {s(r.get('ferry_stream_hset_s'))}"
        f"   (ferry peak RSS by then {bl.mib(r.get('ferry_peak_rss_hset_bytes'))})",
        f"ferry peak RSS {bl.mib(peak)} ({r.get('ferry_peak_rss_source', 'n/a')}), goal <= {bl.mib(TARGET_RSS)}: "
        + ("met" if peak is not None and peak <= TARGET_RSS else "NOT met"),
        f"values equal to the source: native {r.get('native_equal')}, ferry {r.get('ferry_equal')}",
    ]
    lines += [f"error: {e}" for e in r["errors"]]
    return "\n".join(lines)
