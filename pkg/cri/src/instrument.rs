//! One place that wraps every RPC: a tracing span with the method and ids, the per-method metrics, and the
//! mapping of the handler's error to a gRPC status.

use std::future::Future;

use tonic::{Code, Request, Response, Status};
use tracing::{Instrument, field};

use crate::Shared;
use crate::error::{CriError, code_name};
use crate::ids::RpcRequest;

impl Shared {
    /// Runs `handler` for one RPC, instrumented under the request type's method name.
    pub(crate) async fn rpc<Req, Resp, F, Fut>(
        &self,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: RpcRequest,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, CriError>>,
    {
        let method = Req::METHOD;
        let _inflight = self.inflight.enter();
        let request = request.into_inner();
        let span = tracing::info_span!(
            "cri",
            method,
            sandbox_id = field::Empty,
            container_id = field::Empty,
            image = field::Empty,
            pod = field::Empty,
        );
        let ids = request.ids();
        if !ids.sandbox_id.is_empty() {
            span.record("sandbox_id", ids.sandbox_id);
        }
        if !ids.container_id.is_empty() {
            span.record("container_id", ids.container_id);
        }
        if !ids.image.is_empty() {
            span.record("image", ids.image);
        }
        if let Some((namespace, name)) = ids.pod {
            span.record("pod", field::display(format_args!("{namespace}/{name}")));
        }
        let timer = self.deps.metrics.cri.start(method);
        let result = handler(request)
            .instrument(span.clone())
            .await
            .map_err(Status::from);
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        timer.finish(code_name(code));
        let _entered = span.enter();
        match &result {
            Ok(_) => tracing::debug!("ok"),
            // Expected answers to bad or early requests are not the daemon's problem: keep them quiet.
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unimplemented | Code::NotFound | Code::InvalidArgument
                ) =>
            {
                tracing::debug!(code = code_name(s.code()), message = s.message(), "refused")
            }
            Err(s) => tracing::warn!(code = code_name(s.code()), message = s.message(), "failed"),
        }
        result.map(Response::new)
    }
}
