// A CRI client written with grpc-go, as kubelet 1.26-1.29 and crictl up to 1.29 talk to a runtime:
// grpc.DialContext with the bare socket path as the target and a custom unix dialer, so grpc-go sends
// that path as the HTTP/2 :authority. The CRI types and typed clients are generated from the CRI
// api.proto into kubelet's own import path (hack/peers.sh go builds this, offline, in GOPATH mode with
// Debian's grpc-go and protoc-gen-go).
//
// It drives one pod and one container through the calls kubelet makes and asserts every answer:
// one "ok:" line per check, then "PASS:", or "FAIL:" and exit status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	callTimeout = 60 * time.Second // a pull from the local registry takes well under that
	eventWait   = 20 * time.Second
	// kubelet's default (pkg/kubelet/cri/remote): it sends and accepts up to 16 MiB.
	maxMsgSize = 16 * 1024 * 1024
)

type failure string

type run struct {
	socket, image, logDir, podName, podUID, namespace, cgroupParent string

	rt          runtimeapi.RuntimeServiceClient
	img         runtimeapi.ImageServiceClient
	passed      int
	podID       string
	containerID string
}

func (r *run) check(cond bool, format string, args ...interface{}) {
	what := fmt.Sprintf(format, args...)
	if !cond {
		panic(failure(what))
	}
	r.passed++
	fmt.Println("ok:", what)
}

// must turns a call's error into a failure naming the call.
func must(name string, err error) {
	if err != nil {
		panic(failure(fmt.Sprintf("%s: gRPC error %s: %s", name, status.Code(err), status.Convert(err).Message())))
	}
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// dial connects exactly as kubelet 1.26-1.29 do (pkg/kubelet/cri/remote/remote_runtime.go): the
// target is the bare path, the dialer ignores grpc-go's parse of it.
func dial(socket string) (*grpc.ClientConn, error) {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", addr)
	}
	return grpc.DialContext(c, socket,
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer),
		grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)))
}

func (r *run) podConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: r.podName, Uid: r.podUID, Namespace: r.namespace},
		Hostname:     r.podName,
		LogDirectory: r.logDir,
		Labels:       map[string]string{"app": r.podName, "peer": "grpc-go"},
		Annotations:  map[string]string{"peer/client": "grpc-go " + grpc.Version},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: r.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

