#!/usr/bin/env python3
"""Tests of charts/berth with a real helm (run by hack/chart-test.sh, `make chart-test`).

Lint and render the chart with several sets of values, validate every rendered object against the
Kubernetes schemas and the prometheus-operator CRD schemas, and assert on what the fixes are about:
the drop-in's [metrics] address and the pod's port are one value, bad values are refused by
values.schema.json, extra labels, the uninstall hook, the alerts' metrics and PromQL, the dashboard's
__inputs. test_sync.py runs the config-sync loop itself.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

import chartlib as c
import promql_parser

EVERYTHING = {
    "commonLabels": {"team": "nodes"},
    "metrics": {"podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                               "scrapeTimeout": "10s"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                       "ruleLabels": {"team": "nodes"}},
}


def dropin(docs):
    return tomllib.loads(c.configmap(docs, "-config")["data"]["50-helm.toml"])


class LintAndValidate(unittest.TestCase):
    def test_lint_strict(self):
        for values in (None, EVERYTHING):
            with self.subTest(values=values):
                out = c.lint(values)
                self.assertIn("0 chart(s) failed", out)
                self.assertNotRegex(out, r"\[(WARNING|ERROR)\]")

    def test_every_object_validates(self):
        cases = {
            "defaults": {},
            "everything": EVERYTHING,
            "no reload, no cleanup, no dashboard": {
                "sync": {"reload": False}, "cleanup": {"enabled": False},
                "dashboard": {"enabled": False}, "priorityClassName": ""},
        }
        for name, values in cases.items():
            for version in c.KUBE_VERSIONS:
                with self.subTest(name, kube_version=version):
                    docs = c.render(values, kube_version=version)
                    for doc in docs:
                        c.validate(doc, versions=(version,))
        kinds = sorted(d["kind"] for d in c.render(EVERYTHING))
        self.assertEqual(kinds, sorted([
            "ConfigMap", "ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule",
            "ServiceAccount", "Role", "RoleBinding", "Job"]))

    def test_validators_reject_what_they_should(self):
        # The validators themselves: an object that is wrong must fail them.
        docs = c.render(EVERYTHING)
        monitor = c.one(docs, "PodMonitor")
        monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "30"
        with self.assertRaises(Exception):
            c.validate(monitor)
        monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "30s"
        monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
        with self.assertRaises(Exception):
            c.validate(monitor)
        _, container = c.sync_container(docs)
        ds = c.one(docs, "DaemonSet")
        container["ports"][0]["containerPort"] = "abc"
        with self.assertRaises(Exception):
            c.validate(ds)


class MetricsAddress(unittest.TestCase):
    def assert_one_port(self, docs, address, port):
        config = dropin(docs)
        self.assertEqual(config["metrics"], {"enabled": True, "address": address})
        _, container = c.sync_container(docs)
        self.assertEqual(container["ports"], [{"name": "metrics", "containerPort": port,
                                               "protocol": "TCP"}])
        monitor = c.by_kind(docs, "PodMonitor")
        if monitor:
            (endpoint,) = monitor[0]["spec"]["podMetricsEndpoints"]
            self.assertEqual(endpoint["port"], "metrics")

    def test_default(self):
        docs = c.render(EVERYTHING)
        self.assert_one_port(docs, "0.0.0.0:9190", 9190)
        self.assertEqual(dropin(docs)["cgroup"], {"driver": "systemd"})

    def test_config_override_keeps_metrics(self):
        override = '[image]\npinned = ["registry.k8s.io/pause:3.10"]\n\n[log]\nlevel = "debug"\n'
        docs = c.render({**EVERYTHING, "configOverride": override}, sets=["metrics.port=9300"])
        self.assert_one_port(docs, "0.0.0.0:9300", 9300)
        config = dropin(docs)
        self.assertEqual(config["image"]["pinned"], ["registry.k8s.io/pause:3.10"])
        self.assertEqual(config["log"]["level"], "debug")
        self.assertNotIn("cgroup", config, "configOverride replaces files/config.toml")

    def test_ipv6_address(self):
        docs = c.render(sets=["metrics.address=::", "metrics.port=9555"])
        self.assert_one_port(docs, "[::]:9555", 9555)

    def test_metrics_disabled(self):
        docs = c.render(EVERYTHING, sets=["metrics.enabled=false"])
        self.assertEqual(dropin(docs)["metrics"]["enabled"], False)
        _, container = c.sync_container(docs)
        self.assertNotIn("ports", container)
        self.assertFalse(c.by_kind(docs, "PodMonitor") + c.by_kind(docs, "PrometheusRule"))

    def test_override_with_metrics_refused(self):
        for override in ('[metrics]\naddress = "0.0.0.0:1"\n', '[ "metrics" ]\nenabled = false\n',
                         'metrics.address = "0.0.0.0:1"\n', '[metrics.x]\n'):
            with self.subTest(override=override):
                with self.assertRaises(c.HelmError) as e:
                    c.render({"configOverride": override})
                self.assertIn("configOverride must not set [metrics]", e.exception.stderr)
        # A key merely containing the word is fine.
        c.render({"configOverride": '[image]\npinned = ["example.com/metrics:1"]\n'})

    def test_dropin_is_a_valid_berthd_config(self):
        """With a built berthd at hand, berthd itself reads the rendered drop-in."""
        berthd = next((p for p in (c.REPO / "target/debug/berthd", c.REPO / "target/release/berthd")
                       if p.exists()), None)
        if berthd is None:
            self.skipTest("no target/*/berthd built")
        override = '[image]\npinned = ["registry.k8s.io/pause:3.10"]\n'
        for values, address in (({}, "0.0.0.0:9190"), ({"configOverride": override}, "[::]:9300")):
            docs = c.render(values, sets=["metrics.port=9300", "metrics.address=::"]
                            if values else [])
            with self.subTest(values=values), tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "config.d").mkdir()
                (Path(tmp) / "config.toml").write_text("")
                (Path(tmp) / "config.d/50-helm.toml").write_text(
                    c.configmap(docs, "-config")["data"]["50-helm.toml"])
                out = subprocess.run([berthd, "--config", f"{tmp}/config.toml", "config", "show"],
                                     capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 0, out.stderr)
                shown = tomllib.loads(out.stdout)
                self.assertEqual(shown["metrics"], {"enabled": True, "address": address})
                if values:
                    self.assertEqual(shown["image"]["pinned"], ["registry.k8s.io/pause:3.10"])
                else:
                    self.assertEqual(shown["cgroup"]["driver"], "systemd")


class ValuesSchema(unittest.TestCase):
    BAD = [
        (["metrics.port=abc"], "/metrics/port"),
        (["metrics.port=0"], "/metrics/port"),
        (["metrics.port=65536"], "/metrics/port"),
        (["metrics.address=localhost"], "/metrics/address"),
        (["metrics.podMonitor.interval=30"], "/metrics/podMonitor/interval"),
        (["metrics.podMonitor.interval=30 s"], "/metrics/podMonitor/interval"),
        (["metrics.podMonitor.interval="], "/metrics/podMonitor/interval"),
        (["metrics.podMonitor.labels.bad key=x"], "'bad key'"),
        (["prometheusRule.labels.release=not a label value"], "/prometheusRule/labels"),
        (["prometheusRule.rules.criErrorRatio.threshold=2"], "/prometheusRule/rules/criErrorRatio"),
        (["prometheusRule.rules.criErrorRatio.threshold=0"], "/prometheusRule/rules/criErrorRatio"),
        (["prometheusRule.rules.berthdDown.for=five minutes"], "/prometheusRule/rules/berthdDown"),
        (["sync.interval=0"], "/sync/interval"),
        (["syncImage.pullPolicy=Sometimes"], "/syncImage/pullPolicy"),
        (["cleanup.timeout=forever"], "/cleanup/timeout"),
        (["node.configDir=etc/berth"], "/node/configDir"),
        (["metricsPort=9190"], "metricsPort"),
        (["priorityClassName=Not_A_Name"], "/priorityClassName"),
    ]

    def test_bad_values_refused(self):
        for sets, where in self.BAD:
            with self.subTest(sets=sets):
                with self.assertRaises(c.HelmError) as e:
                    c.render(sets=sets)
                self.assertIn("don't meet the specifications of the schema", e.exception.stderr)
                self.assertIn(where, e.exception.stderr)

    def test_good_values_accepted(self):
        docs = c.render(EVERYTHING, sets=["metrics.podMonitor.interval=1m30s",
                                          "metrics.address=10.0.0.1", "sync.interval=60",
                                          "prometheusRule.rules.pullFailures.threshold=0.5"])
        self.assertEqual(c.one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["interval"],
                         "1m30s")
        self.assertEqual(dropin(docs)["metrics"]["address"], "10.0.0.1:9190")


class Labels(unittest.TestCase):
    def test_extra_labels(self):
        docs = c.render(EVERYTHING)
        for kind in ("PodMonitor", "PrometheusRule"):
            labels = c.one(docs, kind)["metadata"]["labels"]
            self.assertEqual(labels["release"], "kube-prometheus-stack", kind)
        for doc in docs:
            self.assertEqual(doc["metadata"]["labels"]["team"], "nodes", doc["kind"])

    def test_podmonitor_selects_the_sync_pods(self):
        docs = c.render(EVERYTHING)
        selector = c.one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]
        ds = c.one(docs, "DaemonSet")
        self.assertEqual(selector, ds["spec"]["selector"]["matchLabels"])
        self.assertLessEqual(selector.items(), ds["spec"]["template"]["metadata"]["labels"].items())
        job = c.one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
        self.assertFalse(selector.items() <= job.items(), "the hook's pod is not scraped")


class SyncPod(unittest.TestCase):
    def test_privileges(self):
        pod, container = c.sync_container(c.render())
        self.assertIs(pod["hostPID"], True)
        self.assertIs(pod["hostNetwork"], True)
        self.assertIs(pod["automountServiceAccountToken"], False)
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        self.assertEqual(pod["nodeSelector"], {"berth.dev/runtime": "true"})
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])
        sc = container["securityContext"]
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["privileged"], False)
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        self.assertEqual(volumes["berth-config-dir"]["hostPath"],
                         {"path": "/etc/berth", "type": "DirectoryOrCreate"})
        self.assertEqual(volumes["berthd-lock"]["hostPath"],
                         {"path": "/run/berth/berth.sock.lock", "type": "File"})
        self.assertIs(mounts["berthd-lock"]["readOnly"], True)
        host_paths = [v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v]
        self.assertEqual(sorted(host_paths), ["/etc/berth", "/run/berth/berth.sock.lock"])

    def test_apparmor_before_and_since_1_30(self):
        # kubelet 1.26-1.29 clusters know only the annotation; 1.30+ the securityContext field.
        for version, field, annotation in (("1.26.0", None, "unconfined"),
                                           ("1.29.5", None, "unconfined"),
                                           ("1.30.0", {"type": "Unconfined"}, None)):
            with self.subTest(version):
                docs = c.render(kube_version=version)
                pod, container = c.sync_container(docs)
                meta = c.one(docs, "DaemonSet")["spec"]["template"]["metadata"]
                key = "container.apparmor.security.beta.kubernetes.io/sync"
                self.assertEqual(container["securityContext"].get("appArmorProfile"), field)
                self.assertEqual(meta["annotations"].get(key), annotation)
        docs = c.render(kube_version="1.27.0", sets=[
            "sync.securityContext.appArmorProfile.type=Localhost",
            "sync.securityContext.appArmorProfile.localhostProfile=berth-sync"])
        meta = c.one(docs, "DaemonSet")["spec"]["template"]["metadata"]
        self.assertEqual(meta["annotations"]["container.apparmor.security.beta.kubernetes.io/sync"],
                         "localhost/berth-sync")

    def test_reload_off_needs_no_host_pid(self):
        pod, container = c.sync_container(c.render(sets=["sync.reload=false",
                                                         "priorityClassName="]))
        self.assertIs(pod["hostPID"], False)
        self.assertNotIn("priorityClassName", pod)
        self.assertNotIn("berthd-lock", [m["name"] for m in container["volumeMounts"]])
        self.assertIn({"name": "RELOAD", "value": "false"}, container["env"])

    def test_script_and_paths_agree(self):
        docs = c.render(sets=["node.configDir=/opt/berth/etc", "node.lockFile=/var/run/b.lock"])
        pod, container = c.sync_container(docs)
        script = c.configmap(docs, "-config")["data"]["sync.sh"]
        self.assertEqual(script, (c.CHART / "files/sync.sh").read_text())
        self.assertEqual(container["command"], ["sh", "/config/sync.sh"])
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}

        def volume_at(path):
            prefix = max((m for m in mounts if path == m or path.startswith(m + "/")), key=len)
            return volumes[mounts[prefix]]

        self.assertIn("configMap", volume_at(env["SOURCE"]))
        self.assertEqual(volume_at(env["CONFIG_DIR"])["hostPath"]["path"], "/opt/berth/etc")
        self.assertEqual(volume_at(env["LOCK_FILE"])["hostPath"]["path"], "/var/run/b.lock")
        self.assertIn("downwardAPI", volume_at(env["LABELS_FILE"]))
        self.assertIn("emptyDir", volume_at(env["STATE_DIR"]))
        probe = " ".join(container["readinessProbe"]["exec"]["command"])
        self.assertIn(f"{env['STATE_DIR']}/uninstalled", probe)
        # Every variable the script reads with a default is set by the pod.
        self.assertEqual(set(re.findall(r"^([A-Z_]+)=\$\{\1:-", script, re.M)), set(env))


class UninstallHook(unittest.TestCase):
    def test_hook(self):
        docs = c.render()
        hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
        self.assertEqual(sorted(d["kind"] for d in hooks),
                         ["Job", "Role", "RoleBinding", "ServiceAccount"])
        for d in hooks:
            annotations = d["metadata"]["annotations"]
            self.assertEqual(annotations["helm.sh/hook"], "pre-delete")
            self.assertIn("hook-succeeded", annotations["helm.sh/hook-delete-policy"])
        weight = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks}
        self.assertLess(weight["Role"], weight["Job"], "RBAC exists before the Job runs")

        ds = c.one(docs, "DaemonSet")
        job = c.one(docs, "Job")["spec"]["template"]["spec"]
        (mark,) = job["initContainers"]
        (wait,) = job["containers"]
        selector = next(a.split("=", 1)[1] for a in mark["args"] if a.startswith("--selector="))
        self.assertEqual(dict(kv.split("=") for kv in selector.split(",")),
                         ds["spec"]["selector"]["matchLabels"])
        self.assertIn("berth.dev/uninstall=true", mark["args"])
        self.assertIn(f"daemonset/{ds['metadata']['name']}", wait["args"])
        self.assertIn("--for=jsonpath={.status.numberReady}=0", wait["args"])
        # The label the Job sets is the one the loop looks for (the downward API quotes values).
        script = (c.CHART / "files/sync.sh").read_text()
        self.assertIn("berth\\.dev/uninstall=\"true\"", script)
        role = c.one(docs, "Role")
        self.assertEqual(role["rules"][1]["resourceNames"], [ds["metadata"]["name"]])
        self.assertEqual(job["serviceAccountName"], c.one(docs, "ServiceAccount")["metadata"]["name"])

    def test_hook_can_be_disabled(self):
        docs = c.render(sets=["cleanup.enabled=false"])
        self.assertFalse(c.by_kind(docs, "Job") + c.by_kind(docs, "Role"))


class Alerts(unittest.TestCase):
    EXPECTED = {"BerthdDown", "BerthCRIErrorRatioHigh", "BerthCNIAddFailing", "BerthCNIDelFailing",
                "BerthImagePullFailureRatioHigh", "BerthContainerOOMKills", "BerthMonitorsLost",
                "BerthConfigReloadFailed"}

    def rules(self, values=EVERYTHING, sets=()):
        rule = c.one(c.render(values, sets), "PrometheusRule")
        (group,) = rule["spec"]["groups"]
        return {r["alert"]: r for r in group["rules"]}

    def test_alerts_use_real_metrics(self):
        rules = self.rules()
        self.assertEqual(set(rules), self.EXPECTED)
        exported = c.exported_metrics() | {"up"}
        for name, rule in rules.items():
            with self.subTest(name):
                expr = promql_parser.parse(rule["expr"])
                selectors = []
                promql_parser.walk(expr, lambda n: selectors.append(n)
                                   if isinstance(n, promql_parser.VectorSelector) else None)
                self.assertTrue(selectors)
                for s in selectors:
                    self.assertIn(s.name, exported, f"{name} reads {s.name}, not exported")
                    matchers = {(m.name, m.value) for m in s.matchers.matchers}
                    self.assertIn(("job", "berthd"), matchers, f"{name}: {s.name} without job")
                if "for" in rule:
                    promql_parser.parse_duration(rule["for"])
                self.assertEqual(rule["labels"]["team"], "nodes")
                self.assertIn("severity", rule["labels"])
                self.assertTrue(rule["annotations"]["summary"])

    def test_rules_follow_values(self):
        rules = self.rules(sets=["prometheusRule.rules.oomKills.enabled=false",
                                 "metrics.job=node-runtime",
                                 "prometheusRule.rules.criErrorRatio.threshold=0.2"])
        self.assertNotIn("BerthContainerOOMKills", rules)
        self.assertIn('job="node-runtime"', rules["BerthdDown"]["expr"])
        self.assertTrue(rules["BerthCRIErrorRatioHigh"]["expr"].rstrip().endswith("> 0.2"))
        monitor = c.one(c.render(EVERYTHING, sets=["metrics.job=node-runtime"]), "PodMonitor")
        relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        self.assertIn({"targetLabel": "job", "replacement": "node-runtime"}, relabel)


class Dashboard(unittest.TestCase):
    def test_inputs(self):
        text = (c.CHART / "dashboards/berth.json").read_text()
        dashboard = json.loads(text)
        inputs = {i["name"]: i for i in dashboard["__inputs"]}
        self.assertEqual(inputs["DS_PROMETHEUS"]["type"], "datasource")
        self.assertEqual(inputs["DS_PROMETHEUS"]["pluginId"], "prometheus")
        self.assertEqual(set(re.findall(r"\$\{(DS_[A-Z_]+)\}", text)), set(inputs))
        variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
        self.assertEqual(variable["current"]["value"], "${DS_PROMETHEUS}")
        panel_types = {p["type"] for p in dashboard["panels"]}
        required = {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}
        self.assertLessEqual(panel_types, required)
        rendered = c.configmap(c.render(), "-dashboard")["data"]["berth.json"]
        self.assertEqual(json.loads(rendered), dashboard)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", required=True, help="the helm binary")
    parser.add_argument("tests", nargs="*", help="unittest names, e.g. Alerts.test_hook")
    args = parser.parse_args()
    c.HELM = os.path.abspath(args.helm) if os.sep in args.helm else shutil.which(args.helm)
    os.environ["HELM"] = c.HELM
    loader = unittest.defaultTestLoader
    modules = [sys.modules[__name__], __import__("test_sync")]
    if args.tests:
        suite = unittest.TestSuite(loader.loadTestsFromName(t, m) for t in args.tests
                                   for m in modules if _has(m, t))
    else:
        suite = unittest.TestSuite(loader.loadTestsFromModule(m) for m in modules)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    sys.stderr.flush()
    print(f"chart-test: {passed} passed, {failed} failed, {len(result.skipped)} skipped", flush=True)
    return 0 if result.wasSuccessful() else 1


def _has(module, name):
    return hasattr(module, name.split(".")[0])


if __name__ == "__main__":
    sys.exit(main())
