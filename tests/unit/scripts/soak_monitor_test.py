#!/usr/bin/env python3
"""The soak monitor's judgement of what the load generators report and of the pairs'
floors (scripts/soak_monitor.py), fed report lines as the guests write them. The switch
side (vswitchctl) is exercised by the soak tests (tests/integration/soak_*.sh)."""
import importlib.util
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("soak_monitor", os.path.join(HERE, "../../../scripts/soak_monitor.py"))
sm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm)


def monitor(out, *extra):
    sys.argv = ["soak_monitor.py", "--ctl", "/bin/false", "--config", "/dev/null", "--out", out,
                "--duration", "3600", *extra]
    return sm.Monitor(sm.parse_args())


def ping(m, sent, recv, src="vm0", dst="vm1"):
    m.take(f"VSOAK PING src={src} dst={dst} sent={sent} recv={recv}", "PING",
           {"src": src, "dst": dst, "sent": str(sent), "recv": str(recv), "p50": "1", "p99": "2", "max": "3"})


class PingLoss(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def test_loss_beyond_the_bound_fails(self):
        m = monitor(self.dir.name)
        ping(m, 60, 59)  # one a report is allowed
        with self.assertRaisesRegex(sm.Failed, "pings vm0 -> vm1: 3 of 120 lost"):
            ping(m, 60, 58)

    def test_losses_while_settling_are_shown_not_judged(self):
        m = monitor(self.dir.name, "--settle", "120")
        ping(m, 60, 50)   # guests still starting: not judged
        m.t0 -= 1000      # the settling time is over
        ping(m, 60, 59)   # judged on its own: within the bound
        self.assertEqual(m.ping[("vm0", "vm1")][:3], [120, 109, 2])
        with self.assertRaisesRegex(sm.Failed, "3 of 120 lost"):
            ping(m, 60, 58)

    def test_a_report_read_just_after_settling_may_cover_it(self):
        m = monitor(self.dir.name, "--settle", "120")
        m.t0 -= 150       # past --settle, but the minute reported may reach back into it
        ping(m, 60, 40)


class Floors(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def test_a_pair_floor_is_the_sum_of_its_streams(self):
        m = monitor(self.dir.name, "--pairs", "vm0>vm1,vm1>vm0", "--streams", "tcp:vm0>vm1,udp:vm1>vm0",
                    "--udp-mbps", "0.064", "--tcp-floor", "0.01", "--udp-floor", "0.25")
        self.assertAlmostEqual(m.floor[("vm0", "vm1")], 0.01)
        self.assertAlmostEqual(m.floor[("vm1", "vm0")], 0.016)

    def test_udp_floor_zero_leaves_only_moving_at_all(self):
        m = monitor(self.dir.name, "--streams", "udp:vm1>vm0", "--udp-mbps", "5", "--udp-floor", "0")
        self.assertEqual(m.floor[("vm1", "vm0")], 0.0)

    def test_default_udp_floor_is_half_the_rate(self):
        m = monitor(self.dir.name, "--streams", "udp:vm1>vm0", "--udp-mbps", "5")
        self.assertAlmostEqual(m.floor[("vm1", "vm0")], 2.5)


class HourlySummary(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def test_the_lowest_interval_is_among_the_judged_ones(self):
        m = monitor(self.dir.name, "--pairs", "vm0>vm1")
        m.plot = lambda wait=False: None  # no PNG here
        cur = {"drops": {}, "restarts": {}}
        m.first = m.hour_start = cur
        # Settling start, two judged intervals, then the wind-down after the streams ended.
        m.hour_rows = [(10.0, {("vm0", "vm1"): 0.0}, 0.0, False), (10.0, {("vm0", "vm1"): 0.4}, 0.4, True),
                       (10.0, {("vm0", "vm1"): 0.2}, 0.2, True), (10.0, {("vm0", "vm1"): 0.0}, 0.0, False)]
        m.hourly(3600.0, cur, {})
        with open(os.path.join(self.dir.name, "hourly.csv")) as f:
            row = f.read().splitlines()[1].split(",")
        self.assertEqual(row[2:4], ["0.150", "0.200"])  # the average over every interval, the judged minimum


if __name__ == "__main__":
    unittest.main()
