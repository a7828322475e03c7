#!/usr/bin/env python3
"""A CRI client written with Python grpcio (PyPI), as a third party would write one.

It drives one pod and one container through the calls kubelet makes, over a `unix:` target, asserting
every answer, then tries the other unix target forms grpcio accepts. grpcio >= 1.57 sends the
percent-encoded socket path as the HTTP/2 :authority for `unix:` targets; the main sequence keeps that
default on purpose, because that is what such clients send to a runtime.

usage: cri_client.py --stubs DIR --socket PATH --image REF --log-dir DIR --pod-name NAME
                     --pod-uid UID [--namespace NS] [--cgroup-parent PATH]

DIR holds api_pb2.py and api_pb2_grpc.py compiled from the CRI api.proto (hack/peers.sh python).
Exits 0 after printing a summary, or 1 with a line starting with "FAIL:" naming the first failed check.
"""

import argparse
import os
import queue
import sys
import threading
import time

import grpc

TIMEOUT = 60  # seconds per unary call; a pull from the local registry takes well under that
EVENT_WAIT = 20


class CheckFailed(Exception):
    pass


class Client:
    def __init__(self, pb, pbg, target, options=()):
        self.pb = pb
        self.channel = grpc.insecure_channel(target, options=list(options))
        self.runtime = pbg.RuntimeServiceStub(self.channel)
        self.images = pbg.ImageServiceStub(self.channel)

    def close(self):
        self.channel.close()


