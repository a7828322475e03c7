//! `berth.containers.v1.Containers` (proto/containers/v1): kill, top and copying files, which CRI
//! has no calls for.
//!
//! Only translation: the work is berth-container's (`kill.rs`, `top.rs`, `copy.rs` there), errors
//! map as CRI's container calls' do, and a path that cannot be resolved in the container says why
//! with its own code (NOT_FOUND for a missing path, INVALID_ARGUMENT for one that crosses a mount
//! or loops).

use berth_api::containers::v1 as api;
use berth_api::containers::v1::containers_server::{Containers, ContainersServer};
use berth_container::{PathStat, ProcessInfo};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::CriError;
use crate::ids::{Ids, RpcRequest};
use crate::{CriService, Shared};

/// Archive chunks queued towards an extraction: the client's pace, not memory, bounds it.
const UPLOAD_QUEUE: usize = 4;

type CopyFromStream = ReceiverStream<Result<api::CopyFromResponse, Status>>;

/// The Berth containers service (tonic needs a type per service).
#[derive(Clone)]
pub struct ContainersApi {
    shared: std::sync::Arc<Shared>,
}

impl CriService {
    /// The Berth containers service, served beside CRI on the same socket.
    pub fn containers_server(&self) -> ContainersServer<ContainersApi> {
        let grpc = &self.shared.deps.config.grpc;
        ContainersServer::new(ContainersApi {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size)
    }
}

macro_rules! container_ids {
    ($($method:ident: $ty:ident),* $(,)?) => {
        $(impl RpcRequest for api::$ty {
            const METHOD: &'static str = concat!("berth.containers.v1.Containers/", stringify!($method));
            fn ids(&self) -> Ids<'_> {
                Ids { container_id: &self.container_id, ..Ids::default() }
            }
        })*
    };
}

container_ids!(
    Kill: KillRequest,
    Top: TopRequest,
    StatPath: StatPathRequest,
    CopyFrom: CopyFromRequest,
);

/// The container is named in the stream's first message, read inside the handler.
impl RpcRequest for Streaming<api::CopyToRequest> {
    const METHOD: &'static str = "berth.containers.v1.Containers/CopyTo";
}

fn container_id(id: &str) -> Result<&str, CriError> {
    match id.trim() {
        "" => Err(CriError::InvalidArgument(
            "a container ID is required".into(),
        )),
        id => Ok(id),
    }
}

fn stat_message(s: PathStat) -> api::PathStat {
    api::PathStat {
        name: s.name,
        size: s.size,
        mode: s.mode,
        mtime_ns: s.mtime_ns,
        link_target: s.link_target,
        is_dir: s.is_dir,
    }
}

fn process_message(p: ProcessInfo) -> api::Process {
    api::Process {
        pid: p.pid,
        container_pid: p.container_pid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        user: p.user,
        host_uid: p.host_uid,
        host_gid: p.host_gid,
        start_time_ns: p.start_time_ns,
        cpu_time_ns: p.cpu_time_ns,
        tty: p.tty,
        args: p.args,
        comm: p.comm,
        state: p.state,
    }
}

#[tonic::async_trait]
impl Containers for ContainersApi {
    type CopyFromStream = CopyFromStream;

