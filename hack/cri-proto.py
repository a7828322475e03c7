#!/usr/bin/env python3
"""hack/cri-proto.py [OUT]: writes proto/cri/api.proto, cri-api v0.36's api.proto (wire contract) from k8s-cri 0.11's v1.proto plus the changes
upstream made through Kubernetes 1.36 (kubernetes/kubernetes
staging/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto at 0268656aec06fe837312d7ec3051e6b7f3dc6cde).
Comment-only differences are not carried over; `[debug_redact = true]` options are left out
(protoc 3.21 in Debian 12 does not know them; they change no wire format)."""
import glob, sys
src = glob.glob('/root/.cargo/registry/src/*/k8s-cri-0.11.0/proto/v1.proto')[0]
s = open(src).read()
def rep(old, new, count=1):
    global s
    n = s.count(old)
    if n != count:
        sys.exit(f"expected {count} of {old!r}, found {n}")
    s = s.replace(old, new)

STREAM = "    rpc {name}({name}Request) returns (stream {name}Response) {{}}\n"
rep("    rpc ListPodSandbox(ListPodSandboxRequest) returns (ListPodSandboxResponse) {}\n",
    "    rpc ListPodSandbox(ListPodSandboxRequest) returns (ListPodSandboxResponse) {}\n"
    "    // Feature gate CRIListStreaming (KEP-5825): the same items as the unary twin, in chunks.\n"
    + STREAM.format(name="StreamPodSandboxes"))
rep("    rpc ListContainers(ListContainersRequest) returns (ListContainersResponse) {}\n",
    "    rpc ListContainers(ListContainersRequest) returns (ListContainersResponse) {}\n"
    + STREAM.format(name="StreamContainers"))
rep("    rpc ListContainerStats(ListContainerStatsRequest) returns (ListContainerStatsResponse) {}\n",
    "    rpc ListContainerStats(ListContainerStatsRequest) returns (ListContainerStatsResponse) {}\n"
    + STREAM.format(name="StreamContainerStats"))
rep("    rpc ListPodSandboxStats(ListPodSandboxStatsRequest) returns (ListPodSandboxStatsResponse) {}\n",
    "    rpc ListPodSandboxStats(ListPodSandboxStatsRequest) returns (ListPodSandboxStatsResponse) {}\n"
    + STREAM.format(name="StreamPodSandboxStats"))
rep("    rpc ListPodSandboxMetrics(ListPodSandboxMetricsRequest) returns (ListPodSandboxMetricsResponse) {}\n",
    "    rpc ListPodSandboxMetrics(ListPodSandboxMetricsRequest) returns (ListPodSandboxMetricsResponse) {}\n"
    + STREAM.format(name="StreamPodSandboxMetrics"))
rep("    rpc RuntimeConfig(RuntimeConfigRequest) returns (RuntimeConfigResponse) {}\n",
    "    rpc RuntimeConfig(RuntimeConfigRequest) returns (RuntimeConfigResponse) {}\n\n"
    "    // UpdatePodSandboxResources synchronously updates the PodSandboxConfig with the pod-level\n"
    "    // resource configuration, after kubelet reconfigured the pod-level cgroups (best effort).\n"
    "    rpc UpdatePodSandboxResources(UpdatePodSandboxResourcesRequest) returns (UpdatePodSandboxResourcesResponse) {}\n")
rep("    rpc ListImages(ListImagesRequest) returns (ListImagesResponse) {}\n",
    "    rpc ListImages(ListImagesRequest) returns (ListImagesResponse) {}\n"
    + STREAM.format(name="StreamImages"))

