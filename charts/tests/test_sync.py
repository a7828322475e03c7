"""The config-sync loop (charts/berth/files/sync.sh) run for real, with busybox's sh as in the pod,
on a directory tree standing in for the node: a fresh node without config.d, a stand-in berthd (a
process named berthd that counts the SIGHUPs it gets, with its pid in the lock file), changes of the
ConfigMap, the uninstall label, and processes that must not be signalled."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

import chartlib as c

SCRIPT = c.CHART / "files" / "sync.sh"
# The pod runs busybox's sh; Debian's busybox-static (hack/install-deps.sh) is the same ash.
SHELL = [shutil.which("busybox"), "sh"] if shutil.which("busybox") else ["/bin/sh"]

# A stand-in berthd: named berthd (prctl PR_SET_NAME, which is what /proc/PID/comm shows), it appends
# a line to argv[1] on every SIGHUP when argv[2] is "catch", and otherwise leaves SIGHUP's default
# action (death) in place. It says it is ready by creating argv[1].
FAKE_BERTHD = textwrap.dedent("""
    import ctypes, signal, sys, time
    ctypes.CDLL(None).prctl(15, b"berthd", 0, 0, 0)
    log = sys.argv[1]
    if sys.argv[2] == "catch":
        signal.signal(signal.SIGHUP, lambda *_: open(log, "a").write("hup\\n"))
    open(log, "a").close()
    while True:
        time.sleep(1)