    async fn kill(
        &self,
        request: Request<api::KillRequest>,
    ) -> Result<Response<api::KillResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let id = container_id(&req.container_id)?;
                let (id, signal) = shared.deps.containers.kill(id, &req.signal).await?;
                Ok(api::KillResponse {
                    container_id: id,
                    signal,
                })
            })
            .await
    }

    async fn top(
        &self,
        request: Request<api::TopRequest>,
    ) -> Result<Response<api::TopResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let id = container_id(&req.container_id)?;
                let (id, processes) = shared.deps.containers.top(id).await?;
                Ok(api::TopResponse {
                    container_id: id,
                    processes: processes.into_iter().map(process_message).collect(),
                })
            })
            .await
    }

    async fn stat_path(
        &self,
        request: Request<api::StatPathRequest>,
    ) -> Result<Response<api::StatPathResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let id = container_id(&req.container_id)?;
                let stat = shared
                    .deps
                    .containers
                    .stat_path(id, &req.path, req.follow_link)
                    .await?;
                Ok(api::StatPathResponse {
                    stat: Some(stat_message(stat)),
                })
            })
            .await
    }

    async fn copy_from(
        &self,
        request: Request<api::CopyFromRequest>,
    ) -> Result<Response<CopyFromStream>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let id = container_id(&req.container_id)?;
                let (stat, mut chunks) = shared
                    .deps
                    .containers
                    .copy_from(id, &req.path, req.follow_link, &req.rebase_name)
                    .await?;
                let (tx, rx) = mpsc::channel(1);
                tokio::spawn(async move {
                    let first = api::CopyFromResponse {
                        stat: Some(stat_message(stat)),
                        data: Vec::new(),
                    };
                    if tx.send(Ok(first)).await.is_err() {
                        return;
                    }
                    // A client that goes away drops the stream: the archive's writer then
                    // fails its next send and stops.
                    while let Some(chunk) = chunks.recv().await {
                        let message = chunk
                            .map(|data| api::CopyFromResponse { stat: None, data })
                            .map_err(|e| Status::from(CriError::from(e)));
                        let failed = message.is_err();
                        if tx.send(message).await.is_err() || failed {
                            return;
                        }
                    }
                });
                Ok(ReceiverStream::new(rx))
            })
            .await
    }

    async fn copy_to(
        &self,
        request: Request<Streaming<api::CopyToRequest>>,
    ) -> Result<Response<api::CopyToResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |mut stream| async move {
                let mut first = match stream.next().await {
                    Some(Ok(first)) => first,
                    Some(Err(status)) => {
                        return Err(CriError::InvalidArgument(format!(
                            "reading the request: {}",
                            status.message()
                        )));
                    }
                    None => {
                        return Err(CriError::InvalidArgument(
                            "an empty request: the first message names the container".into(),
                        ));
                    }
                };
                let id = container_id(&first.container_id)?.to_string();
                if first.path.trim().is_empty() {
                    return Err(CriError::InvalidArgument(
                        "a destination directory is required".into(),
                    ));
                }
                tracing::Span::current().record("container_id", id.as_str());
                let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
                let data = std::mem::take(&mut first.data);
                let forward = tokio::spawn(async move {
                    if !data.is_empty() && tx.send(Ok(data)).await.is_err() {
                        return;
                    }
                    while let Some(message) = stream.next().await {
                        let chunk = message.map(|m| m.data).map_err(|s| {
                            std::io::Error::other(format!("the client's stream: {}", s.message()))
                        });
                        let failed = chunk.is_err();
                        if tx.send(chunk).await.is_err() || failed {
                            return;
                        }
                    }
                });
                let extracted = shared.deps.containers.copy_to(&id, &first.path, rx).await;
                forward.abort();
                let stats = extracted?;
                Ok(api::CopyToResponse {
                    entries: stats.entries,
                    bytes: stats.bytes,
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_container::ContainerError;

    #[test]
    fn path_errors_get_their_own_codes() {
        let io = |errno| ContainerError::CopyPath {
            op: "resolve",
            path: "/x".into(),
            source: std::io::Error::from(errno),
        };
        let code = |e: ContainerError| Status::from(CriError::from(e)).code();
        assert_eq!(
            code(io(std::io::ErrorKind::NotFound)),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(io(std::io::ErrorKind::CrossesDevices)),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(io(std::io::ErrorKind::PermissionDenied)),
            tonic::Code::Internal
        );
        assert!(
            io(std::io::ErrorKind::NotFound)
                .to_string()
                .contains("no such file"),
        );
        assert_eq!(
            code(ContainerError::NotFound("c".into())),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(ContainerError::NotRunning { id: "x".into() }),
            tonic::Code::FailedPrecondition
        );
    }

    /// No request's mistake is UNKNOWN, and Berth's own failures are INTERNAL.
    #[test]
    fn container_errors_get_request_or_internal_codes() {
        use std::time::Duration;
        let code = |e: ContainerError| Status::from(CriError::from(e)).code();
        assert_eq!(
            code(ContainerError::EmptyCommand),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(ContainerError::MissingId),
            tonic::Code::InvalidArgument
        );
        let not_found = berth_monitor_api::MonitorError::Runtime(
            "exec failed: unable to start container process: exec: \"nope\": executable file \
             not found in $PATH"
                .into(),
        );
        assert_eq!(
            code(ContainerError::from(not_found)),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            code(ContainerError::ExecTimedOut {
                cmd: vec!["sleep".into()],
                after: Duration::from_secs(1),
            }),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(
            code(ContainerError::Runtime {
                op: "kill",
                message: "permission denied".into(),
            }),
            tonic::Code::Internal
        );
        assert_eq!(
            code(ContainerError::Io {
                op: "read",
                path: "/x".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
            tonic::Code::Internal
        );
        let url = CriError::from(berth_streaming::StreamingError::InvalidRequest("no id"));
        assert_eq!(Status::from(url).code(), tonic::Code::InvalidArgument);
    }
}