rep("    ImageSpec image = 9;\n}\n", "    ImageSpec image = 9;\n    // Sub path inside the image volume (KEP-4639 beta).\n    string image_sub_path = 10;\n}\n")
rep("    string runtime_handler = 19;\n}\n", "    string runtime_handler = 19;\n    // The digest of the image used for this volume.\n    string image_ref = 20;\n}\n")
rep("    repeated CDIDevice CDI_devices = 17;\n}\n", "    repeated CDIDevice CDI_devices = 17;\n\n    // The custom stop signal for the container\n    Signal stop_signal = 18;\n}\n")
rep("    ContainerUser user = 18;\n}\n", "    ContainerUser user = 18;\n\n    // Returns the stop signal used by the container runtime to terminate the container\n    Signal stop_signal = 19;\n}\n")
rep("    bool stderr = 6;\n}\n", "    bool stderr = 6;\n    // Unique identifier from the API server audit log for the exec request.\n    string audit_request_id = 7;\n}\n")
rep("    bool stderr = 5;\n}\n", "    bool stderr = 5;\n    // Unique identifier from the API server audit log for the attach request.\n    string audit_request_id = 6;\n}\n")
rep("""message CpuUsage {
    // Timestamp in nanoseconds at which the information were collected. Must be > 0.
    int64 timestamp = 1;
    // Cumulative CPU usage (sum across all cores) since object creation.
    UInt64Value usage_core_nano_seconds = 2;
    // Total CPU usage (sum of all cores) averaged over the sample window.
    // The "core" unit can be interpreted as CPU core-nanoseconds per second.
    UInt64Value usage_nano_cores = 3;
}
""", """message CpuUsage {
    // Timestamp in nanoseconds at which the information were collected. Must be > 0.
    int64 timestamp = 1;
    // Cumulative CPU usage (sum across all cores) since object creation.
    UInt64Value usage_core_nano_seconds = 2;
    // Total CPU usage (sum of all cores) averaged over the sample window.
    // The "core" unit can be interpreted as CPU core-nanoseconds per second.
    UInt64Value usage_nano_cores = 3;
    // CPU PSI statistics.
    PsiStats psi = 4;
}
""")
rep("    UInt64Value major_page_faults = 7;\n}\n", "    UInt64Value major_page_faults = 7;\n    // Memory PSI statistics.\n    PsiStats psi = 8;\n}\n")
rep("    SwapUsage swap = 5;\n}\n", "    SwapUsage swap = 5;\n    // IO usage gathered from the container.\n    IoUsage io = 6;\n}\n")
rep("    repeated ContainerStats containers = 5;\n}\n", "    repeated ContainerStats containers = 5;\n    // IO usage gathered for the pod sandbox.\n    IoUsage io = 6;\n}\n")
rep("    bool supplemental_groups_policy = 1;\n}\n", "    bool supplemental_groups_policy = 1;\n    // user_namespaces_host_network is set to true if the runtime supports containers using both\n    // host network and user namespace simultaneously.\n    bool user_namespaces_host_network = 2;\n}\n")