func (r *run) mainSequence() {
	c, cancel := ctx()
	defer cancel()

	version, err := r.rt.Version(c, &runtimeapi.VersionRequest{Version: "v1"})
	must("Version", err)
	r.check(version.RuntimeApiVersion == "v1", "Version: runtime_api_version v1 (%q)", version.RuntimeApiVersion)
	r.check(version.RuntimeName != "", "Version: runtime_name %q", version.RuntimeName)

	st, err := r.rt.Status(c, &runtimeapi.StatusRequest{})
	must("Status", err)
	conditions := map[string]bool{}
	if st.Status != nil {
		for _, cond := range st.Status.Conditions {
			conditions[cond.Type] = cond.Status
		}
	}
	r.check(conditions["RuntimeReady"], "Status: RuntimeReady (%v)", conditions)
	r.check(conditions["NetworkReady"], "Status: NetworkReady (%v)", conditions)
	// kubelet 1.28+ takes its cgroup driver from here.
	rc, err := r.rt.RuntimeConfig(c, &runtimeapi.RuntimeConfigRequest{})
	must("RuntimeConfig", err)
	r.check(rc.Linux != nil && rc.Linux.CgroupDriver == runtimeapi.CgroupDriver_CGROUPFS,
		"RuntimeConfig: berthd's default cgroup driver, cgroupfs (%v)", rc.Linux)

	// kubelet pulls only after ImageStatus said the image is absent: OK with no image, not NOT_FOUND.
	absentRef := r.image[:strings.LastIndex(r.image, ":")] + ":not-pulled"
	absent, err := r.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: absentRef}})
	must("ImageStatus", err)
	r.check(absent.Image == nil, "ImageStatus: an absent image is OK with no image (%v)", absent.Image)

	pulled, err := r.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: r.image}})
	must("PullImage", err)
	r.check(strings.HasPrefix(pulled.ImageRef, "sha256:"), "PullImage: image_ref %q", pulled.ImageRef)
	image, err := r.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: r.image}})
	must("ImageStatus", err)
	r.check(image.Image != nil && image.Image.Id == pulled.ImageRef, "ImageStatus: id is the pulled image_ref (%v)", image.Image)
	images, err := r.img.ListImages(c, &runtimeapi.ListImagesRequest{})
	must("ListImages", err)
	tagged := false
	for _, i := range images.Images {
		for _, tag := range i.RepoTags {
			tagged = tagged || (i.Id == pulled.ImageRef && tag == r.image)
		}
	}
	r.check(tagged, "ListImages: the image with its tag (%v)", images.Images)

	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		panic(failure(fmt.Sprintf("creating the pod log directory: %v", err)))
	}
	sandboxConfig := r.podConfig()
	ran, err := r.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig})
	must("RunPodSandbox", err)
	r.podID = ran.PodSandboxId
	r.check(len(r.podID) == 64, "RunPodSandbox: pod id %q", r.podID)
	pod, err := r.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.podID})
	must("PodSandboxStatus", err)
	r.check(pod.Status != nil && pod.Status.State == runtimeapi.PodSandboxState_SANDBOX_READY, "PodSandboxStatus: READY (%v)", pod.Status)
	r.check(pod.Status.Network != nil && pod.Status.Network.Ip != "", "PodSandboxStatus: a pod IP (%v)", pod.Status.Network)
	r.check(pod.Status.Metadata != nil && pod.Status.Metadata.Uid == r.podUID, "PodSandboxStatus: metadata uid (%v)", pod.Status.Metadata)

	// Opened before the container exists, as kubelet's evented PLEG opens it. Its response headers come
	// once berthd has subscribed the stream, so after Header() no event of the container can be missed.
	evCtx, evCancel := context.WithCancel(context.Background())
	defer evCancel()
	events, err := r.rt.GetContainerEvents(evCtx, &runtimeapi.GetEventsRequest{})
	must("GetContainerEvents", err)
	_, err = events.Header()
	must("GetContainerEvents (headers)", err)
	received := make(chan *runtimeapi.ContainerEventResponse, 64)
	streamErr := make(chan error, 1)
	go func() {
		for {
			event, err := events.Recv()
			if err != nil {
				streamErr <- err
				return
			}
			received <- event
		}
	}()

	r.containerSteps(sandboxConfig, pulled.ImageRef)
	r.checkEvents(received, streamErr)
	evCancel()
	select {
	case err := <-streamErr:
		r.check(status.Code(err) == codes.Canceled, "GetContainerEvents: the stream ends when the client cancels it (%v)", status.Code(err))
	case <-time.After(5 * time.Second):
		r.check(false, "GetContainerEvents: the stream ends when the client cancels it")
	}

	_, err = r.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.podID})
	must("StopPodSandbox", err)
	pods, err := r.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: r.podID}})
	must("ListPodSandbox", err)
	r.check(len(pods.Items) == 1 && pods.Items[0].State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
		"StopPodSandbox: the pod is listed NOTREADY (%v)", pods.Items)
	_, err = r.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.podID})
	must("RemovePodSandbox", err)
	pods, err = r.rt.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	must("ListPodSandbox", err)
	gone := true
	for _, p := range pods.Items {
		gone = gone && p.Id != r.podID
	}
	r.check(gone, "RemovePodSandbox: the pod is gone from ListPodSandbox")
	// The CRI says RemovePodSandbox is idempotent: kubelet retries it after a timeout or a restart.
	_, err = r.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.podID})
	must("RemovePodSandbox (again)", err)
	r.check(true, "RemovePodSandbox: OK again on a removed pod")
	// StopPodSandbox of an ID that is gone: NOT_FOUND, as containerd answers (README) and kubelet
	// ignores; OK would do too.
	_, err = r.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.podID})
	code := status.Code(err)
	r.check(code == codes.OK || code == codes.NotFound, "StopPodSandbox: OK or NOT_FOUND on a removed pod (%v)", code)
	r.podID = ""
}

