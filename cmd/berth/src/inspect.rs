//! `berth inspect` (a container, else a pod, else an image) and `berth inspectc` (containers).

use anyhow::bail;
use berth_cri_api::v1 as cri;
use tonic::Code;

use crate::client::{self, Connect};
use crate::containers::{Runtime, find_response};
use crate::output::OutputArgs;
use crate::pods;

/// What `berth inspect` prints for a container: the status (state by name) and the verbose info,
/// JSON values inlined.
fn container_json(response: &cri::ContainerStatusResponse) -> anyhow::Result<serde_json::Value> {
    let mut status = serde_json::to_value(&response.status)?;
    if let Some(state) = status.get_mut("state")
        && let Some(n) = state.as_i64()
    {
        let name = i32::try_from(n)
            .ok()
            .and_then(|n| cri::ContainerState::try_from(n).ok())
            .map_or("CONTAINER_UNKNOWN", |s| s.as_str_name());
        *state = serde_json::Value::from(name);
    }
    let mut keys: Vec<&String> = response.info.keys().collect();
    keys.sort();
    let mut info = serde_json::Map::new();
    for key in keys {
        let raw = &response.info[key];
        let value =
            serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::from(raw.as_str()));
        info.insert(key.clone(), value);
    }
    // Like `inspectp`: a lone "info" entry is the info.
    let info = match info.remove("info") {
        Some(only) if info.is_empty() => only,
        Some(value) => {
            info.insert("info".to_string(), value);
            serde_json::Value::Object(info)
        }
        None => serde_json::Value::Object(info),
    };
    Ok(serde_json::json!({ "status": status, "info": info }))
}

/// `inspectc`: containers only.
pub async fn inspect_container(
    runtime: &mut Runtime,
    arg: &str,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let response = find_response(runtime, arg, true).await?;
    crate::output::one(output, &container_json(&response)?)
}

/// `inspect`: a container, else a pod, else an image.
pub async fn inspect(connect: &Connect, arg: &str, output: &OutputArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    // NotFound, an ID that is not one (InvalidArgument), or a runtime without the RPC: look on.
    let look_on = |e: &anyhow::Error| {
        matches!(
            client::code(e),
            Some(Code::NotFound | Code::InvalidArgument | Code::Unimplemented)
        )
    };
    let mut ambiguous = None;
    let mut note = |e: anyhow::Error| {
        if ambiguous.is_none() && client::render(&e).contains("ambiguous") {
            ambiguous = Some(e);
        }
    };
    let json = match find_response(&mut runtime, arg, true).await {
        Ok(response) => Some(container_json(&response)?),
        Err(e) if look_on(&e) => {
            note(e);
            None
        }
        Err(e) => return Err(e),
    };
    let json = match json {
        Some(json) => Some(json),
        None => {
            let request = cri::PodSandboxStatusRequest {
                pod_sandbox_id: arg.to_string(),
                verbose: true,
            };
            match runtime.pod_sandbox_status(request).await {
                Ok(r) => Some(pods::status_json(r.get_ref())),
                Err(s) => {
                    let e = anyhow::Error::from(s);
                    if !look_on(&e) {
                        return Err(e);
                    }
                    note(e);
                    None
                }
            }
        }
    };
    let json = match json {
        Some(json) => json,
        None => match crate::images::inspect_json(&mut connect.images(None).await?, arg).await? {
            Some(json) => json,
            None => match ambiguous {
                Some(e) => return Err(e),
                None => bail!("no such image, container or pod: {arg}"),
            },
        },
    };
    crate::output::one(output, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_json_names_the_state_and_inlines_info() {
        let response = cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: "c1".into(),
                state: cri::ContainerState::ContainerRunning as i32,
                ..Default::default()
            }),
            info: [("info".to_string(), r#"{"pid":42}"#.to_string())].into(),
        };
        let json = container_json(&response).unwrap();
        assert_eq!(json["status"]["state"], "CONTAINER_RUNNING");
        assert_eq!(json["info"]["pid"], 42);
    }
}
