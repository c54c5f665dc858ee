#!/usr/bin/env python3
"""The sampler and judge of a soak (scripts/soak.sh, scripts/soak-vm.sh).

Every PERIOD seconds it reads the switch's counters (`vswitchctl stats --json`) and the
endpoint processes' /proc entries, appends a CSV row, reads the traffic reports that the
load generators append to files (lines starting with "VSOAK ", see parse_report), and
fails loudly - exit status 1, the reason, `vswitchctl channels` and `stats` in
failure.txt - when:
  * an expected pair moves nothing for STALL seconds (a stalled flow: the failure a soak
    exists to catch);
  * a load segment ends with an error (an iperf3 run that failed);
  * UDP datagrams are lost beyond what counters explain (switch drops + the hosts'
    socket and interface drop counters): a frame lost without a counted reason;
  * a generator frame arrives corrupt, or generators lose more than the switch dropped;
  * a process's private memory, open descriptors or threads keep growing;
  * pings are lost beyond the bound (--ping-loss, a fraction of those sent per pair, plus
    one: a reply can be in flight when a ping segment ends).
Every HOUR seconds it writes one summary line (summary.txt and stdout) and redraws the PNG.

Nothing it keeps grows with the run's length: the 10 s CSV is rotated daily (soak.csv,
soak.csv.1: the last one to two days at full resolution), hourly.csv has one row an hour,
report files are truncated once read (their writers append, so nothing is lost), and its
own state is bounded by the number of pairs and one hour of samples.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROWS_PER_FILE = 8640  # 24 h of 10 s rows


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
    p.add_argument("--reports", nargs="*", default=[], help="files the load generators append VSOAK lines to")
    p.add_argument("--rotate-reports", type=int, default=1 << 20,
                   help="truncate a report file once read past this many bytes (0: never)")
    p.add_argument("--streams", default="",
                   help="iperf3 streams that must report segments, 'tcp:a>b,udp:c>d'")
    p.add_argument("--segment", type=int, default=3600, help="the streams' segment length (s)")
    p.add_argument("--pids", default="", help="other processes to watch for growth, 'name=pid,...'")
    p.add_argument("--ping-loss", default="0.001",
                   help="pings a pair may lose, a fraction of those sent (+1), or 'counted': every lost "
                        "ping must be explained by drop counters, as UDP datagrams are")
    p.add_argument("--expect-done", type=int, default=0,
                   help="wait (up to --grace s) after the load for this many 'VSOAK DONE' lines")
    p.add_argument("--grace", type=float, default=600.0)
    p.add_argument("--title", default="vswitch soak")
    p.add_argument("--udp-slack", type=int, default=20,
                   help="datagrams iperf3 may count lost that were only late at a segment's end")
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


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def parse_report(line):
    """'VSOAK KIND k=v k=v ...' -> (KIND, {k: v}); anything else -> None."""
    line = line.strip().replace("\r", "")
    i = line.find("VSOAK ")
    if i < 0:
        return None
    words = line[i:].split()
    if len(words) < 2:
        return None
    fields = {}
    for w in words[2:]:
        k, sep, v = w.partition("=")
        if sep:
            fields[k] = v
    return words[1], fields


class Monitor:
    def __init__(self, a):
        self.a = a
        self.out = a.out
        self.csv_path = os.path.join(self.out, "soak.csv")
        self.hourly_path = os.path.join(self.out, "hourly.csv")
        self.summary_path = os.path.join(self.out, "summary.txt")
        self.pairs = [tuple(p.split(">")) for p in a.pairs.split(",") if p]
        self.extra_pids = dict(kv.split("=") for kv in a.pids.split(",") if kv)
        self.offsets = {}
        self.rows_in_file = 0
        self.t0 = time.monotonic()
        self.hour_index = 0
        self.hour_rows = []          # (t, {pair: mbps}, total_mbps): at most one hour of rows
        self.hour_start_drops = None
        self.zero_since = {}
        self.baselines = {}          # pid -> (anon, fds, threads)
        self.growth_hours = {}       # name -> consecutive hours whose max anon rose
        self.last_hour_anon = {}
        self.over = {}               # pid -> consecutive samples over the limit
        # From the reports:
        self.segments = {}           # stream -> [count, failed, max_gap_ms, bytes]
        self.udp_lost = 0            # every datagram the completed UDP segments lost
        self.udp_sent = 0
        self.udp_pending = []        # (read batch, lost) not yet covered by every host's counters
        self.udp_judged = 0          # lost datagrams whose counters have been read since
        self.batch = 0               # read_reports() calls so far
        self.net = {}                # host -> latest cumulative drop counters (sum)
        self.net_batch = {}          # host -> batch its latest counters came in
        self.net_start = {}
        self.ping = {}               # (src, dst) -> [sent, recv]
        self.ping_hour = []          # (p50, p99, max) of each ping report this hour
        self.done = set()
        self.logs = {}               # (src, proto) -> the last iperf3 lines of a failed run
        self.prev = None
        self.first = None

    # -- the switch's counters ----------------------------------------------------------
    def ctl(self, *args):
        r = subprocess.run([self.a.ctl, "--config", self.a.config, *args], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise Failed(f"vswitchctl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def stats(self):
        d = json.loads(self.ctl("stats", "--json"))
        return {e["name"]: e for e in d["endpoints"]}

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
            self.offsets[path] = off + end + 1
            for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
                r = parse_report(raw)
                if r:
                    self.last_line = raw.strip()
                    self.take(*r)
            if self.a.rotate_reports and self.offsets[path] > self.a.rotate_reports:
                # Writers append (O_APPEND), so after truncation they continue at the new end.
                os.truncate(path, 0)
                self.offsets[path] = 0

    def take(self, kind, f):
        if kind == "SEG":
            key = f"{f.get('proto', '?')} {f.get('src', '?')}>{f.get('dst', '?')}"
            s = self.segments.setdefault(key, [0, 0, 0, 0])
            s[0] += 1
            s[2] = max(s[2], int(f.get("gap_ms", "0") or 0))
            s[3] += int(f.get("bytes", "0") or 0)
            if f.get("rc", "0") != "0":
                s[1] += 1
                said = " | ".join(self.logs.get((f.get("src"), f.get("proto")), []))
                self.fail(f"segment {s[0]} of {key} failed (rc {f.get('rc')}): {f}; iperf3 said: {said}")
            if f.get("proto") == "udp":
                lost = int(f.get("lost", "0") or 0)
                self.udp_lost += lost
                self.udp_sent += int(f.get("total", "0") or 0)
                self.udp_pending.append((self.batch, lost))
        elif kind == "NET":
            host = f.get("host", "?")
            total = sum(int(v) for k, v in f.items() if k != "host" and v.isdigit())
            self.net_start.setdefault(host, total)
            self.net[host] = total
            self.net_batch[host] = self.batch
        elif kind == "PING":
            key = (f.get("src", "?"), f.get("dst", "?"))
            sent, recv = int(f.get("sent", "0")), int(f.get("recv", "0"))
            p = self.ping.setdefault(key, [0, 0])
            p[0] += sent
            p[1] += recv
            if recv:
                self.ping_hour.append((float(f.get("p50", 0)), float(f.get("p99", 0)), float(f.get("max", 0))))
            lost = p[0] - p[1]
            if self.a.ping_loss == "counted":
                self.udp_pending.append((self.batch, sent - recv))
            elif lost > float(self.a.ping_loss) * p[0] + 1:
                self.fail(f"pings {key[0]} -> {key[1]}: {lost} of {p[0]} lost "
                          f"(bound {float(self.a.ping_loss):.2%} + 1)")
        elif kind == "LOG":
            key = (f.get("src"), f.get("proto"))
            self.logs[key] = (self.logs.get(key, []) + [self.last_line.split(f"proto={key[1]} ", 1)[-1]])[-4:]
        elif kind == "DONE":
            self.done.add(f.get("host", "?"))

    # -- one sample ----------------------------------------------------------------------
    def sample(self, checking):
        now = time.monotonic()
        st = self.stats()
        self.read_reports()
        cur = {
            "t": now,
            "pair_bytes": {p: st[p[0]]["peers"][p[1]]["out_bytes"] for p in self.pairs},
            "drops": {n: dict(e["drops"]) for n, e in st.items()},
            "drops_total": sum(e["drops_total"] for e in st.values()),
            "bad": sum(e.get("vu_bad_chains", 0) + e.get("vu_protocol_errors", 0) for e in st.values()),
            "gen_lost": sum(e.get("gen_lost", 0) for e in st.values()),
            "gen_bad": sum(e.get("gen_bad", 0) for e in st.values()),
            "restarts": sum(e["restarts"] for e in st.values()),
            "pids": {n: e["pid"] for n, e in st.items()},
            "rx": sum(e.get("rx_bytes", 0) for e in st.values()),
        }
        if self.first is None:
            self.first = cur
            self.hour_start_drops = cur["drops"]
        if self.prev is None:
            self.prev = cur
            return
        dt = max(1e-3, now - self.prev["t"])
        mbps = {p: (cur["pair_bytes"][p] - self.prev["pair_bytes"][p]) * 8 / dt / 1e6 for p in self.pairs}
        elapsed = now - self.t0
        if checking:
            for p, v in mbps.items():
                if v == 0:
                    self.zero_since.setdefault(p, self.prev["t"])
                    if now - self.zero_since[p] >= self.a.stall:
                        self.fail(f"{p[0]} -> {p[1]} moved nothing for {now - self.zero_since[p]:.0f} s")
                else:
                    self.zero_since.pop(p, None)
        if cur["gen_bad"]:
            self.fail(f"{cur['gen_bad']} corrupt generator frames")
        if cur["gen_lost"] > cur["drops_total"]:
            self.fail(f"generators lost {cur['gen_lost']} frames but the switch counted only "
                      f"{cur['drops_total']} drops")
        if cur["bad"] != self.first["bad"]:
            self.fail(f"{cur['bad'] - self.first['bad']} bad descriptor chains / protocol errors")
        self.check_udp(cur)
        procs = self.check_growth(cur, elapsed)
        self.write_row(elapsed, mbps, cur, procs)
        self.hour_rows.append((elapsed, mbps, sum(mbps.values())))
        self.prev = cur
        if elapsed >= (self.hour_index + 1) * self.a.hour:
            self.hourly(elapsed, cur, procs)

    def check_udp(self, cur, final=False):
        # A segment's losses are judged once every host has reported its counters from a
        # later read than the segment's own line: the receiver's socket drops happen on
        # the other host, which reports them once a minute.
        covered = float("inf") if final else min(self.net_batch.values(), default=0)
        judged = [lost for b, lost in self.udp_pending if b < covered]
        if not judged:
            return
        self.udp_pending = [(b, lost) for b, lost in self.udp_pending if b >= covered]
        self.udp_judged += sum(judged)
        counted = (cur["drops_total"] - self.first["drops_total"]) + \
            sum(self.net[h] - self.net_start[h] for h in self.net)
        if self.udp_judged > counted + self.udp_judged // 100 + self.a.udp_slack:
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
            if elapsed < self.a.warmup:
                continue
            base = self.baselines.get(pid)
            if base is None:  # a new process (first sample after warm-up, or a restart)
                self.baselines[pid] = info
                continue
            over = info[0] > base[0] + 8192 or info[1] > base[1] + 8 or info[2] > base[2] + 2
            self.over[pid] = self.over.get(pid, 0) + 1 if over else 0
            if self.over[pid] >= 3:
                self.fail(f"{name} (pid {pid}) keeps growing: RssAnon {base[0]} -> {info[0]} kB, "
                          f"fds {base[1]} -> {info[1]}, threads {base[2]} -> {info[2]}")
        return procs

    # -- output --------------------------------------------------------------------------
    def header(self):
        cols = ["t_s"] + [f"{a}_to_{b}_mbps" for a, b in self.pairs] + \
            ["total_mbps", "drops_total", "bad_chains", "restarts", "anon_kb", "fds", "threads"]
        return ",".join(cols) + "\n"

    def write_row(self, elapsed, mbps, cur, procs):
        if self.rows_in_file == 0 or self.rows_in_file >= ROWS_PER_FILE:
            if self.rows_in_file:
                os.replace(self.csv_path, self.csv_path + ".1")
            with open(self.csv_path, "w") as f:
                f.write(self.header())
            self.rows_in_file = 0
        row = [f"{elapsed:.0f}"] + [f"{mbps[p]:.1f}" for p in self.pairs] + \
            [f"{sum(mbps.values()):.1f}", str(cur["drops_total"]), str(cur["bad"]), str(cur["restarts"]),
             str(sum(v[0] for v in procs.values())), str(sum(v[1] for v in procs.values())),
             str(sum(v[2] for v in procs.values()))]
        with open(self.csv_path, "a") as f:
            f.write(",".join(row) + "\n")
        self.rows_in_file += 1
        print(",".join(row), flush=True)

    def hourly(self, elapsed, cur, procs, label="hour"):
        self.hour_index += 1
        rows = self.hour_rows
        self.hour_rows = []
        avg = {p: statistics.fmean(r[1][p] for r in rows) if rows else 0.0 for p in self.pairs}
        low = {p: min((r[1][p] for r in rows), default=0.0) for p in self.pairs}
        drops = {}
        for n, reasons in cur["drops"].items():
            for r, v in reasons.items():
                d = v - self.hour_start_drops.get(n, {}).get(r, 0)
                if d:
                    drops[r] = drops.get(r, 0) + d
        self.hour_start_drops = cur["drops"]
        pings = self.ping_hour
        self.ping_hour = []
        p50 = statistics.median(p[0] for p in pings) if pings else 0.0
        p99 = max((p[1] for p in pings), default=0.0)
        pmax = max((p[2] for p in pings), default=0.0)
        # "keeps growing": the hourly maximum of private memory rose six hours running.
        for name, info in procs.items():
            last = self.last_hour_anon.get(name)
            self.growth_hours[name] = self.growth_hours.get(name, 0) + 1 if last is not None and info[0] > last else 0
            self.last_hour_anon[name] = info[0]
            if self.growth_hours[name] >= 6:
                self.fail(f"{name}: private memory rose six hours running (now {info[0]} kB)")
        segs = " ".join(f"{k}:{v[0]}seg/gap{v[2]}ms" for k, v in sorted(self.segments.items()))
        line = (f"{label} {self.hour_index} t={elapsed:.0f}s "
                f"pairs(avg/min10s Mbit/s) {' '.join(f'{a}>{b}={avg[(a, b)]:.2f}/{low[(a, b)]:.2f}' for a, b in self.pairs)} "
                f"lowest10s_total={min((r[2] for r in rows), default=0.0):.0f} "
                f"drops{json.dumps(drops, separators=(',', ':'))} "
                f"udp_lost={self.udp_lost}/{self.udp_sent} "
                f"procs(anonkB/fds/threads) {' '.join(f'{n}={v[0]}/{v[1]}/{v[2]}' for n, v in sorted(procs.items()))} "
                f"ping_ms p50={p50:.2f} p99<={p99:.2f} max={pmax:.2f} "
                f"pings_lost={sum(v[0] - v[1] for v in self.ping.values())}/{sum(v[0] for v in self.ping.values())} "
                f"segments {segs}")
        with open(self.summary_path, "a") as f:
            f.write(line + "\n")
        hourly_new = not os.path.exists(self.hourly_path)
        with open(self.hourly_path, "a") as f:
            if hourly_new:
                f.write("hour,t_s," + ",".join(f"{a}_to_{b}_avg,{a}_to_{b}_min" for a, b in self.pairs) +
                        ",ping_p50_ms,ping_p99_ms,ping_max_ms\n")
            f.write(f"{self.hour_index},{elapsed:.0f}," +
                    ",".join(f"{avg[p]:.1f},{low[p]:.1f}" for p in self.pairs) + f",{p50:.3f},{p99:.3f},{pmax:.3f}\n")
        print("SUMMARY " + line, flush=True)
        self.plot()

    def plot(self):
        if subprocess.run(["sh", "-c", "command -v gnuplot"], capture_output=True).returncode != 0:
            return  # the board has no gnuplot: the host draws from the CSV (scripts/soak-plot.sh)
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak-plot.sh"), self.out,
                        self.a.title], check=False, timeout=120)

    # -- the run -------------------------------------------------------------------------
    def run(self):
        end = self.t0 + self.a.duration
        next_t = self.t0
        self.sample(checking=False)
        while time.monotonic() < end:
            next_t += self.a.period
            time.sleep(max(0.0, min(next_t, end) - time.monotonic()))
            # The last period before the end is not judged for stalls: the flows are
            # winding down on their own clocks.
            self.sample(checking=time.monotonic() < end - self.a.period)
        deadline = time.monotonic() + self.a.grace
        while len(self.done) < self.a.expect_done:
            if time.monotonic() > deadline:
                self.fail(f"only {sorted(self.done)} finished their load within {self.a.grace:.0f} s of the end")
            time.sleep(1)
            self.read_reports()
        self.read_reports()
        self.sample(checking=False)
        if self.a.expect_done:  # every host's final counters are in: judge all segments
            self.check_udp(self.prev, final=True)
        if len(self.hour_rows) >= 2:  # the last partial hour, unless it is only the final sample
            self.hourly(time.monotonic() - self.t0, self.prev, self.check_growth(self.prev, 0), "end")
        # Every stream ran back to back for the whole duration: about one run per SEGMENT
        # seconds (on a loaded machine a run overruns its -t by its set-up and wind-down, so
        # count with half a segment of slack), and at least one roll-over when the soak is
        # longer than a segment. Continuity within runs is the stall check's job.
        need = max(2 if self.a.duration > self.a.segment else 1,
                   int(self.a.duration // (1.5 * self.a.segment)))
        for stream in (s.replace(":", " ", 1) for s in self.a.streams.split(",") if s):
            got = self.segments.get(stream, [0])[0]
            if got < need:
                self.fail(f"{stream}: {got} segments completed, expected at least {need}")
        print(f"soak: passed; {self.csv_path}, {self.hourly_path}, {self.summary_path}", flush=True)


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    m = Monitor(a)
    try:
        m.run()
    except Failed as e:
        msg = f"SOAK FAILED at t={time.monotonic() - m.t0:.0f}s: {e}"
        with open(os.path.join(a.out, "failure.txt"), "a") as f:
            f.write(msg + "\n")
            for cmd in ("channels", "stats"):
                try:
                    f.write(f"== vswitchctl {cmd}\n" + m.ctl(cmd))
                except Exception as ex:  # the switch may be what failed
                    f.write(f"== vswitchctl {cmd} failed: {ex}\n")
        print(msg, file=sys.stderr, flush=True)
        m.plot()
        return 1
    m.plot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
