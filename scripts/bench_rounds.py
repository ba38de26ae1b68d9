"""Rounds for scripts/bench (stdlib only): the figures each round yields, their min / median /
max over the rounds, the cases borrowed from scripts/bench-cluster, and the summary report.

A round's figures are a flat list of (section, key, label, kind, value); the report puts the
rounds side by side, then min / median / max. Ratios are "higher is better" everywhere
(throughput over throughput), so a median ratio reads the same way in every row.
"""

import argparse
import importlib.machinery
import importlib.util
import os

import bench_lib as bl
from bench_lib import BenchError, log

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_FULL_RATIO = 0.8
TARGET_INCR_RATIO = 0.8
TARGET_RSS = 64 * 1048576

_cluster_mod = None


def cluster_module():
    """scripts/bench-cluster as a module (its file name has a dash and no .py)."""
    global _cluster_mod
    if _cluster_mod is None:
        path = os.path.join(HERE, "bench-cluster")
        loader = importlib.machinery.SourceFileLoader("bench_cluster", path)
        spec = importlib.util.spec_from_loader("bench_cluster", loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        _cluster_mod = mod
    return _cluster_mod


# ---------------------------------------------------------------------------
# between rounds: the source back to the dataset


LOAD_PATTERNS = ("key:*", "counter:*", "ferry-bench:sentinel:*", "__ferry:*")
LOAD_KEYS = ("mylist", "myhash")


def reset_source(src, want_keys):
    """Deletes what the round's loads and sentinels added (redis-benchmark's key:*, counter:*,
    mylist, myhash; the sentinels; ferry's own keys): the dataset's keys (s:, h:, l:, t:, z:,
    x:) are never written by a load, so what remains is the dataset as filled. Checked by
    DBSIZE."""
    removed = src.cmd("UNLINK", *LOAD_KEYS)
    for pat in LOAD_PATTERNS:
        cursor = b"0"
        while True:
            cursor, keys = src.cmd("SCAN", cursor, "MATCH", pat, "COUNT", 10000)
            if keys:
                removed += src.cmd("UNLINK", *keys)
            if cursor in (b"0", "0", 0):
                break
    n = src.cmd("DBSIZE")
    if n != want_keys:
        raise BenchError(f"the source holds {n:,} keys after removing the loads' keys, not the dataset's "
                         f"{want_keys:,}: a round left keys the reset does not know")
    log(f"source reset to the dataset: {removed:,} keys of the loads removed, {n:,} keys")
    return removed


# ---------------------------------------------------------------------------
# standalone -> cluster and cluster -> cluster (scripts/bench-cluster's code)


def phase_to_cluster(args, procs, tmp, ferry, source, src, ds, sample, variant=""):
    """(h) ferry --full-only from the standalone source into an empty 3-master cluster. Its
    native baseline is (a) of the same round: the same data into one native replica."""
    bc = cluster_module()
    name = "ferry-to-cluster-full" + (f"-{variant}" if variant else "")
    dst = bc.Cluster(procs, tmp, f"tocl-target{'-' + variant if variant else ''}", bc.SHARDS, args.timeout)
    try:
        res = bc.run_ferry_full(args, procs, tmp, ferry, name, source.url(), dst.url(1))
        if "error" not in res:
            secs = res["seconds"]
            res["keys_per_s"] = ds["keys"] / secs
            want = _user_keys(src)
            got = sum(_user_keys(c) for c in dst.clients)
            a = bc._key_facts(bc.Side("source", [src]), sample)
            b = bc._key_facts(bc.Side("target cluster", dst.clients, dst.node_of), sample)
            bad = [k for k in sample if not _same_key(a[k], b[k])]
            res["check"] = {"keys": got, "keys_expected": want, "spot_checked": len(sample),
                            "spot_mismatches": len(bad), "ok": got == want and not bad,
                            "mismatch_examples": [f"{k!r}: {a[k]!r} vs {b[k]!r}" for k in bad[:5]]}
            log(f"(h) standalone -> cluster target: keys {got:,}/{want:,}, sample {len(sample) - len(bad)}/"
                f"{len(sample)} equal (TYPE, DEBUG DIGEST-VALUE, TTL)" + ("" if res["check"]["ok"] else "  <-- MISMATCH"))
            res["target_keys_per_master"] = [c.cmd("DBSIZE") for c in dst.clients]
    finally:
        dst.close()
        for nd in dst.nodes:
            nd.stop(procs)
    return res


def _same_key(x, y):
    """(TYPE, DEBUG DIGEST-VALUE, PTTL) of one key on both sides: equal, the TTL within 5 s
    (the two PTTLs are read at different moments)."""
    (ta, da, pa), (tb, db, pb) = x, y
    if isinstance(da, Exception) or isinstance(db, Exception):
        return False
    ttl_ok = (pa < 0 and pb == pa) or (pa >= 0 and pb >= 0 and abs(pa - pb) < 5000)
    return ta == tb and da == db and ttl_ok


def _user_keys(c):
    bc = cluster_module()
    return c.cmd("DBSIZE") - bc.count_own_keys(c)


def phase_cluster(args, procs, tmp, ferry):
    """(i) cluster -> cluster: bench-cluster's run_cluster (its own 3+3 masters, filled with
    --cluster-keys keys, full copy and incremental beside 3 native replicas)."""
    bc = cluster_module()
    cargs = argparse.Namespace(keys=args.cluster_keys, incremental_ops=args.cluster_incremental_ops,
                               seed=args.seed, spot_check=min(args.spot_check, 200),
                               timeout=max(args.timeout, args.cluster_keys / 5000))
    return bc.run_cluster(cargs, procs, tmp, ferry)


def phase_huge(args, ferry):
    """(j) the huge-values memory case (bench_huge) with --huge-mib MiB values."""
    import bench_huge
    hargs = argparse.Namespace(huge_mib=args.huge_mib, timeout=args.timeout, seed=args.seed)
    return bench_huge.run(hargs, ferry, quiet=True)


# ---------------------------------------------------------------------------
# figures of one round


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def _div(a, b):
    return a / b if a is not None and b else None


def _cpu(r):
    if not r or r.get("cpu_user_s") is None:
        return None
    return r["cpu_user_s"] + r["cpu_sys_s"]


def _mib(v):
    return None if v is None else v / 1048576


def round_figures(R, keys, cluster_keys):
    """R: one round's phase results. Returns [(section, key, label, kind, value)]; kind says
    how to print it: s, rate, ratio, cpu, mib."""
    out = []

    def add(section, key, label, kind, value):
        out.append((section, key, label, kind, value))

    def add_cpu(section, key, who, cpu, count, unit, when=""):
        """ferry's CPU seconds and the same per million keys or ops (the CPU budget)."""
        add(section, key + "cpu", f"{who} CPU s{when}", "cpu", cpu)
        add(section, key + "cpu_per_m", f"{who} CPU s per million {unit}", "cpu", _div(cpu, _div(count, 1e6)))

    a, b, c, cb, cs = R.get("native_full"), R.get("ceiling"), R.get("ferry_full"), R.get("baseline_full"), R.get("shake_full")
    S = f"full copy (psync), {keys:,} keys, standalone -> standalone"
    nat = _get(a, "keys_per_s")
    if a:
        add(S, "full.native_s", "native replica s", "s", a.get("seconds"))
        add(S, "full.native_kps", "native keys/s", "rate", nat)
    for who, r, nm in (("ferry", c, "ferry"), ("baseline", cb, "ferry-baseline"), ("shake", cs, "RedisShake")):
        if r is None:
            continue
        if r.get("error"):
            r = {}  # a failed copy: no figures (the error is listed below the table)
        kps = r.get("keys_per_s")
        add(S, f"full.{who}_s", f"{nm} s", "s", r.get("seconds"))
        add(S, f"full.{who}_kps", f"{nm} keys/s", "rate", kps)
        add(S, f"full.{who}_ratio", f"{nm}/native" + (f" [goal >= {TARGET_FULL_RATIO}]" if who == "ferry" else ""),
            "ratio", _div(kps, nat))
        if who == "ferry" and b:
            add(S, "full.ferry_ceiling", "ferry/ceiling (redis-benchmark SET -P 64)", "ratio", _div(kps, b.get("ops_per_s")))
        add_cpu(S, f"full.{who}_", nm, _cpu(r), keys, "keys", " (user+sys)")
        add(S, f"full.{who}_rss", f"{nm} peak RSS MiB", "mib", _mib(r.get("peak_rss_bytes")))
    if c and cb:
        add(S, "full.after_before", "ferry / ferry-baseline (keys/s; > 1 = faster)", "ratio",
            _div(c.get("keys_per_s"), cb.get("keys_per_s")))
    if c and cs:
        add(S, "full.ferry_shake", "ferry / RedisShake (keys/s)", "ratio", _div(c.get("keys_per_s"), cs.get("keys_per_s")))
    if b:
        add(S, "ceiling.ops", "ceiling: redis-benchmark SET -P 64 ops/s", "rate", b.get("ops_per_s"))

    rf = R.get("replica_full")
    if rf:
        S = (f"full copy, ferry --target-mode replica (the target replicates from ferry, which relays the "
             f"snapshot), {keys:,} keys")
        if rf.get("error"):
            rf = {}
        kps = rf.get("keys_per_s")
        add(S, "replica_full.s", "ferry [replica mode] s (until its exit)", "s", rf.get("seconds"))
        add(S, "replica_full.kps", "ferry [replica mode] keys/s", "rate", kps)
        add(S, "replica_full.ratio", "ferry [replica mode]/native", "ratio", _div(kps, nat))
        add(S, "replica_full.vs_commands", "ferry [replica mode]/ferry [command mode] (keys/s)", "ratio",
            _div(kps, _get(c, "keys_per_s") if c and not c.get("error") else None))
        add(S, "replica_full.target_s", "target loaded s (its own INFO, as native)", "s", rf.get("target_loaded_s"))
        add(S, "replica_full.target_ratio", "target loaded/native (keys/s)", "ratio",
            _div(rf.get("target_loaded_keys_per_s"), nat))
        add_cpu(S, "replica_full.", "ferry [replica mode]", _cpu(rf), keys, "keys", " (user+sys)")
        add(S, "replica_full.rss", "ferry [replica mode] peak RSS MiB", "mib", _mib(rf.get("peak_rss_bytes")))

    sf = R.get("scan_full")
    if sf:
        S = f"full copy (scan mode), {keys:,} keys"
        add(S, "scan_full.s", "ferry scan s (incl. its verification)", "s", sf.get("seconds"))
        add(S, "scan_full.kps", "ferry scan keys/s", "rate", sf.get("keys_per_s"))
        add(S, "scan_full.ratio", "ferry scan/native", "ratio", _div(sf.get("keys_per_s"), nat))
        first = _get(sf, "phases_first_seen_s", "incremental")
        add(S, "scan_full.first_pass_ratio", "first pass only (~, /status polled): ratio", "ratio",
            _div(_div(keys, first), nat))
        add_cpu(S, "scan_full.", "ferry scan", _cpu(sf), keys, "keys")
        add(S, "scan_full.rss", "ferry scan peak RSS MiB", "mib", _mib(sf.get("peak_rss_bytes")))

    h = R.get("to_cluster")
    if h:
        S = f"full copy, standalone -> cluster (3 masters), {keys:,} keys; baseline: the standalone native replica above"
        add(S, "tocl.s", "ferry s", "s", h.get("seconds"))
        add(S, "tocl.kps", "ferry keys/s", "rate", h.get("keys_per_s"))
        add(S, "tocl.ratio", "ferry/native (standalone native full)", "ratio", _div(h.get("keys_per_s"), nat))
        add_cpu(S, "tocl.", "ferry", _cpu(h), keys, "keys")
        add(S, "tocl.rss", "ferry peak RSS MiB", "mib", _mib(h.get("peak_rss_bytes")))

    cl = R.get("cluster")
    if cl:
        n = _get(cl, "dataset", "keys") or cluster_keys
        S = f"cluster (3 masters) -> cluster (3 masters), {n:,} keys; native = 3 standalone replicas at once"
        na, fc = cl.get("native_full"), cl.get("ferry_full")
        nkps = _div(n, _get(na, "seconds"))
        fkps = _div(n, _get(fc, "seconds"))
        add(S, "cl_full.native_s", "full: native s (slowest of 3)", "s", _get(na, "seconds"))
        add(S, "cl_full.ferry_s", "full: ferry s", "s", _get(fc, "seconds"))
        add(S, "cl_full.ferry_kps", "full: ferry keys/s", "rate", fkps)
        add(S, "cl_full.ratio", "full: ferry/native", "ratio", _div(fkps, nkps))
        add_cpu(S, "cl_full.", "full: ferry", _cpu(fc), n, "keys")
        add(S, "cl_full.rss", "full: ferry peak RSS MiB", "mib", _mib(_get(fc, "peak_rss_bytes")))
        ci = cl.get("incremental") or {}
        add(S, "cl_incr.native_ops", "incremental: native ops/s", "rate", ci.get("native_ops_per_s"))
        add(S, "cl_incr.ferry_ops", "incremental: ferry ops/s", "rate", ci.get("ferry_ops_per_s"))
        add(S, "cl_incr.ratio", "incremental: ferry/native", "ratio",
            _div(ci.get("ferry_ops_per_s"), ci.get("native_ops_per_s")))
        add_cpu(S, "cl_incr.", "incremental: ferry", ci.get("ferry_cpu_during_load_s"), ci.get("ops"), "ops",
                " during the load")
        add(S, "cl_incr.rss", "incremental: ferry peak RSS MiB (initial sync + load)", "mib",
            _mib(_get(ci, "ferry_rusage", "peak_rss_bytes")))

    S = "incremental (changes under a write load), standalone"
    for who, key, nm in (("ferry", "incremental", "ferry"), ("baseline", "baseline_incremental", "ferry-baseline"),
                         ("shake", "shake_incremental", "RedisShake")):
        d = R.get(key)
        if not d:
            continue
        if d.get("error"):
            d = {k: v for k, v in d.items() if k.startswith("native") or k == "ops"}
        if who == "ferry":
            add(S, "incr.native_ops", "native ops/s", "rate", d.get("native_ops_per_s"))
        else:
            add(S, f"incr.{who}_native_ops", f"native ops/s (beside {nm})", "rate", d.get("native_ops_per_s"))
        add(S, f"incr.{who}_ops", f"{nm} ops/s", "rate", d.get("ferry_ops_per_s"))
        add(S, f"incr.{who}_ratio", f"{nm}/native" + (f" [goal >= {TARGET_INCR_RATIO}]" if who == "ferry" else ""),
            "ratio", _div(d.get("ferry_ops_per_s"), d.get("native_ops_per_s")))
        if who != "shake":
            add_cpu(S, f"incr.{who}_", nm, d.get("ferry_cpu_during_load_s"), d.get("ops"), "ops", " during the load")
        add(S, f"incr.{who}_rss", f"{nm} peak RSS MiB (initial sync + load)", "mib",
            _mib(_get(d, "ferry_rusage", "peak_rss_bytes")))
    d, db, ds_ = R.get("incremental"), R.get("baseline_incremental"), R.get("shake_incremental")
    if d and db:
        add(S, "incr.after_before", "ferry / ferry-baseline (ops/s; > 1 = faster)", "ratio",
            _div(d.get("ferry_ops_per_s"), db.get("ferry_ops_per_s")))
    if d and ds_:
        add(S, "incr.ferry_shake", "ferry / RedisShake (ratios to their own native)", "ratio",
            _div(_div(d.get("ferry_ops_per_s"), d.get("native_ops_per_s")),
                 _div(ds_.get("ferry_ops_per_s"), ds_.get("native_ops_per_s"))))

    dr = R.get("replica_incremental")
    if dr:
        S = "incremental, ferry --target-mode replica (its own native replica beside it, same load)"
        if dr.get("error"):
            dr = {k: v for k, v in dr.items() if k.startswith("native") or k == "ops"}
        add(S, "replica_incr.native_ops", "native ops/s (beside ferry [replica mode])", "rate",
            dr.get("native_ops_per_s"))
        add(S, "replica_incr.ferry_ops", "ferry [replica mode] ops/s", "rate", dr.get("ferry_ops_per_s"))
        add(S, "replica_incr.ratio", "ferry [replica mode]/native", "ratio",
            _div(dr.get("ferry_ops_per_s"), dr.get("native_ops_per_s")))
        add_cpu(S, "replica_incr.", "ferry [replica mode]", dr.get("ferry_cpu_during_load_s"), dr.get("ops"), "ops",
                " during the load")
        add(S, "replica_incr.rss", "ferry [replica mode] peak RSS MiB (initial sync + load)", "mib",
            _mib(_get(dr, "ferry_rusage", "peak_rss_bytes")))

    g = R.get("scan_incremental")
    if g:
        S = "incremental, scan mode (keyspace notifications)"
        add(S, "scan_incr.native_ops", "native ops/s", "rate", g.get("native_ops_per_s"))
        add(S, "scan_incr.ferry_ops", "ferry scan ops/s", "rate", g.get("ferry_ops_per_s"))
        add(S, "scan_incr.ratio", "ferry scan/native", "ratio", _div(g.get("ferry_ops_per_s"), g.get("native_ops_per_s")))
        add_cpu(S, "scan_incr.", "ferry scan", g.get("ferry_cpu_during_load_s"), g.get("ops"), "ops", " during the load")
        add(S, "scan_incr.rss", "ferry scan peak RSS MiB (copy + follow)", "mib",
            _mib(_get(g, "ferry_rusage", "peak_rss_bytes")))

    S = "catch-up from a backlog (followers SIGSTOPped during the load)"
    for who, key, nm in (("ferry", "catchup", "ferry"), ("baseline", "baseline_catchup", "ferry-baseline")):
        e = R.get(key)
        if not e:
            continue
        seq, con = _get(e, "rounds", "sequential"), _get(e, "rounds", "concurrent")
        pre = "" if who == "ferry" else f"[{nm} run] "
        add(S, f"catchup.{who}_native_ops", f"{pre}native ops/s (sequential)", "rate", _get(seq, "native_ops_per_s"))
        add(S, f"catchup.{who}_ops", f"{nm} ops/s (sequential)", "rate", _get(seq, "ferry_ops_per_s"))
        add(S, f"catchup.{who}_ratio", f"{nm}/native (sequential)", "ratio", _get(seq, "ratio_vs_native"))
        add(S, f"catchup.{who}_ratio_con", f"{nm}/native (concurrent)", "ratio", _get(con, "ratio_vs_native"))
        add_cpu(S, f"catchup.{who}_", nm, _get(seq, "ferry_cpu_s"), e.get("ops"), "ops",
                " applying the backlog (sequential)")
        add(S, f"catchup.{who}_rss", f"{nm} peak RSS MiB (initial sync + catch-up)", "mib",
            _mib(_get(e, "ferry_rusage", "peak_rss_bytes")))
    e, eb = R.get("catchup"), R.get("baseline_catchup")
    if e and eb:
        add(S, "catchup.after_before", "ferry / ferry-baseline (ops/s, sequential; > 1 = faster)", "ratio",
            _div(_get(e, "rounds", "sequential", "ferry_ops_per_s"), _get(eb, "rounds", "sequential", "ferry_ops_per_s")))

    er = R.get("replica_catchup")
    if er:
        S = ("catch-up, ferry --target-mode replica (ferry SIGSTOPped, its target not; ferry's offset = /status "
             "applied_offset = the target's ACK, sent once a second)")
        seq, con = _get(er, "rounds", "sequential"), _get(er, "rounds", "concurrent")
        nm = "ferry [replica mode]"
        add(S, "replica_catchup.native_ops", "native ops/s (sequential, beside ferry [replica mode])", "rate",
            _get(seq, "native_ops_per_s"))
        add(S, "replica_catchup.ferry_ops", f"{nm} ops/s (sequential)", "rate", _get(seq, "ferry_ops_per_s"))
        add(S, "replica_catchup.ratio", f"{nm}/native (sequential)", "ratio", _get(seq, "ratio_vs_native"))
        add(S, "replica_catchup.ratio_con", f"{nm}/native (concurrent)", "ratio", _get(con, "ratio_vs_native"))
        add(S, "replica_catchup.target_ratio", "by the target's own offset (INFO, 20 ms)/native (sequential)",
            "ratio", _get(seq, "ratio_target_vs_native"))
        add_cpu(S, "replica_catchup.", nm, _get(seq, "ferry_cpu_s"), er.get("ops"), "ops",
                " applying the backlog (sequential)")
        add(S, "replica_catchup.rss", f"{nm} peak RSS MiB (initial sync + catch-up)", "mib",
            _mib(_get(er, "ferry_rusage", "peak_rss_bytes")))

    j = R.get("huge")
    if j:
        S = f"huge values ({j.get('mib')} MiB each, in the snapshot and in the stream)"
        add(S, "huge.rss", f"ferry peak RSS MiB [goal <= {TARGET_RSS >> 20}]", "mib", _mib(j.get("ferry_peak_rss_bytes")))
        add(S, "huge.rss_snapshot", "ferry peak RSS MiB after the snapshot", "mib",
            _mib(j.get("ferry_peak_rss_snapshot_bytes")))
        add(S, "huge.native_s", "snapshot: native s", "s", j.get("native_snapshot_s"))
        add(S, "huge.ferry_s", "snapshot: ferry s", "s", j.get("ferry_snapshot_s"))
        add(S, "huge.equal", "values equal (1 = yes)", "ratio",
            None if j.get("ferry_equal") is None else float(bool(j.get("ferry_equal"))))
    return out


def summarize(rounds_figs, drop_empty=False):
    """rounds_figs: [round figures]. Returns ordered [(section, key, label, kind, values, summary)];
    drop_empty leaves out figures no round has (e.g. ferry's with --no-ferry)."""
    order, by = [], {}
    for figs in rounds_figs:
        for section, key, label, kind, _ in figs:
            if key not in by:
                by[key] = (section, label, kind)
                order.append(key)
    rows = []
    for key in order:
        section, label, kind = by[key]
        vals = []
        for figs in rounds_figs:
            v = next((f[4] for f in figs if f[1] == key), None)
            vals.append(v)
        if drop_empty and all(v is None for v in vals):
            continue
        rows.append((section, key, label, kind, vals, bl.series_summary(vals)))
    return rows


def _fmt(kind, v):
    if v is None:
        return "-"
    if kind == "rate":
        return bl.human(v)
    if kind == "mib":
        return f"{v:.1f}"
    return f"{v:.2f}"


def _verdict(key, summ):
    med, mx = summ["median"], summ["max"]
    if key in ("full.ferry_ratio",) and med is not None:
        return "PASS" if med >= TARGET_FULL_RATIO else "FAIL"
    if key in ("incr.ferry_ratio",) and med is not None:
        return "PASS" if med >= TARGET_INCR_RATIO else "FAIL"
    if key == "huge.rss" and mx is not None:
        return "PASS" if mx <= TARGET_RSS / 1048576 else "FAIL"
    return ""


def summary_lines(rows, n_rounds):
    """The table: one row per figure, the rounds then min / median / max."""
    hdr = ["figure"] + [f"r{i + 1}" for i in range(n_rounds)] + ["min", "median", "max", ""]
    table, sections = [], []
    for section, key, label, kind, vals, summ in rows:
        if not sections or sections[-1] != section:
            sections.append(section)
            table.append(("section", section))
        table.append(("row", ["  " + label] + [_fmt(kind, v) for v in vals]
                      + [_fmt(kind, summ["min"]), _fmt(kind, summ["median"]), _fmt(kind, summ["max"]),
                         _verdict(key, summ)]))
    cells = [hdr] + [r for t, r in table if t == "row"]
    widths = [max(len(r[i]) for r in cells) for i in range(len(hdr))]

    def fmt(r):
        return (r[0].ljust(widths[0]) + " | " + " ".join(v.rjust(w) for v, w in zip(r[1:-4], widths[1:-4]))
                + " | " + " ".join(v.rjust(w) for v, w in zip(r[-4:-1], widths[-4:-1])) + ("  " + r[-1] if r[-1] else ""))
    L = [fmt(hdr), "-" * len(fmt(hdr))]
    for t, r in table:
        L.append(r if t == "section" else fmt(r))
    return L


def goal_lines(rows):
    """The goals, judged on medians (RSS on the max over the rounds)."""
    by = {key: summ for _, key, _, _, _, summ in rows}
    L = []
    for key, what in (("full.ferry_ratio", f"full copy ferry/native >= {TARGET_FULL_RATIO}"),
                      ("incr.ferry_ratio", f"incremental ferry/native >= {TARGET_INCR_RATIO}")):
        s = by.get(key)
        if s and s["median"] is not None:
            L.append(f"goal {what}: median {s['median']:.2f} -> {_verdict(key, s)}")
    rss = [(summ["max"], section, label) for section, key, label, kind, _, summ in rows
           if kind == "mib" and summ["max"] is not None and key.split(".")[0] != "huge"
           and "baseline" not in key and "shake" not in key]
    if rss:
        top = max(v for v, _, _ in rss)
        L.append(f"goal ferry peak RSS <= {TARGET_RSS >> 20} MiB (every measure, every round): max {top:.1f} MiB"
                 f" -> {'PASS' if top <= TARGET_RSS / 1048576 else 'FAIL'}")
        for v, sec, label in sorted(rss, reverse=True):
            if v > TARGET_RSS / 1048576:
                L.append(f"    above: {v:.1f} MiB, {sec.split(';')[0]}: {label.strip()}")
    s = by.get("huge.rss")
    if s and s["max"] is not None:
        L.append(f"goal huge values ferry peak RSS <= {TARGET_RSS >> 20} MiB: max {s['max']:.1f} MiB -> "
                 f"{_verdict('huge.rss', s)}")
    return L