func (r *run) containerSteps(sandboxConfig *runtimeapi.PodSandboxConfig, imageRef string) {
	c, cancel := ctx()
	defer cancel()
	config := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: r.image},
		Command:  []string{"sleep", "3600"},
		LogPath:  "sleeper_0.log",
		Labels:   map[string]string{"container": "sleeper"},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
	created, err := r.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{
		PodSandboxId: r.podID, Config: config, SandboxConfig: sandboxConfig,
	})
	must("CreateContainer", err)
	r.containerID = created.ContainerId
	r.check(len(r.containerID) == 64, "CreateContainer: container id %q", r.containerID)
	_, err = r.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: r.containerID})
	must("StartContainer", err)

	out, err := r.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{
		ContainerId: r.containerID, Cmd: []string{"echo", "hello from grpc-go"}, Timeout: 10,
	})
	must("ExecSync", err)
	r.check(out.ExitCode == 0, "ExecSync: exit code 0 (%d)", out.ExitCode)
	r.check(string(out.Stdout) == "hello from grpc-go\n", "ExecSync: stdout (%q)", out.Stdout)
	r.check(len(out.Stderr) == 0, "ExecSync: empty stderr (%q)", out.Stderr)
	out, err = r.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{
		ContainerId: r.containerID, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10,
	})
	must("ExecSync", err)
	r.check(out.ExitCode == 3, "ExecSync: a failing command's exit code 3 (%d)", out.ExitCode)
	r.check(string(out.Stdout) == "out\n" && string(out.Stderr) == "err\n",
		"ExecSync: stdout and stderr apart (%q, %q)", out.Stdout, out.Stderr)

	listed, err := r.rt.ListContainers(c, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: r.podID},
	})
	must("ListContainers", err)
	var mine *runtimeapi.Container
	for _, x := range listed.Containers {
		if x.Id == r.containerID {
			mine = x
		}
	}
	r.check(mine != nil, "ListContainers: the container is listed (%d listed)", len(listed.Containers))
	r.check(mine.State == runtimeapi.ContainerState_CONTAINER_RUNNING, "ListContainers: RUNNING (%s)", mine.State)
	r.check(mine.Metadata != nil && mine.Metadata.Name == "sleeper", "ListContainers: metadata name (%v)", mine.Metadata)
	r.check(mine.ImageRef == imageRef, "ListContainers: image_ref is the pulled one (%q)", mine.ImageRef)
	r.check(mine.Labels["container"] == "sleeper", "ListContainers: labels (%v)", mine.Labels)
	stats, err := r.rt.ContainerStats(c, &runtimeapi.ContainerStatsRequest{ContainerId: r.containerID})
	must("ContainerStats", err)
	r.check(stats.Stats != nil && stats.Stats.Attributes != nil && stats.Stats.Attributes.Id == r.containerID,
		"ContainerStats: the container's stats (%v)", stats.Stats)
	r.check(stats.Stats.Memory != nil && stats.Stats.Memory.WorkingSetBytes != nil && stats.Stats.Memory.WorkingSetBytes.Value > 0,
		"ContainerStats: working set (%v)", stats.Stats.Memory)

	_, err = r.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: r.containerID, Timeout: 0})
	must("StopContainer", err)
	st, err := r.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: r.containerID})
	must("ContainerStatus", err)
	r.check(st.Status != nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED, "StopContainer: EXITED (%v)", st.Status)
	r.check(st.Status.ExitCode == 137, "StopContainer: timeout 0 kills, exit code 137 (%d)", st.Status.ExitCode)
	_, err = r.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: r.containerID})
	must("RemoveContainer", err)
	_, err = r.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: r.containerID})
	r.check(status.Code(err) == codes.NotFound, "RemoveContainer: ContainerStatus answers NOT_FOUND (%v)", status.Code(err))
	_, err = r.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: r.containerID})
	must("RemoveContainer (again)", err)
	r.check(true, "RemoveContainer: OK again on a removed container")
}