s += """
message StreamPodSandboxesRequest {
    PodSandboxFilter filter = 1;
}

message StreamPodSandboxesResponse {
    repeated PodSandbox pod_sandboxes = 1;
}

message StreamContainersRequest {
    ContainerFilter filter = 1;
}

message StreamContainersResponse {
    repeated Container containers = 1;
}

message StreamContainerStatsRequest {
    ContainerStatsFilter filter = 1;
}

message StreamContainerStatsResponse {
    repeated ContainerStats container_stats = 1;
}

message StreamPodSandboxStatsRequest {
    PodSandboxStatsFilter filter = 1;
}

message StreamPodSandboxStatsResponse {
    repeated PodSandboxStats pod_sandbox_stats = 1;
}

message StreamPodSandboxMetricsRequest {}

message StreamPodSandboxMetricsResponse {
    repeated PodSandboxMetrics pod_sandbox_metrics = 1;
}

message StreamImagesRequest {
    ImageFilter filter = 1;
}

message StreamImagesResponse {
    repeated Image images = 1;
}

message UpdatePodSandboxResourcesRequest {
    // ID of the PodSandbox to update.
    string pod_sandbox_id = 1;
    // Optional overhead represents the overheads associated with this sandbox
    LinuxContainerResources overhead = 2;
    // Optional resources represents the sum of container resources for this sandbox
    LinuxContainerResources resources = 3;
}

message UpdatePodSandboxResourcesResponse {}

// PSI statistics for an individual resource.
message PsiStats {
    // PSI data for all tasks in the cgroup.
    PsiData Full = 1;
    // PSI data for some tasks in the cgroup.
    PsiData Some = 2;
}

// PSI data for an individual resource.
message PsiData {
    // Total time tasks in the cgroup have waited due to congestion, in nanoseconds.
    uint64 Total = 1;
    // The average (in %) tasks have waited due to congestion over a 10 second window.
    double Avg10 = 2;
    // Over a 60 second window.
    double Avg60 = 3;
    // Over a 300 second window.
    double Avg300 = 4;
}

message IoUsage {
    // Timestamp in nanoseconds at which the information were collected. Must be > 0.
    int64 timestamp = 1;
    // IO PSI statistics.
    PsiStats psi = 2;
}

enum Signal {
    RUNTIME_DEFAULT   = 0;
    SIGABRT           = 1;
    SIGALRM           = 2;
    SIGBUS            = 3;
    SIGCHLD           = 4;
    SIGCLD            = 5;
    SIGCONT           = 6;
    SIGFPE            = 7;
    SIGHUP            = 8;
    SIGILL            = 9;
    SIGINT            = 10;
    SIGIO             = 11;
    SIGIOT            = 12;
    SIGKILL           = 13;
    SIGPIPE           = 14;
    SIGPOLL           = 15;
    SIGPROF           = 16;
    SIGPWR            = 17;
    SIGQUIT           = 18;
    SIGSEGV           = 19;
    SIGSTKFLT         = 20;
    SIGSTOP           = 21;
    SIGSYS            = 22;
    SIGTERM           = 23;
    SIGTRAP           = 24;
    SIGTSTP           = 25;
    SIGTTIN           = 26;
    SIGTTOU           = 27;
    SIGURG            = 28;
    SIGUSR1           = 29;
    SIGUSR2           = 30;
    SIGVTALRM         = 31;
    SIGWINCH          = 32;
    SIGXCPU           = 33;
    SIGXFSZ           = 34;
    SIGRTMIN          = 35;
    SIGRTMINPLUS1     = 36;
    SIGRTMINPLUS2     = 37;
    SIGRTMINPLUS3     = 38;
    SIGRTMINPLUS4     = 39;
    SIGRTMINPLUS5     = 40;
    SIGRTMINPLUS6     = 41;
    SIGRTMINPLUS7     = 42;
    SIGRTMINPLUS8     = 43;
    SIGRTMINPLUS9     = 44;
    SIGRTMINPLUS10    = 45;
    SIGRTMINPLUS11    = 46;
    SIGRTMINPLUS12    = 47;
    SIGRTMINPLUS13    = 48;
    SIGRTMINPLUS14    = 49;
    SIGRTMINPLUS15    = 50;
    SIGRTMAXMINUS14   = 51;
    SIGRTMAXMINUS13   = 52;
    SIGRTMAXMINUS12   = 53;
    SIGRTMAXMINUS11   = 54;
    SIGRTMAXMINUS10   = 55;
    SIGRTMAXMINUS9    = 56;
    SIGRTMAXMINUS8    = 57;
    SIGRTMAXMINUS7    = 58;
    SIGRTMAXMINUS6    = 59;
    SIGRTMAXMINUS5    = 60;
    SIGRTMAXMINUS4    = 61;
    SIGRTMAXMINUS3    = 62;
    SIGRTMAXMINUS2    = 63;
    SIGRTMAXMINUS1    = 64;
    SIGRTMAX          = 65;
}
"""
ORIGIN = '''// CRI runtime.v1 as of cri-api v0.36 (Kubernetes 1.36): the wire contract kubelet speaks.
//
// Origin: kubernetes/kubernetes staging/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto at
// commit 0268656aec06fe837312d7ec3051e6b7f3dc6cde (Apache-2.0, The Kubernetes Authors). Same
// package, service, RPC and message names and field numbers. Made by hack/cri-proto.py from the
// v1.proto k8s-cri 0.11 ships (cri-api of Kubernetes 1.32) plus upstream's additions since:
// the six Stream* list RPCs (CRIListStreaming, KEP-5825), UpdatePodSandboxResources, image
// volume sub paths and image_ref, stop signals, audit request ids, PSI and IO stats, and
// RuntimeFeatures.user_namespaces_host_network. Upstream's `[debug_redact = true]` options on
// AuthConfig are left out: Debian 12's protoc 3.21 does not know them, and they change no wire
// format. Comments are shortened in places; no field differs.

'''
header_end = s.index('*/') + 3
s = s[:header_end] + '\n' + ORIGIN + s[header_end:].lstrip('\n')
open(sys.argv[1] if len(sys.argv) > 1 else 'proto/cri/api.proto', 'w').write(s)
