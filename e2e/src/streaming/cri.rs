//! CRI clients on any runtime's unix socket (containerd's for the reference runs), and the
//! streaming RPCs' URLs.

use std::path::Path;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel to a CRI unix socket.
pub async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
        }
    });
    Ok(Endpoint::try_from("http://[::]:0")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .connect_with_connector(connector)
        .await?)
}

pub async fn runtime(socket: &Path) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    Ok(RuntimeServiceClient::new(channel(socket).await?))
}

pub async fn images(socket: &Path) -> anyhow::Result<ImageServiceClient<Channel>> {
    Ok(ImageServiceClient::new(channel(socket).await?))
}

/// The URL of an Exec RPC.
pub async fn exec_url(
    rt: &mut RuntimeServiceClient<Channel>,
    container_id: &str,
    cmd: &[&str],
    streams: super::StreamOptions,
) -> Result<String, tonic::Status> {
    rt.exec(cri::ExecRequest {
        container_id: container_id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: streams.tty,
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr && !streams.tty,
        // kubelet 1.36 passes the API server's audit id; Berth logs it with the session.
        audit_request_id: "e2e-exec".into(),
    })
    .await
    .map(|r| r.into_inner().url)
}

/// The URL of an Attach RPC.
pub async fn attach_url(
    rt: &mut RuntimeServiceClient<Channel>,
    container_id: &str,
    streams: super::StreamOptions,
) -> Result<String, tonic::Status> {
    rt.attach(cri::AttachRequest {
        container_id: container_id.to_string(),
        stdin: streams.stdin,
        tty: streams.tty,
        stdout: streams.stdout,
        stderr: streams.stderr && !streams.tty,
        audit_request_id: "e2e-attach".into(),
    })
    .await
    .map(|r| r.into_inner().url)
}

/// The URL of a PortForward RPC.
pub async fn port_forward_url(
    rt: &mut RuntimeServiceClient<Channel>,
    pod_sandbox_id: &str,
    ports: &[i32],
) -> Result<String, tonic::Status> {
    rt.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: pod_sandbox_id.to_string(),
        port: ports.to_vec(),
    })
    .await
    .map(|r| r.into_inner().url)
}