""")


def wait_for(what, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Node(unittest.TestCase):
    """A directory tree standing in for a node, and the processes of a test."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="berth-chart-sync."))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        # kubelet creates the hostPath dir (DirectoryOrCreate); config.d is the loop's to make.
        self.config_dir = self.tmp / "host/etc/berth"
        self.config_dir.mkdir(parents=True)
        self.dropin = self.config_dir / "config.d/50-helm.toml"
        self.source = self.tmp / "config/50-helm.toml"
        self.source.parent.mkdir()
        self.source.write_text('[cgroup]\ndriver = "systemd"\n')
        self.labels = self.tmp / "podinfo/labels"
        self.labels.parent.mkdir()
        self.labels.write_text('app.kubernetes.io/name="berth"\n')
        self.lock = self.tmp / "host/run/berth/berth.sock.lock"
        self.lock.parent.mkdir(parents=True)
        self.state = self.tmp / "state"
        self.state.mkdir()
        self.hups = self.tmp / "hups"
        self.loop = None

    def start_process(self, argv):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.addCleanup(self.stop, proc)
        return proc

    @staticmethod
    def stop(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def start_berthd(self, catch=True, log=None):
        log = log or self.hups
        proc = self.start_process([sys.executable, "-c", FAKE_BERTHD, str(log),
                                   "catch" if catch else "default"])
        wait_for("the stand-in berthd", log.exists)
        wait_for("its name", lambda: Path(f"/proc/{proc.pid}/comm").read_text() == "berthd\n")
        self.lock.write_text(str(proc.pid))
        return proc

    def start_loop(self, **env):
        env = {"PATH": os.environ["PATH"], "SOURCE": str(self.source),
               "CONFIG_DIR": str(self.config_dir), "LOCK_FILE": str(self.lock),
               "LABELS_FILE": str(self.labels), "STATE_DIR": str(self.state),
               "SYNC_INTERVAL": "0.1", "RELOAD": "true", **env}
        self.loop_log = self.tmp / "loop.log"
        out = open(self.loop_log, "w")
        self.addCleanup(out.close)
        self.loop = subprocess.Popen([*SHELL, str(SCRIPT)], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(self.stop, self.loop)
        return self.loop

    def hup_count(self):
        return self.hups.read_text().count("hup") if self.hups.exists() else 0

    def wait_written(self):
        wait_for("the drop-in", lambda: self.dropin.exists()
                 and self.dropin.read_text() == self.source.read_text())

    def replace_source(self, text):
        # As kubelet updates a ConfigMap volume: a new file renamed into place.
        tmp = self.source.with_suffix(".new")
        tmp.write_text(text)
        tmp.rename(self.source)

    def settle(self):
        """Several loop iterations (0.1 s apart) pass."""
        time.sleep(0.6)


class SyncLoop(Node):
    def test_fresh_node_change_and_uninstall(self):
        self.start_berthd()
        loop = self.start_loop()
        self.wait_written()
        self.assertEqual(self.dropin.stat().st_mode & 0o777, 0o644)
        wait_for("SIGHUP after the first write", lambda: self.hup_count() == 1)
        self.settle()
        self.assertEqual(self.hup_count(), 1, "no reload while nothing changes")
        self.assertEqual(os.listdir(self.dropin.parent), ["50-helm.toml"], "no temporary left")

        self.replace_source('[cgroup]\ndriver = "cgroupfs"\n')
        self.wait_written()
        wait_for("SIGHUP after the change", lambda: self.hup_count() == 2)

        # A hand edit on the node is put back.
        self.dropin.write_text("# edited\n")
        self.wait_written()
        wait_for("SIGHUP after the repair", lambda: self.hup_count() == 3)

        self.labels.write_text('app.kubernetes.io/name="berth"\nberth.dev/uninstall="true"\n')
        wait_for("the drop-in removed", lambda: not self.dropin.exists())
        wait_for("SIGHUP after the removal", lambda: self.hup_count() == 4)
        wait_for("NotReady", (self.state / "uninstalled").exists)
        self.settle()
        self.assertFalse(self.dropin.exists(), "not written again once uninstalling")
        self.assertEqual(self.hup_count(), 4)
        self.assertIsNone(loop.poll(), "the pod idles until Helm deletes it")

        loop.send_signal(signal.SIGTERM)
        self.assertEqual(loop.wait(timeout=5), 0)

    def test_sigterm_keeps_the_dropin(self):
        self.start_berthd()
        loop = self.start_loop(SYNC_INTERVAL="30")
        self.wait_written()
        start = time.monotonic()
        loop.send_signal(signal.SIGTERM)
        self.assertEqual(loop.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 3, "a long sleep does not delay the exit")
        self.assertTrue(self.dropin.exists(), "a pod stopping (node shutdown, rollout) keeps it")

    def test_unrelated_pid_not_signalled(self):
        # The lock names a process that is not berthd (a reused pid): SIGHUP would end it.
        sleeper = self.start_process(["sleep", "60"])
        self.lock.write_text(str(sleeper.pid))
        self.start_loop()
        self.wait_written()
        self.settle()
        self.assertIsNone(sleeper.poll())
        self.assertIn("is not a running berthd", self.loop_log.read_text())

    def test_berthd_without_sighup_handler_not_signalled(self):
        # A berthd too old to reload dies of SIGHUP: it must be left to read the file at its start.
        berthd = self.start_berthd(catch=False)
        self.start_loop()
        self.wait_written()
        self.settle()
        self.assertIsNone(berthd.poll(), "the berthd without a handler was signalled")
        self.assertIn("does not handle SIGHUP", self.loop_log.read_text())

    def test_no_berthd_yet(self):
        for lock in ("", "garbage"):
            with self.subTest(lock=lock):
                self.lock.write_text(lock)
                loop = self.start_loop()
                self.wait_written()
                self.settle()
                self.assertIsNone(loop.poll())
                self.assertIn("no berthd pid", self.loop_log.read_text())
                self.stop(loop)
                self.dropin.unlink()

    def test_reload_disabled(self):
        self.start_berthd()
        self.start_loop(RELOAD="false")
        self.wait_written()
        self.settle()
        self.assertEqual(self.hup_count(), 0)

    def test_unwritable_dir_is_retried(self):
        # A file where config.d belongs makes every write fail (mode bits would not stop root).
        self.start_berthd()
        (self.config_dir / "config.d").write_text("not a directory")
        loop = self.start_loop()
        self.settle()
        self.assertIsNone(loop.poll(), "a failed write does not end the loop")
        self.assertIn("could not write", self.loop_log.read_text())
        self.assertEqual(self.hup_count(), 0)
        (self.config_dir / "config.d").unlink()
        self.wait_written()
        wait_for("SIGHUP once written", lambda: self.hup_count() == 1)


class RealBerthd(Node):
    """The loop against a real berthd (target/debug, as `make e2e` builds it): the pid format of its
    lock file, its process name and its SIGHUP disposition are the real ones. A berthd with a
    SIGHUP handler gets the signal and reloads; one without is left alone and keeps running."""

    def setUp(self):
        super().setUp()
        self.berthd = c.REPO / "target/debug/berthd"
        if not self.berthd.exists():
            self.skipTest("no target/debug/berthd (make e2e builds it)")
        if os.geteuid() != 0:
            self.skipTest("berthd runs as root")
        # berthd's root must be on a disk filesystem (its idmapped-mount probe), like e2e's.
        base = Path(os.environ.get("BERTH_TEST_DIR", "/var/tmp/berth-test")) / "chart"
        base.mkdir(parents=True, exist_ok=True)
        self.node = Path(tempfile.mkdtemp(prefix="berthd.", dir=base))
        self.addCleanup(shutil.rmtree, self.node, ignore_errors=True)
        self.config_dir = self.node / "etc"
        self.dropin = self.config_dir / "config.d/50-helm.toml"
        self.lock = self.node / "state/berth.sock.lock"
        (self.config_dir / "config.d").mkdir(parents=True)
        (self.node / "cni").mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (self.config_dir / "config.toml").write_text(
            f'root = "{self.node}/root"\nstate = "{self.node}/state"\n'
            f'listen = "unix://{self.node}/state/berth.sock"\n\n'
            f'[cni]\nconf_dir = "{self.node}/cni"\n')
        # The chart's own drop-in, listening where the test's berthd does.
        docs = c.render(sets=["metrics.address=127.0.0.1", f"metrics.port={port}"])
        self.source.write_text(c.configmap(docs, "-config")["data"]["50-helm.toml"])

    def start_real_berthd(self):
        log = open(self.node / "berthd.log", "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([self.berthd, "--config", self.config_dir / "config.toml"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self.stop_berthd, proc)
        wait_for("berthd's socket", (self.node / "state/berth.sock").exists, timeout=30)
        self.assertEqual(self.lock.read_text().strip(), str(proc.pid))
        return proc

    def stop_berthd(self, proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(self.node) in line]
        self.assertEqual(mounts, [], "berthd left mounts behind")

    def test_real_berthd(self):
        berthd = self.start_real_berthd()
        self.start_loop()
        self.wait_written()
        sent = f"sent SIGHUP to berthd (pid {berthd.pid})"
        skipped = f"berthd (pid {berthd.pid}) does not handle SIGHUP"
        wait_for("the loop's decision", lambda: sent in self.loop_log.read_text()
                 or skipped in self.loop_log.read_text())
        self.settle()
        self.assertIsNone(berthd.poll(), "berthd survives the loop")
        if sent in self.loop_log.read_text():
            wait_for("berthd's reload", lambda: "reload" in
                     (self.node / "berthd.log").read_text().lower())

        self.labels.write_text('berth.dev/uninstall="true"\n')
        wait_for("the drop-in removed", lambda: not self.dropin.exists())
        wait_for("NotReady", (self.state / "uninstalled").exists)
        self.settle()
        self.assertIsNone(berthd.poll(), "berthd survives the uninstall")
