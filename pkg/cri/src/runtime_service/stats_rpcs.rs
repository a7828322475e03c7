//! The streamed forms of the stats RPCs (cri-api 1.36): the list RPCs' answers, sent in pages.
//! The unary stats RPCs call `crate::stats` directly.

use std::sync::Arc;

use berth_cri_api::v1 as cri;
use berth_stats::StatsService;

use crate::error::CriError;
use crate::list_stream::{self, ListStream};

pub(super) async fn stream_container_stats(
    stats: &Arc<StatsService>,
    req: cri::StreamContainerStatsRequest,
) -> Result<ListStream<cri::StreamContainerStatsResponse>, CriError> {
    let list = cri::ListContainerStatsRequest { filter: req.filter };
    let items = crate::stats::list_container_stats(stats, list).await?.stats;
    Ok(list_stream::stream(items, |container_stats| {
        cri::StreamContainerStatsResponse { container_stats }
    }))
}

pub(super) async fn stream_pod_sandbox_stats(
    stats: &Arc<StatsService>,
    req: cri::StreamPodSandboxStatsRequest,
) -> Result<ListStream<cri::StreamPodSandboxStatsResponse>, CriError> {
    let list = cri::ListPodSandboxStatsRequest { filter: req.filter };
    let items = crate::stats::list_pod_sandbox_stats(stats, list)
        .await?
        .stats;
    Ok(list_stream::stream(items, |pod_sandbox_stats| {
        cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
    }))
}

pub(super) async fn stream_pod_sandbox_metrics(
    stats: &Arc<StatsService>,
) -> Result<ListStream<cri::StreamPodSandboxMetricsResponse>, CriError> {
    let items = crate::stats::list_pod_sandbox_metrics(stats)
        .await?
        .pod_metrics;
    Ok(list_stream::stream(items, |pod_sandbox_metrics| {
        cri::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        }
    }))
}