func (r *run) checkEvents(received chan *runtimeapi.ContainerEventResponse, streamErr chan error) {
	wanted := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var mine []*runtimeapi.ContainerEventResponse
	deadline := time.After(eventWait)
collect:
	for len(mine) < len(wanted) {
		select {
		case event := <-received:
			if event.ContainerId == r.containerID {
				mine = append(mine, event)
			}
		case err := <-streamErr:
			must("GetContainerEvents (stream)", err)
		case <-deadline:
			break collect
		}
	}
	var kinds []runtimeapi.ContainerEventType
	var states [][]runtimeapi.ContainerState
	podStatus, createdAt := true, true
	for _, e := range mine {
		kinds = append(kinds, e.ContainerEventType)
		podStatus = podStatus && e.PodSandboxStatus != nil && e.PodSandboxStatus.Id == r.podID
		createdAt = createdAt && e.CreatedAt > 0
		own := []runtimeapi.ContainerState{}
		for _, s := range e.ContainersStatuses {
			if s.Id == r.containerID {
				own = append(own, s.State)
			}
		}
		states = append(states, own)
	}
	r.check(reflect.DeepEqual(kinds, wanted), "GetContainerEvents: CREATED, STARTED, STOPPED, DELETED in order (%v)", kinds)
	r.check(podStatus, "GetContainerEvents: every event carries the pod's status")
	r.check(createdAt, "GetContainerEvents: every event has created_at")
	r.check(reflect.DeepEqual(states, [][]runtimeapi.ContainerState{
		{runtimeapi.ContainerState_CONTAINER_CREATED},
		{runtimeapi.ContainerState_CONTAINER_RUNNING},
		{runtimeapi.ContainerState_CONTAINER_EXITED},
		{},
	}), "GetContainerEvents: the container's own status in each event (%v)", states)
}

// cleanup, after a failure, leaves nothing behind for the leak check to trip over first.
func (r *run) cleanup() {
	c, cancel := ctx()
	defer cancel()
	report := func(name string, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %s: %v\n", name, err)
		}
	}
	if r.containerID != "" {
		_, err := r.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: r.containerID})
		report("StopContainer", err)
		_, err = r.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: r.containerID})
		report("RemoveContainer", err)
	}
	if r.podID != "" {
		_, err := r.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.podID})
		report("StopPodSandbox", err)
		_, err = r.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.podID})
		report("RemovePodSandbox", err)
	}
}

func main() {
	r := &run{}
	flag.StringVar(&r.socket, "socket", "", "the runtime's unix socket path")
	flag.StringVar(&r.image, "image", "", "the image to pull and run (sleep and sh needed)")
	flag.StringVar(&r.logDir, "log-dir", "", "the pod's log directory")
	flag.StringVar(&r.podName, "pod-name", "", "the pod's name")
	flag.StringVar(&r.podUID, "pod-uid", "", "the pod's uid")
	flag.StringVar(&r.namespace, "namespace", "default", "the pod's namespace")
	flag.StringVar(&r.cgroupParent, "cgroup-parent", "", "the pod's cgroup parent")
	flag.Parse()
	if r.socket == "" || r.image == "" || r.logDir == "" || r.podName == "" || r.podUID == "" {
		fmt.Fprintln(os.Stderr, "usage: cri-client-go --socket PATH --image REF --log-dir DIR --pod-name NAME --pod-uid UID [--namespace NS] [--cgroup-parent PATH]")
		os.Exit(2)
	}
	fmt.Printf("grpc-go %s, socket %s\n", grpc.Version, r.socket)

	conn, err := dial(r.socket)
	if err != nil {
		fmt.Println("FAIL: dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	r.rt = runtimeapi.NewRuntimeServiceClient(conn)
	r.img = runtimeapi.NewImageServiceClient(conn)

	failed := func() (failed bool) {
		defer func() {
			if p := recover(); p != nil {
				f, ok := p.(failure)
				if !ok {
					panic(p)
				}
				fmt.Println("FAIL:", string(f))
				r.cleanup()
				failed = true
			}
		}()
		r.mainSequence()
		return false
	}()
	if failed {
		conn.Close()
		os.Exit(1)
	}
	fmt.Printf("PASS: %d checks passed with grpc-go %s\n", r.passed, grpc.Version)
}
