"""RedisShake beside ferry in scripts/bench (--redis-shake PATH); stdlib only.

RedisShake is not built by this project: the person running the benchmark gives its binary
(v4, configured by a TOML file: [sync_reader] reads the source by PSYNC like a replica,
[redis_writer] writes the target). It runs the same full copy and the same incremental
measure as ferry, on the same source, and is reported beside ferry as a ratio to the native
replica of the same measure.

  full copy   : sync_rdb = true, sync_aof = false: RedisShake copies the snapshot and exits;
                wall time of the process, like ferry --full-only.
  incremental : sync_rdb and sync_aof true, attached beside a fresh native replica; ready
                once its target holds the dataset's keys (RedisShake's status port is left
                off: the key count says the same without depending on its format); then the
                same load and sentinel as ferry's measure (scripts/bench phase_incremental).
"""

import os
import subprocess

import bench_lib as bl
from bench_lib import BenchError, log


class Shake:
    """A RedisShake binary; argv() writes one run's config into its own working dir."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            raise BenchError(f"--redis-shake {path}: not an executable file; give the path of a RedisShake v4 "
                             "binary (redis-shake, from its releases), or leave the flag out")

    def __str__(self):
        return self.path

    def argv(self, tmp, name, source_port, target_port, follow):
        work = os.path.join(tmp, f"shake-{name}")
        os.makedirs(work, exist_ok=True)
        config = os.path.join(work, "shake.toml")
        # Loopback addresses only; no status port (0 = off); RedisShake's own files (the
        # received RDB, its AOF spool, its log) stay in the run's temp dir.
        with open(config, "w") as f:
            f.write("[sync_reader]\n"
                    f'address = "127.0.0.1:{source_port}"\n'
                    "sync_rdb = true\n"
                    f"sync_aof = {'true' if follow else 'false'}\n"
                    "\n[redis_writer]\n"
                    f'address = "127.0.0.1:{target_port}"\n'
                    "\n[advanced]\n"
                    f'dir = "{work}"\n'
                    "status_port = 0\n"
                    'log_level = "warn"\n')
        return [self.path, config]


def shake_failure(res, mp, what):
    res["stderr_tail"] = bl.tail(mp.stderr_path, 20) + "\n" + bl.tail(mp.stdout_path, 20)
    last = next((ln.strip() for ln in reversed(res["stderr_tail"].splitlines()) if ln.strip()), "")
    res["error"] = what + (f": {last[:200]}" if last else "")
    log(f"RedisShake: {what}; its output (tail):\n{res['stderr_tail']}")


def phase_full(args, procs, tmp, shake, source, src, ds, digest, sample, verify_copy):
    """RedisShake's full copy (sync_aof = false: it exits once the snapshot is written)."""
    t = bl.RedisServer(procs, tmp, "shake-full-target")
    tc = t.client(timeout=args.timeout)
    argv = shake.argv(tmp, "full", source.port, t.port, follow=False)
    log(f"(c) RedisShake full: {' '.join(argv)}")
    res = {"command": " ".join(argv)}
    try:
        mp = bl.MeasuredProcess(procs, argv, tmp, "shake-full")
    except BenchError as e:
        raise BenchError(f"RedisShake ({shake.path}) did not run: {str(e).splitlines()[0]}; "
                         "check that it is a RedisShake v4 binary for this machine")
    try:
        r = mp.wait(timeout=args.timeout, what="RedisShake (sync_aof = false) to exit")
    except BenchError as e:
        shake_failure(res, mp, str(e).splitlines()[0])
        tc.close()
        t.stop(procs)
        return res
    res.update(r)
    if r["exit"] != 0:
        shake_failure(res, mp, f"RedisShake exited with code {r['exit']}")
        tc.close()
        t.stop(procs)
        return res
    secs = r.get("seconds") or mp.seconds
    res["seconds"] = secs
    res["keys_per_s"] = ds["keys"] / secs
    log(f"(c) RedisShake full: exited 0 after {secs:.2f}s, peak RSS {bl.mib(r['peak_rss_bytes'])}")
    res["check"] = verify_copy("(c) RedisShake target", src, tc, ds["keys"], digest, sample)
    tc.close()
    t.stop(procs)
    return res


def smoke(shake, timeout=10.0):
    """Fails with one clear line if the binary does not even start (wrong architecture, not
    RedisShake): run it without a config and see that it runs and prints something."""
    try:
        p = subprocess.run([shake.path], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return  # waiting for something: it runs
    except OSError as e:
        raise BenchError(f"--redis-shake {shake.path}: cannot run it ({e}); give a RedisShake v4 binary "
                         "built for this machine")
    if p.returncode in (126, 127) or not (p.stdout or p.stderr):
        raise BenchError(f"--redis-shake {shake.path}: it did not run as RedisShake (exit {p.returncode}, "
                         "no output); give a RedisShake v4 binary built for this machine")
