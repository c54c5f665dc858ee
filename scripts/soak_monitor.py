#!/usr/bin/env python3
"""The sampler and judge of a soak (scripts/soak.sh, scripts/soak-vm.sh).

Every PERIOD seconds it reads the switch's counters (`vswitchctl stats --json`) and the
endpoint processes' /proc entries, appends a CSV row, reads the traffic reports that the
load generators append to files (lines starting with "VSOAK ", see parse_report), and
fails loudly - exit status 1, the reason, `vswitchctl channels` and `stats` and every
host's latest drop counters in failure.txt - when:
  * an expected pair moves nothing for STALL seconds, or a pair that carries iperf3 streams
    stays below their floor that long (a stalled flow: the failure a soak exists to catch);
  * an iperf3 run fails after connecting, or a run cannot connect for more than STALL s;
  * UDP datagrams are lost beyond what counters explain (switch drops + the hosts' socket
    and interface drops, SLACK datagrams per run for ones only late at its end): a frame
    lost without a counted reason;
  * a drop reason or error counter that means a defect moves (corrupt ring, bad header,
    frame too large, spoofed source, frontend error, bad chain, protocol error, ...), a
    generator frame arrives corrupt or out of order, or generators lose more than the
    switch dropped;
  * an endpoint restarts (it crashed or hung), or vswitchctl cannot read the switch for
    STALL seconds;
  * a process's private memory, open descriptors or threads keep growing;
  * pings are lost beyond the bound (--ping-loss: a fraction of those sent per pair plus one
    per report, or "counted": judged against drop counters like UDP); pings of a report
    that may cover the first --settle seconds are only shown.
Every HOUR seconds it writes one summary line (summary.txt and stdout) and redraws the PNG.

Nothing it keeps grows with the run's length: the 10 s CSV is rotated daily (soak.csv,
soak.csv.1), hourly.csv has one row an hour, the consumed part of a report file is freed
(a hole punched at its start: offsets stay valid and a writer appending meanwhile loses
nothing), and its own state is bounded by the number of pairs and one hour of samples.
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

# Reasons a healthy switch under a soak's load may count; any other reason is a defect.
BENIGN_DROPS = {"flood_peer_full", "peer_full", "peer_stalled", "guest_not_ready", "hairpin", "endpoint_stopped"}
# Counters that must not move at all while the soak runs.
DEFECT_COUNTERS = ("ring_errors", "frontend_errors", "vu_protocol_errors", "vu_bad_chains", "gen_bad",
                   "gen_out_of_order", "events_dropped")


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--ctl", required=True, help="path of vswitchctl")
    p.add_argument("--config", required=True, help="the switch's topology")
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=int, required=True, help="seconds of load")
    p.add_argument("--period", type=float, default=10.0)
    p.add_argument("--stall", type=float, default=30.0)
    p.add_argument("--hour", type=float, default=3600.0, help="summary period (s)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before memory baselines")
    p.add_argument("--pairs", default="", help="expected flows, 'a>b,c>d' (endpoint names)")
    p.add_argument("--streams", default="",
                   help="iperf3 streams that must report runs, 'tcp:a>b,udp:c>d'")
    p.add_argument("--udp-mbps", type=float, default=0.0, help="each UDP stream's rate (Mbit/s)")
    p.add_argument("--tcp-floor", type=float, default=0.1, help="the least a TCP stream moves (Mbit/s)")
    p.add_argument("--udp-floor", type=float, default=0.5,
                   help="the least a UDP stream moves, a fraction of its rate (guests starved of CPU "
                        "send late: their pacing runs on their own, descheduled, time)")
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds after the start before the pairs' floors and lost pings are judged (streams starting)")
    p.add_argument("--segment", type=int, default=3600, help="the streams' segment length (s)")
    p.add_argument("--reports", nargs="*", default=[], help="files the load generators append VSOAK lines to")
    p.add_argument("--free-reports", type=int, default=1 << 20,
                   help="free a report file's consumed bytes once past this many (0: never)")
    p.add_argument("--pids", default="", help="other processes to watch for growth, 'name=pid,...'")
    p.add_argument("--ping-loss", default="0.001",
                   help="pings a pair may lose, a fraction of those sent (+1 a report), or 'counted': every "
                        "lost ping must be explained by drop counters, as UDP datagrams are")
    p.add_argument("--expect-done", type=int, default=0,
                   help="wait (up to --grace s) after the load for this many 'VSOAK DONE' lines")
    p.add_argument("--grace", type=float, default=600.0)
    p.add_argument("--title", default="vswitch soak")
    p.add_argument("--udp-slack", type=int, default=20,
                   help="datagrams a UDP run may count lost that were only late at its end")
    return p.parse_args()


class Failed(Exception):
    pass


def proc_info(pid):
    """(RssAnon kB, open fds, threads) of a live process, or None."""
    try:
        anon = threads = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return anon, fds, threads
    except (OSError, ValueError):
        return None


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch_hole(path, length):
    """Frees the first LENGTH bytes of PATH without changing its size or any offset
    (fallocate FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). False where unsupported."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        return _libc.fallocate(fd, 0x02 | 0x01, 0, length) == 0
    finally:
        os.close(fd)