class Run:
    def __init__(self, args, pb, pbg):
        self.args = args
        self.pb = pb
        self.pbg = pbg
        self.passed = []
        self.pod_id = None
        self.container_id = None
        # Every RPC this run called and got an answer other than UNIMPLEMENTED from.
        self.answered = set()

    def check(self, cond, what):
        if not cond:
            raise CheckFailed(what)
        self.passed.append(what)
        print("ok:", what, flush=True)

    def call(self, name, fn, *a, **kw):
        try:
            answer = fn(*a, timeout=TIMEOUT, **kw)
        except grpc.RpcError as e:
            raise CheckFailed(f"{name}: gRPC error {e.code()}: {e.details()}") from None
        self.answered.add(name.split(" ")[0])
        return answer

    def call_code(self, name, fn, request):
        """Calls a unary RPC that may fail; returns (answer or None, status code)."""
        try:
            answer, code = fn(request, timeout=TIMEOUT), grpc.StatusCode.OK
        except grpc.RpcError as e:
            answer, code = None, e.code()
        if code != grpc.StatusCode.UNIMPLEMENTED:
            self.answered.add(name)
        return answer, code

    def pod_config(self):
        pb, a = self.pb, self.args
        linux = pb.LinuxPodSandboxConfig(
            cgroup_parent=a.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(
                    network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD
                )
            ),
        )
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(
                name=a.pod_name, uid=a.pod_uid, namespace=a.namespace, attempt=0
            ),
            hostname=a.pod_name,
            log_directory=a.log_dir,
            labels={"app": a.pod_name, "peer": "grpcio"},
            annotations={"peer/client": "grpcio " + grpc.__version__},
            linux=linux,
        )

    def main_sequence(self, c):
        pb, a = self.pb, self.args
        version = self.call("Version", c.runtime.Version, pb.VersionRequest(version="v1"))
        self.check(version.runtime_api_version == "v1", f"Version: runtime_api_version v1 ({version.runtime_api_version!r})")
        self.check(version.runtime_name != "", f"Version: runtime_name {version.runtime_name!r}")
        self.check(version.runtime_version != "", f"Version: runtime_version {version.runtime_version!r}")

        status = self.call("Status", c.runtime.Status, pb.StatusRequest(verbose=False))
        conditions = {cond.type: cond.status for cond in status.status.conditions}
        self.check(conditions.get("RuntimeReady") is True, f"Status: RuntimeReady ({conditions})")
        self.check(conditions.get("NetworkReady") is True, f"Status: NetworkReady ({conditions})")
        # kubelet 1.28+ takes its cgroup driver from here.
        config = self.call("RuntimeConfig", c.runtime.RuntimeConfig, pb.RuntimeConfigRequest())
        driver = pb.CgroupDriver.Name(config.linux.cgroup_driver)
        self.check(
            config.HasField("linux") and config.linux.cgroup_driver == pb.CGROUPFS,
            f"RuntimeConfig: berthd's default cgroup driver, cgroupfs ({driver})",
        )

        # kubelet pulls only after ImageStatus said the image is absent: OK with no image, not NOT_FOUND.
        absent = self.call(
            "ImageStatus",
            c.images.ImageStatus,
            pb.ImageStatusRequest(image=pb.ImageSpec(image=a.image.rsplit(":", 1)[0] + ":not-pulled")),
        )
        self.check(not absent.HasField("image"), f"ImageStatus: an absent image is OK with no image ({absent.image.id!r})")

        pulled = self.call(
            "PullImage", c.images.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=a.image))
        )
        self.check(pulled.image_ref.startswith("sha256:"), f"PullImage: image_ref {pulled.image_ref!r}")
        image = self.call(
            "ImageStatus", c.images.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=a.image))
        )
        self.check(image.image.id == pulled.image_ref, f"ImageStatus: id is the pulled image_ref ({image.image.id!r})")
        listed = self.call("ListImages", c.images.ListImages, pb.ListImagesRequest()).images
        self.check(
            any(i.id == pulled.image_ref and a.image in i.repo_tags for i in listed),
            f"ListImages: the image with its tag ({[(i.id, list(i.repo_tags)) for i in listed]})",
        )

        os.makedirs(a.log_dir, exist_ok=True)
        sandbox_config = self.pod_config()
        ran = self.call("RunPodSandbox", c.runtime.RunPodSandbox, pb.RunPodSandboxRequest(config=sandbox_config))
        self.pod_id = ran.pod_sandbox_id
        self.check(len(self.pod_id) == 64, f"RunPodSandbox: pod id {self.pod_id!r}")
        pod = self.call(
            "PodSandboxStatus", c.runtime.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=self.pod_id)
        ).status
        self.check(pod.state == pb.SANDBOX_READY, f"PodSandboxStatus: READY ({pb.PodSandboxState.Name(pod.state)})")
        self.check(pod.network.ip != "", f"PodSandboxStatus: a pod IP ({pod.network.ip!r})")
        self.check(pod.metadata.uid == a.pod_uid, f"PodSandboxStatus: metadata uid ({pod.metadata.uid!r})")

        # The event stream is opened before the container exists, as kubelet's PLEG opens it at
        # startup. Its response headers come once berthd has subscribed the stream, so waiting for
        # them means no event of this container can be missed.
        events = c.runtime.GetContainerEvents(pb.GetEventsRequest())
        try:
            events.initial_metadata()
        except grpc.RpcError as e:
            raise CheckFailed(f"GetContainerEvents: gRPC error {e.code()}: {e.details()}") from None
        received = queue.Queue()

        def read_events():
            try:
                for event in events:
                    received.put(event)
            except grpc.RpcError as e:
                received.put(e)

        self.answered.add("GetContainerEvents")
        reader = threading.Thread(target=read_events, daemon=True)
        reader.start()
        try:
            self.container_steps(c, sandbox_config, pulled.image_ref)
            self.check_events(received)
        finally:
            events.cancel()
            reader.join(5)
        self.check(not reader.is_alive(), "GetContainerEvents: the stream ends when the client cancels it")

        self.call("StopPodSandbox", c.runtime.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=self.pod_id))
        pods = self.call(
            "ListPodSandbox",
            c.runtime.ListPodSandbox,
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=self.pod_id)),
        ).items
        self.check(
            [p.state for p in pods] == [pb.SANDBOX_NOTREADY],
            f"StopPodSandbox: the pod is listed NOTREADY ({[p.state for p in pods]})",
        )
        self.call("RemovePodSandbox", c.runtime.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=self.pod_id))
        pods = self.call("ListPodSandbox", c.runtime.ListPodSandbox, pb.ListPodSandboxRequest()).items
        self.check(all(p.id != self.pod_id for p in pods), "RemovePodSandbox: the pod is gone from ListPodSandbox")
        # The CRI says RemovePodSandbox is idempotent: kubelet retries it after a timeout or a restart.
        self.call("RemovePodSandbox", c.runtime.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=self.pod_id))
        self.check(True, "RemovePodSandbox: OK again on a removed pod")
        # StopPodSandbox of an ID that is gone: NOT_FOUND, as containerd answers (README) and kubelet
        # ignores; OK would do too.
        try:
            c.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=self.pod_id), timeout=TIMEOUT)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        self.check(
            code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND),
            f"StopPodSandbox: OK or NOT_FOUND on a removed pod ({code})",
        )
        self.pod_id = None

        self.call("RemoveImage", c.images.RemoveImage, pb.RemoveImageRequest(image=pb.ImageSpec(image=a.image)))
        gone = self.call("ImageStatus", c.images.ImageStatus, pb.ImageStatusRequest(image=pb.ImageSpec(image=a.image)))
        self.check(not gone.HasField("image"), "RemoveImage: ImageStatus no longer finds the image")
        self.every_rpc_answered()

    def container_steps(self, c, sandbox_config, image_ref):
        pb, a = self.pb, self.args
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
            image=pb.ImageSpec(image=a.image),
            command=["sleep", "3600"],
            log_path="sleeper_0.log",
            labels={"container": "sleeper"},
            linux=pb.LinuxContainerConfig(),
        )
        created = self.call(
            "CreateContainer",
            c.runtime.CreateContainer,
            pb.CreateContainerRequest(pod_sandbox_id=self.pod_id, config=config, sandbox_config=sandbox_config),
        )
        self.container_id = created.container_id
        self.check(len(self.container_id) == 64, f"CreateContainer: container id {self.container_id!r}")
        self.call("StartContainer", c.runtime.StartContainer, pb.StartContainerRequest(container_id=self.container_id))

        out = self.call(
            "ExecSync",
            c.runtime.ExecSync,
            pb.ExecSyncRequest(container_id=self.container_id, cmd=["echo", "hello from grpcio"], timeout=10),
        )
        self.check(out.exit_code == 0, f"ExecSync: exit code 0 ({out.exit_code})")
        self.check(out.stdout == b"hello from grpcio\n", f"ExecSync: stdout ({out.stdout!r})")
        self.check(out.stderr == b"", f"ExecSync: empty stderr ({out.stderr!r})")
        out = self.call(
            "ExecSync",
            c.runtime.ExecSync,
            pb.ExecSyncRequest(
                container_id=self.container_id, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10
            ),
        )
        self.check(out.exit_code == 3, f"ExecSync: a failing command's exit code 3 ({out.exit_code})")
        self.check((out.stdout, out.stderr) == (b"out\n", b"err\n"), f"ExecSync: stdout and stderr apart ({out.stdout!r}, {out.stderr!r})")

        listed = self.call(
            "ListContainers",
            c.runtime.ListContainers,
            pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=self.pod_id)),
        ).containers
        mine = [x for x in listed if x.id == self.container_id]
        self.check(len(mine) == 1, f"ListContainers: the container is listed ({[x.id for x in listed]})")
        self.check(mine[0].state == pb.CONTAINER_RUNNING, f"ListContainers: RUNNING ({pb.ContainerState.Name(mine[0].state)})")
        self.check(mine[0].metadata.name == "sleeper", f"ListContainers: metadata name ({mine[0].metadata.name!r})")
        self.check(mine[0].image_ref == image_ref, f"ListContainers: image_ref is the pulled one ({mine[0].image_ref!r})")
        self.check(mine[0].labels.get("container") == "sleeper", f"ListContainers: labels ({dict(mine[0].labels)})")
        self.streaming_lists(c, listed)
        self.other_rpcs(c)
        stats = self.call(
            "ContainerStats", c.runtime.ContainerStats, pb.ContainerStatsRequest(container_id=self.container_id)
        ).stats
        self.check(stats.attributes.id == self.container_id, f"ContainerStats: the container's stats ({stats.attributes.id!r})")
        self.check(stats.memory.working_set_bytes.value > 0, f"ContainerStats: working set ({stats.memory.working_set_bytes.value})")

        self.call("StopContainer", c.runtime.StopContainer, pb.StopContainerRequest(container_id=self.container_id, timeout=0))
        status = self.call(
            "ContainerStatus", c.runtime.ContainerStatus, pb.ContainerStatusRequest(container_id=self.container_id)
        ).status
        self.check(status.state == pb.CONTAINER_EXITED, f"StopContainer: EXITED ({pb.ContainerState.Name(status.state)})")
        self.check(status.exit_code == 137, f"StopContainer: timeout 0 kills, exit code 137 ({status.exit_code})")
        self.call("RemoveContainer", c.runtime.RemoveContainer, pb.RemoveContainerRequest(container_id=self.container_id))
        try:
            c.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=self.container_id), timeout=TIMEOUT)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        self.check(code == grpc.StatusCode.NOT_FOUND, f"RemoveContainer: ContainerStatus answers NOT_FOUND ({code})")
        self.call("RemoveContainer", c.runtime.RemoveContainer, pb.RemoveContainerRequest(container_id=self.container_id))
        self.check(True, "RemoveContainer: OK again on a removed container")

    def streaming_lists(self, c, listed):
        """cri-api v0.36 (kubelet 1.36, CRIListStreaming): each Stream* call sends its unary twin's
        items in messages of at least one item; then UpdatePodSandboxResources (in-place resize)."""
        pb = self.pb

        def streamed(name, fn, request, field):
            try:
                messages = list(fn(request, timeout=TIMEOUT))
            except grpc.RpcError as e:
                raise CheckFailed(f"{name}: {e.code()}: {e.details()}")
            self.answered.add(name)
            self.check(all(len(getattr(m, field)) > 0 for m in messages), f"{name}: no empty message")
            return [item for m in messages for item in getattr(m, field)]

        by_pod = pb.ContainerFilter(pod_sandbox_id=self.pod_id)
        items = streamed("StreamContainers", c.runtime.StreamContainers, pb.StreamContainersRequest(filter=by_pod), "containers")
        self.check(
            sorted(x.id for x in items) == sorted(x.id for x in listed),
            f"StreamContainers: the containers ListContainers lists ({[x.id for x in items]})",
        )
        items = streamed(
            "StreamPodSandboxes",
            c.runtime.StreamPodSandboxes,
            pb.StreamPodSandboxesRequest(filter=pb.PodSandboxFilter(id=self.pod_id)),
            "pod_sandboxes",
        )
        self.check([x.id for x in items] == [self.pod_id], f"StreamPodSandboxes: the pod, by id ({[x.id for x in items]})")
        items = streamed("StreamImages", c.images.StreamImages, pb.StreamImagesRequest(), "images")
        listed_images = self.call("ListImages", c.images.ListImages, pb.ListImagesRequest()).images
        self.check(
            sorted(x.id for x in items) == sorted(x.id for x in listed_images),
            f"StreamImages: the images ListImages lists ({len(items)})",
        )
        items = streamed(
            "StreamContainerStats",
            c.runtime.StreamContainerStats,
            pb.StreamContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=self.pod_id)),
            "container_stats",
        )
        self.check(
            [x.attributes.id for x in items] == [self.container_id],
            f"StreamContainerStats: the container's stats ({[x.attributes.id for x in items]})",
        )
        items = streamed(
            "StreamPodSandboxStats",
            c.runtime.StreamPodSandboxStats,
            pb.StreamPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(id=self.pod_id)),
            "pod_sandbox_stats",
        )
        self.check([x.attributes.id for x in items] == [self.pod_id], "StreamPodSandboxStats: the pod's stats")
        items = streamed(
            "StreamPodSandboxMetrics",
            c.runtime.StreamPodSandboxMetrics,
            pb.StreamPodSandboxMetricsRequest(),
            "pod_sandbox_metrics",
        )
        self.check(
            self.pod_id in [x.pod_sandbox_id for x in items],
            f"StreamPodSandboxMetrics: the pod's metrics ({[x.pod_sandbox_id for x in items]})",
        )
        self.call(
            "UpdatePodSandboxResources",
            c.runtime.UpdatePodSandboxResources,
            pb.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=self.pod_id,
                resources=pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=256 << 20),
            ),
        )
        self.check(True, "UpdatePodSandboxResources: OK for a ready pod")

    def other_rpcs(self, c):
        """The rest of cri-api v0.36's RPCs, against the running container and its pod."""
        pb, cid, pid = self.pb, self.container_id, self.pod_id
        self.call(
            "UpdateContainerResources",
            c.runtime.UpdateContainerResources,
            pb.UpdateContainerResourcesRequest(
                container_id=cid, linux=pb.LinuxContainerResources(cpu_shares=256, memory_limit_in_bytes=128 << 20)
            ),
        )
        status = self.call("ContainerStatus", c.runtime.ContainerStatus, pb.ContainerStatusRequest(container_id=cid)).status
        self.check(
            status.resources.linux.memory_limit_in_bytes == 128 << 20,
            f"UpdateContainerResources: ContainerStatus reports the new limit ({status.resources.linux.memory_limit_in_bytes})",
        )
        self.call("ReopenContainerLog", c.runtime.ReopenContainerLog, pb.ReopenContainerLogRequest(container_id=cid))
        self.check(True, "ReopenContainerLog: OK for a running container")
        for name, fn, request in (
            ("Exec", c.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"], stdin=True, stdout=True)),
            ("Attach", c.runtime.Attach, pb.AttachRequest(container_id=cid, stdout=True, stderr=True)),
            ("PortForward", c.runtime.PortForward, pb.PortForwardRequest(pod_sandbox_id=pid, port=[80])),
        ):
            url = self.call(name, fn, request).url
            self.check(url.startswith("http://127.0.0.1:") or url.startswith("http://[::1]:"), f"{name}: a loopback streaming URL ({url!r})")
        stats = self.call(
            "ListContainerStats",
            c.runtime.ListContainerStats,
            pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(id=cid)),
        ).stats
        self.check([s.attributes.id for s in stats] == [cid], "ListContainerStats: the container, by id")
        pod_stats = self.call("PodSandboxStats", c.runtime.PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id=pid)).stats
        self.check(pod_stats.attributes.id == pid, "PodSandboxStats: the pod's stats")
        listed = self.call(
            "ListPodSandboxStats",
            c.runtime.ListPodSandboxStats,
            pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(id=pid)),
        ).stats
        self.check([s.attributes.id for s in listed] == [pid], "ListPodSandboxStats: the pod, by id")
        descriptors = self.call("ListMetricDescriptors", c.runtime.ListMetricDescriptors, pb.ListMetricDescriptorsRequest()).descriptors
        self.check(len(descriptors) > 0, f"ListMetricDescriptors: descriptors ({len(descriptors)})")
        metrics = self.call("ListPodSandboxMetrics", c.runtime.ListPodSandboxMetrics, pb.ListPodSandboxMetricsRequest()).pod_metrics
        self.check(pid in [m.pod_sandbox_id for m in metrics], "ListPodSandboxMetrics: the pod's metrics")
        self.call(
            "UpdateRuntimeConfig",
            c.runtime.UpdateRuntimeConfig,
            pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr=""))),
        )
        self.check(True, "UpdateRuntimeConfig: OK")
        fs = self.call("ImageFsInfo", c.images.ImageFsInfo, pb.ImageFsInfoRequest())
        self.check(
            len(fs.image_filesystems) == 1 and len(fs.container_filesystems) == 1,
            f"ImageFsInfo: image and container filesystems ({len(fs.image_filesystems)}, {len(fs.container_filesystems)})",
        )
        # A checkpoint needs CRIU working on the host: OK, or FAILED_PRECONDITION saying why.
        location = os.path.join(self.args.log_dir, "checkpoint.tar")
        _, code = self.call_code(
            "CheckpointContainer",
            c.runtime.CheckpointContainer,
            pb.CheckpointContainerRequest(container_id=cid, location=location, timeout=60),
        )
        self.check(
            code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION),
            f"CheckpointContainer: OK or FAILED_PRECONDITION, not UNIMPLEMENTED ({code})",
        )
        if os.path.exists(location):
            os.remove(location)

    def every_rpc_answered(self):
        """Done when every RPC of both services has been called and none said UNIMPLEMENTED."""
        methods = set()
        for service in ("RuntimeService", "ImageService"):
            methods |= {m.name for m in self.pb.DESCRIPTOR.services_by_name[service].methods}
        missing = sorted(methods - self.answered)
        self.check(not missing, f"every one of the {len(methods)} CRI RPCs answered (missing: {missing})")

    def check_events(self, received):
        pb = self.pb
        wanted = [
            pb.CONTAINER_CREATED_EVENT,
            pb.CONTAINER_STARTED_EVENT,
            pb.CONTAINER_STOPPED_EVENT,
            pb.CONTAINER_DELETED_EVENT,
        ]
        mine = []
        deadline = time.monotonic() + EVENT_WAIT
        while len(mine) < len(wanted):
            try:
                event = received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(event, grpc.RpcError):
                raise CheckFailed(f"GetContainerEvents: stream failed: {event.code()}: {event.details()}")
            if event.container_id == self.container_id:
                mine.append(event)
        names = [pb.ContainerEventType.Name(e.container_event_type) for e in mine]
        self.check(
            [e.container_event_type for e in mine] == wanted,
            f"GetContainerEvents: CREATED, STARTED, STOPPED, DELETED in order ({names})",
        )
        self.check(
            all(e.pod_sandbox_status.id == self.pod_id for e in mine),
            "GetContainerEvents: every event carries the pod's status",
        )
        self.check(all(e.created_at > 0 for e in mine), "GetContainerEvents: every event has created_at")
        states = [
            [s.state for s in e.containers_statuses if s.id == self.container_id] for e in mine
        ]
        self.check(
            states == [[pb.CONTAINER_CREATED], [pb.CONTAINER_RUNNING], [pb.CONTAINER_EXITED], []],
            f"GetContainerEvents: the container's own status in each event ({states})",
        )

    def cleanup(self, c):
        """After a failure: leave nothing behind for the leak check to trip over first."""
        pb = self.pb
        for name, fn, req in (
            ("StopContainer", c.runtime.StopContainer, self.container_id and pb.StopContainerRequest(container_id=self.container_id, timeout=0)),
            ("RemoveContainer", c.runtime.RemoveContainer, self.container_id and pb.RemoveContainerRequest(container_id=self.container_id)),
            ("StopPodSandbox", c.runtime.StopPodSandbox, self.pod_id and pb.StopPodSandboxRequest(pod_sandbox_id=self.pod_id)),
            ("RemovePodSandbox", c.runtime.RemovePodSandbox, self.pod_id and pb.RemovePodSandboxRequest(pod_sandbox_id=self.pod_id)),
        ):
            if req:
                try:
                    fn(req, timeout=TIMEOUT)
                except grpc.RpcError as e:
                    print(f"cleanup: {name}: {e.code()}: {e.details()}", file=sys.stderr)

    def target_forms(self):
        """Version over each unix target form grpcio takes, and with the :authority overridden."""
        pb, sock = self.pb, self.args.socket
        forms = [
            ("unix:///path", "unix://" + sock, ()),
            ("unix:/path", "unix:" + sock, ()),
            ("unix:/path, grpc.default_authority=localhost", "unix:" + sock, (("grpc.default_authority", "localhost"),)),
            ("unix:/path, grpc.default_authority=''", "unix:" + sock, (("grpc.default_authority", ""),)),
        ]
        for label, target, options in forms:
            c = Client(pb, self.pbg, target, options)
            try:
                version = self.call(f"Version over {label}", c.runtime.Version, pb.VersionRequest(version="v1"))
            finally:
                c.close()
            self.check(version.runtime_api_version == "v1", f"Version over {label}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--pod-name", required=True)
    parser.add_argument("--pod-uid", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--cgroup-parent", default="")
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    import api_pb2 as pb
    import api_pb2_grpc as pbg

    print(f"grpcio {grpc.__version__}, socket {args.socket}", flush=True)
    run = Run(args, pb, pbg)
    client = Client(pb, pbg, "unix:" + args.socket)
    try:
        run.main_sequence(client)
        run.target_forms()
    except CheckFailed as e:
        print(f"FAIL: {e}", flush=True)
        run.cleanup(client)
        return 1
    finally:
        client.close()
    print(f"PASS: {len(run.passed)} checks passed with grpcio {grpc.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