def parse_report(line):
    """'... VSOAK KIND k=v k=v ... end' -> (KIND, {k: v}); anything else -> None. A line a
    guest kernel message broke into (it lacks the final 'end') is None too."""
    line = line.strip().replace("\r", "")
    i = line.find("VSOAK ")
    if i < 0:
        return None
    words = line[i:].split()
    if len(words) < 3 or words[-1] != "end":
        return None
    fields = {}
    for w in words[2:-1]:
        k, sep, v = w.partition("=")
        if sep:
            fields[k] = v
    return words[1], fields


def num(fields, key):
    """A non-negative integer field; ValueError (the line is malformed) otherwise."""
    v = int(fields.get(key, "0"))
    if v < 0:
        raise ValueError(key)
    return v


class Monitor:
    def __init__(self, a):
        self.a = a
        self.out = a.out
        self.csv_path = os.path.join(self.out, "soak.csv")
        self.hourly_path = os.path.join(self.out, "hourly.csv")
        self.summary_path = os.path.join(self.out, "summary.txt")
        for stale in ("soak.csv", "soak.csv.1", "hourly.csv", "summary.txt", "failure.txt"):
            try:
                os.unlink(os.path.join(self.out, stale))  # a previous run's, in a reused --out
            except FileNotFoundError:
                pass
        self.pairs = [tuple(p.split(">")) for p in a.pairs.split(",") if p]
        self.streams = [s.split(":", 1) for s in a.streams.split(",") if s]
        # A pair carrying iperf3 streams must carry at least this much (Mbit/s): --udp-floor
        # (default half) of each UDP stream's rate, and --tcp-floor for a TCP stream (default 0.1: pings and
        # ACKs alone are a few kbit/s; a TCP stream between TCG guests moves tens of
        # Mbit/s at the least).
        self.floor = {}
        for proto, pair in self.streams:
            key = tuple(pair.split(">"))
            self.floor[key] = self.floor.get(key, 0.0) + (a.udp_floor * a.udp_mbps if proto == "udp" else a.tcp_floor)
        self.extra_pids = dict(kv.split("=") for kv in a.pids.split(",") if kv)
        self.offsets = {}
        self.rows_in_file = 0
        self.rows_per_file = int(86400 / a.period)
        self.t0 = time.monotonic()
        self.hour_index = 0
        self.hour_rows = []          # (dt, {pair: mbps}, total_mbps, judged): at most one hour of rows
        self.hour_start = None       # the sample the hour started at
        self.below_since = {}
        self.ctl_failing_since = None
        self.baselines = {}          # endpoint name -> (pid, (anon, fds, threads))
        self.over = {}               # endpoint name -> consecutive samples over the limit
        self.hour_max = {}           # name -> highest (anon, fds) this hour
        self.history = {}            # name -> the last 7 hourly maxima of (anon, fds)
        # From the reports:
        self.segments = {}           # stream -> [runs, max gap ms, retried runs]
        self.udp_lost = 0            # every datagram the completed UDP runs lost
        self.udp_sent = 0
        self.udp_pending = []        # (read batch, lost) not yet covered by every host's counters
        self.udp_judged = 0          # lost datagrams whose counters have been read since
        self.udp_runs_judged = 0
        self.batch = 0               # read_reports() calls so far
        self.net = {}                # host -> latest cumulative drop counters (sum)
        self.net_batch = {}          # host -> batch its latest counters came in
        self.net_start = {}
        self.net_line = {}           # host -> its latest NET line, for failure.txt
        self.ping = {}               # (src, dst) -> [sent, recv, reports, and those three while settling]
        self.ping_hour = []          # (p50, p99, max) of each ping report this hour
        self.done = set()
        self.logs = {}               # (src, proto) -> the last iperf3 lines of a failed run
        self.malformed = 0
        self.prev = None
        self.first = None
        self.plotter = None

    # -- the switch's counters ----------------------------------------------------------
    def ctl(self, *args):
        r = subprocess.run([self.a.ctl, "--config", self.a.config, *args], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"vswitchctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def stats(self):
        """The switch's counters, or None while vswitchctl fails (for up to STALL s)."""
        try:
            d = json.loads(self.ctl("stats", "--json"))
            self.ctl_failing_since = None
            return {e["name"]: e for e in d["endpoints"]}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
            now = time.monotonic()
            if self.ctl_failing_since is None:
                self.ctl_failing_since = now
            if now - self.ctl_failing_since >= self.a.stall:
                pid = self.extra_pids.get("vswitchd")
                alive = pid is None or os.path.exists(f"/proc/{pid}")
                self.fail(f"cannot read the switch's counters for {now - self.ctl_failing_since:.0f} s "
                          f"(vswitchd {'running' if alive else 'GONE'}): {e}")
            return None

    def fail(self, why):
        raise Failed(why)

    # -- reports from the load generators ------------------------------------------------
    def read_reports(self):
        self.batch += 1
        for path in self.a.reports:
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            off = self.offsets.get(path, 0)
            if size < off:  # truncated by someone else: start over
                off = 0
            if size == off:
                continue
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read(size - off)
            end = data.rfind(b"\n")
            if end < 0:
                continue
            consumed = off + end + 1
            self.offsets[path] = consumed
            for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
                r = parse_report(raw)
                if r is None:
                    if "VSOAK " in raw:
                        self.malformed += 1
                    continue
                try:
                    self.take(raw.strip(), *r)
                except ValueError:
                    self.malformed += 1
            # Free what was read; the block holding the partial last line stays.
            freed = consumed - consumed % 4096
            if self.a.free_reports and freed > self.a.free_reports and freed > self.offsets.get(path + "#freed", 0):
                if punch_hole(path, freed):
                    self.offsets[path + "#freed"] = freed

    def take(self, raw, kind, f):
        if kind == "SEG":
            key = f"{f.get('proto', '?')} {f.get('src', '?')}>{f.get('dst', '?')}"
            s = self.segments.setdefault(key, [0, 0, 0])
            s[0] += 1
            s[1] = max(s[1], num(f, "gap_ms"))
            s[2] += num(f, "tries") > 1
            if f.get("rc", "0") != "0":
                said = " | ".join(self.logs.get((f.get("src"), f.get("proto")), []))
                self.fail(f"run {s[0]} of {key} failed (rc {f.get('rc')}): {raw}; iperf3 said: {said}")
            if f.get("proto") == "udp":
                lost = num(f, "lost")
                self.udp_lost += lost
                self.udp_sent += num(f, "total")
                self.udp_pending.append((self.batch, lost, 1))
        elif kind == "NET":
            host = f.get("host", "?")
            total = sum(num(f, k) for k in ("udp_sndbuf", "udp_rcvbuf", "rx_dropped", "tx_dropped"))
            self.net_start.setdefault(host, total)
            if total < self.net.get(host, 0):
                raise ValueError("NET counters went back")
            self.net[host] = total
            self.net_batch[host] = self.batch
            self.net_line[host] = raw
        elif kind == "PING":
            key = (f.get("src", "?"), f.get("dst", "?"))
            sent = num(f, "sent")
            recv = min(sent, num(f, "recv"))  # duplicates (DUP!) never hide a loss
            p = self.ping.setdefault(key, [0, 0, 0, 0, 0, 0])
            p[0] += sent
            p[1] += recv
            p[2] += 1
            if recv:
                self.ping_hour.append((float(f.get("p50", 0)), float(f.get("p99", 0)), float(f.get("max", 0))))
            # A report covers the minute before it was written and is read up to a period
            # later: one read before --settle + 60 s + a period may cover the settling time
            # (guests still starting their streams, or not yet ready for frames). Its pings
            # are shown in the summary, not judged.
            if self.a.settle > 0 and time.monotonic() < self.t0 + self.a.settle + 60 + self.a.period:
                p[3] += sent
                p[4] += recv
                p[5] += 1
                return
            sent_j, lost_j, reports_j = p[0] - p[3], (p[0] - p[1]) - (p[3] - p[4]), p[2] - p[5]
            if self.a.ping_loss == "counted":
                self.udp_pending.append((self.batch, sent - recv, 0))
            elif lost_j > float(self.a.ping_loss) * sent_j + reports_j:
                self.fail(f"pings {key[0]} -> {key[1]}: {lost_j} of {sent_j} lost "
                          f"(bound {float(self.a.ping_loss):.2%} + one per minute's report)")
        elif kind == "LOG":
            key = (f.get("src"), f.get("proto"))
            self.logs[key] = (self.logs.get(key, []) + [raw.split(f"proto={key[1]} ", 1)[-1]])[-4:]
        elif kind == "DONE":
            self.done.add(f.get("host", "?"))

    # -- one sample ----------------------------------------------------------------------
    def sample(self, checking):
        now = time.monotonic()
        st = self.stats()
        self.read_reports()
        if st is None:
            return
        cur = {
            "t": now,
            "pair_bytes": {p: st[p[0]]["peers"][p[1]]["out_bytes"] for p in self.pairs},
            "drops": {n: dict(e["drops"]) for n, e in st.items()},
            "drops_total": sum(e["drops_total"] for e in st.values()),
            "defects": {c: sum(e.get(c, 0) for e in st.values()) for c in DEFECT_COUNTERS},
            "gen_lost": sum(e.get("gen_lost", 0) for e in st.values()),
            "restarts": {n: e["restarts"] for n, e in st.items()},
            "pids": {n: e["pid"] for n, e in st.items()},
        }
        if self.first is None:
            self.first = cur
            self.hour_start = cur
        if self.prev is None:
            self.prev = cur
            return
        dt = max(1e-3, now - self.prev["t"])
        mbps = {p: max(0, cur["pair_bytes"][p] - self.prev["pair_bytes"][p]) * 8 / dt / 1e6 for p in self.pairs}
        elapsed = now - self.t0
        self.check_counters(cur)
        if checking:
            for p, v in mbps.items():
                floor = self.floor.get(p, 0.0)
                if v == 0 or v < floor:
                    self.below_since.setdefault(p, self.prev["t"])
                    if now - self.below_since[p] >= self.a.stall:
                        what = "nothing" if v == 0 else f"{v:.3f} Mbit/s (its streams need >= {floor:.3f})"
                        self.fail(f"{p[0]} -> {p[1]} moved {what} for {now - self.below_since[p]:.0f} s")
                else:
                    self.below_since.pop(p, None)
        else:
            self.below_since.clear()
        self.check_udp(cur)
        procs = self.check_growth(cur, elapsed)
        self.write_row(elapsed, mbps, cur, procs)
        self.hour_rows.append((dt, mbps, sum(mbps.values()), checking))
        self.prev = cur
        if elapsed >= (self.hour_index + 1) * self.a.hour:
            self.hourly(elapsed, cur, procs)

    def check_counters(self, cur):
        for c, v in cur["defects"].items():
            if v > self.first["defects"][c]:
                self.fail(f"{c} rose by {v - self.first['defects'][c]} during the soak")
        for n, reasons in cur["drops"].items():
            for r, v in reasons.items():
                if r not in BENIGN_DROPS and v > self.first["drops"].get(n, {}).get(r, 0):
                    self.fail(f"{n} dropped {v - self.first['drops'][n].get(r, 0)} frames as {r}, a defect")
        for n, v in cur["restarts"].items():
            if v > self.first["restarts"].get(n, v):
                self.fail(f"endpoint {n} was restarted {v - self.first['restarts'][n]} times (it crashed or hung)")
        if cur["gen_lost"] > cur["drops_total"]:
            self.fail(f"generators lost {cur['gen_lost']} frames but the switch counted only "
                      f"{cur['drops_total']} drops")

    def check_udp(self, cur, final=False):
        # A run's losses are judged once every host has reported its counters from a later
        # read than the run's own line: the receiver's socket drops happen on the other
        # host, which reports them once a minute.
        covered = float("inf") if final else min(self.net_batch.values(), default=0)
        judged = [(lost, runs) for b, lost, runs in self.udp_pending if b < covered]
        if not judged:
            return
        self.udp_pending = [x for x in self.udp_pending if x[0] >= covered]
        self.udp_judged += sum(lost for lost, _ in judged)
        self.udp_runs_judged += sum(runs for _, runs in judged)
        counted = max(0, cur["drops_total"] - self.first["drops_total"]) + \
            sum(self.net[h] - self.net_start[h] for h in self.net)
        if self.udp_judged > counted + self.a.udp_slack * self.udp_runs_judged:
            pings = " and pings" if self.a.ping_loss == "counted" else ""
            self.fail(f"{self.udp_judged} UDP datagrams{pings} were lost ({self.udp_sent} datagrams sent) but "
                      f"counters explain only {counted} (switch drops + the hosts' socket and interface drops)")

    def check_growth(self, cur, elapsed):
        procs = {}
        watched = dict(cur["pids"])
        watched.update({n: int(p) for n, p in self.extra_pids.items()})
        for name, pid in watched.items():
            info = proc_info(pid) if pid else None
            if info is None or None in info:
                continue
            procs[name] = info
            m = self.hour_max.get(name, (0, 0))
            self.hour_max[name] = (max(m[0], info[0]), max(m[1], info[1]))
            if elapsed < self.a.warmup:
                continue
            base = self.baselines.get(name)
            if base is None or base[0] != pid:  # first sample after warm-up (a restart fails anyway)
                self.baselines[name] = (pid, info)
                continue
            b = base[1]
            over = info[0] > b[0] + 8192 or info[1] > b[1] + 8 or info[2] > b[2] + 2
            self.over[name] = self.over.get(name, 0) + 1 if over else 0
            if self.over[name] >= 3:
                self.fail(f"{name} (pid {pid}) keeps growing: RssAnon {b[0]} -> {info[0]} kB, "
                          f"fds {b[1]} -> {info[1]}, threads {b[2]} -> {info[2]}")
        return procs

    # -- output --------------------------------------------------------------------------
    def header(self):
        cols = ["t_s"] + [f"{a}_to_{b}_mbps" for a, b in self.pairs] + \
            ["total_mbps", "drops_total", "restarts", "anon_kb", "fds", "threads"]
        return ",".join(cols) + "\n"

    def write_row(self, elapsed, mbps, cur, procs):
        if self.rows_in_file == 0 or self.rows_in_file >= self.rows_per_file:
            if self.rows_in_file:
                os.replace(self.csv_path, self.csv_path + ".1")
            with open(self.csv_path, "w") as f:
                f.write(self.header())
            self.rows_in_file = 0
        # Three decimals: a board's guests move tens of kbit/s per pair.
        row = [f"{elapsed:.0f}"] + [f"{mbps[p]:.3f}" for p in self.pairs] + \
            [f"{sum(mbps.values()):.3f}", str(cur["drops_total"]), str(sum(cur["restarts"].values())),
             str(sum(v[0] for v in procs.values())), str(sum(v[1] for v in procs.values())),
             str(sum(v[2] for v in procs.values()))]
        with open(self.csv_path, "a") as f:
            f.write(",".join(row) + "\n")
        self.rows_in_file += 1
        if self.rows_in_file % 60 == 1:  # a progress line every 10 minutes; every row is in the CSV
            print(f"t={elapsed:.0f}s total {sum(mbps.values()):.1f} Mbit/s, drops {cur['drops_total']}", flush=True)

    def hourly(self, elapsed, cur, procs, label="hour"):
        self.hour_index += 1
        rows = self.hour_rows
        self.hour_rows = []
        span = sum(r[0] for r in rows) or 1.0
        avg = {p: sum(r[0] * r[1][p] for r in rows) / span for p in self.pairs}  # weighted by interval
        # The lowest interval among those the stall check judged (not the settling start nor
        # the wind-down after the streams ended); all of them when none was judged.
        judged = [r for r in rows if r[3]] or rows
        low = {p: min((r[1][p] for r in judged), default=0.0) for p in self.pairs}
        drops = {}
        for n, reasons in cur["drops"].items():
            for r, v in reasons.items():
                d = v - self.hour_start["drops"].get(n, {}).get(r, 0)
                if d:
                    drops[r] = drops.get(r, 0) + d
        self.hour_start = cur
        pings = self.ping_hour
        self.ping_hour = []
        p50 = statistics.median(p[0] for p in pings) if pings else 0.0
        p99 = max((p[1] for p in pings), default=0.0)
        pmax = max((p[2] for p in pings), default=0.0)
        # "Keeps growing": the hourly maximum of private memory (or fds) rose six hours
        # running, by more than 1 MiB (or 4 fds) in all.
        for name, m in self.hour_max.items():
            h = (self.history.get(name, []) + [m])[-7:]
            self.history[name] = h
            if len(h) == 7 and all(h[i + 1][0] > h[i][0] for i in range(6)) and h[6][0] - h[0][0] > 1024:
                self.fail(f"{name}: private memory rose six hours running, {h[0][0]} -> {h[6][0]} kB")
            if len(h) == 7 and all(h[i + 1][1] > h[i][1] for i in range(6)) and h[6][1] - h[0][1] > 4:
                self.fail(f"{name}: open fds rose six hours running, {h[0][1]} -> {h[6][1]}")
        self.hour_max = {}
        segs = " ".join(f"{k}:{v[0]}runs/gap{v[1]}ms/retried{v[2]}" for k, v in sorted(self.segments.items()))
        line = (f"{label} {self.hour_index} t={elapsed:.0f}s "
                f"pairs(avg/min10s Mbit/s) {' '.join(f'{a}>{b}={avg[(a, b)]:.3f}/{low[(a, b)]:.3f}' for a, b in self.pairs)} "
                f"lowest10s_total={min((r[2] for r in judged), default=0.0):.3f} "
                f"drops{json.dumps(drops, separators=(',', ':'))} "
                f"restarts={sum(cur['restarts'].values()) - sum(self.first['restarts'].values())} "
                f"udp_lost={self.udp_lost}/{self.udp_sent} "
                f"procs(anonkB/fds/threads) {' '.join(f'{n}={v[0]}/{v[1]}/{v[2]}' for n, v in sorted(procs.items()))} "
                f"ping_ms p50={p50:.2f} p99<={p99:.2f} max={pmax:.2f} "
                f"pings_lost={sum(v[0] - v[1] for v in self.ping.values())}/{sum(v[0] for v in self.ping.values())} "
                f"(settling {sum(v[3] - v[4] for v in self.ping.values())}/{sum(v[3] for v in self.ping.values())}) "
                f"malformed_reports={self.malformed} "
                f"segments {segs}")
        with open(self.summary_path, "a") as f:
            f.write(line + "\n")
        hourly_new = not os.path.exists(self.hourly_path)
        with open(self.hourly_path, "a") as f:
            if hourly_new:
                f.write("hour,t_s," + ",".join(f"{a}_to_{b}_avg,{a}_to_{b}_min" for a, b in self.pairs) +
                        ",ping_p50_ms,ping_p99_ms,ping_max_ms\n")
            f.write(f"{self.hour_index},{elapsed:.0f}," +
                    ",".join(f"{avg[p]:.3f},{low[p]:.3f}" for p in self.pairs) + f",{p50:.3f},{p99:.3f},{pmax:.3f}\n")
        print("SUMMARY " + line, flush=True)
        self.plot()

    def plot(self, wait=False):
        if subprocess.run(["sh", "-c", "command -v gnuplot"], capture_output=True).returncode != 0:
            return  # the board has no gnuplot: the host draws from the CSV (scripts/soak-plot.sh)
        if self.plotter is not None and self.plotter.poll() is None:
            return  # the previous one is still drawing
        # In the background: a slow plot never delays a sample.
        self.plotter = subprocess.Popen([os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak-plot.sh"),
                                         self.out, self.a.title], stdout=subprocess.DEVNULL)
        if wait:
            self.plotter.wait(timeout=300)

    # -- the run -------------------------------------------------------------------------
    def run(self):
        end = self.t0 + self.a.duration
        next_t = self.t0
        self.sample(checking=False)
        while time.monotonic() < end:
            # Never catch up with back-to-back samples after a slow one.
            next_t = max(next_t + self.a.period, time.monotonic())
            time.sleep(max(0.0, min(next_t, end) - time.monotonic()))
            # The last period before the end is not judged for stalls: the flows are
            # winding down on their own clocks; nor are the first --settle seconds, while
            # slow guests start theirs.
            now = time.monotonic()
            self.sample(checking=self.t0 + self.a.settle <= now < end - self.a.period)
        deadline = time.monotonic() + self.a.grace
        while len(self.done) < self.a.expect_done:
            if time.monotonic() > deadline:
                self.fail(f"only {sorted(self.done)} finished their load within {self.a.grace:.0f} s of the end")
            time.sleep(1)
            self.read_reports()
        self.read_reports()
        self.sample(checking=False)
        if self.a.expect_done and self.prev is not None:  # every host's final counters are in
            self.check_udp(self.prev, final=True)
        if len(self.hour_rows) >= 2:  # the last partial hour, unless it is only the final sample
            self.hourly(time.monotonic() - self.t0, self.prev, self.check_growth(self.prev, 0), "end")
        # Every stream ran back to back for the whole duration: about one run per SEGMENT
        # seconds (on a loaded machine a run overruns its -t by its set-up and wind-down, so
        # count with half a segment of slack), and at least one roll-over when the soak is
        # longer than a segment. Continuity within runs is the stall check's job.
        need = max(2 if self.a.duration > self.a.segment else 1,
                   int(self.a.duration // (1.5 * self.a.segment)))
        for proto, pair in self.streams:
            got = self.segments.get(f"{proto} {pair}", [0])[0]
            if got < need:
                self.fail(f"{proto} {pair}: {got} runs completed, expected at least {need}")
        print(f"soak: passed; {self.csv_path}, {self.hourly_path}, {self.summary_path}", flush=True)

    def dump(self):
        out = []
        for cmd in ("channels", "stats"):
            try:
                out.append(f"== vswitchctl {cmd}\n" + self.ctl(cmd))
            except Exception as ex:  # the switch may be what failed
                out.append(f"== vswitchctl {cmd} failed: {ex}\n")
        out.append("== every host's latest drop counters (VSOAK NET)\n" +
                   "".join(line + "\n" for line in self.net_line.values()))
        return "".join(out)


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    m = Monitor(a)
    try:
        m.run()
        rc = 0
    except Failed as e:
        msg, rc = f"SOAK FAILED at t={time.monotonic() - m.t0:.0f}s: {e}", 1
    except Exception:  # a defect of the monitor itself: still loud, still with the switch's state
        msg, rc = f"SOAK FAILED at t={time.monotonic() - m.t0:.0f}s: the monitor broke:\n{traceback.format_exc()}", 1
    if rc:
        with open(os.path.join(a.out, "failure.txt"), "a") as f:
            f.write(msg + "\n" + m.dump())
        print(msg, file=sys.stderr, flush=True)
    try:
        m.plot(wait=True)
    except Exception as ex:
        print(f"soak: no PNG: {ex}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
