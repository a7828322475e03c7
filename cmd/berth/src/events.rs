//! `berth events`: the runtime's container events (CRI GetContainerEvents) as they happen, like
//! `docker events`. CRI keeps no history: only events after berth subscribed are shown.
//!
//! `-o json` prints one JSON object per line (JSON Lines), with these fields:
//! `time` (RFC 3339, UTC, nanoseconds), `timeNano` (the same as a string of nanoseconds since the
//! epoch), `type` (`created`, `started`, `stopped` or `deleted`), `containerId`, `containerName`,
//! `attempt`, `image`, `state` (`Created`, `Running`, `Exited`, `Unknown`), `exitCode` (a number
//! once the container exited, else null), `podId`, `podName`, `podNamespace`, `podUid`. Names
//! the event no longer carries (a deleted container's) come from earlier events or the list berth
//! takes when it starts; unknown ones are empty strings.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::containers::{self, Runtime};
use crate::duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    /// One line per event, as docker prints them.
    Table,
    /// One JSON object per line (fields in README).
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// KEY=VALUE: container= (ID prefix or name), pod= (ID prefix or name), namespace=,
    /// type=created|started|stopped|deleted. Repeatable: values of one key are alternatives,
    /// different keys must all match.
    #[arg(long, short, value_name = "KEY=VALUE", value_parser = filter)]
    pub filter: Vec<Filter>,
    /// Output format.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "table",
        value_name = "FORMAT"
    )]
    pub output: EventFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Container(String),
    Pod(String),
    Namespace(String),
    Type(&'static str),
}

const TYPES: [&str; 4] = ["created", "started", "stopped", "deleted"];

fn filter(spec: &str) -> Result<Filter, String> {
    let Some((key, value)) = spec.split_once('=') else {
        return Err(format!("{spec:?}: expected KEY=VALUE"));
    };
    if value.is_empty() {
        return Err(format!("{spec:?}: the value is empty"));
    }
    match key {
        "container" => Ok(Filter::Container(value.to_string())),
        "pod" => Ok(Filter::Pod(value.to_string())),
        "namespace" => Ok(Filter::Namespace(value.to_string())),
        "type" | "event" => TYPES
            .iter()
            .find(|t| **t == value)
            .map(|t| Filter::Type(t))
            .ok_or_else(|| format!("{spec:?}: the type is one of {}", TYPES.join(", "))),
        _ => Err(format!(
            "{spec:?}: unknown key {key:?} (container, pod, namespace or type)"
        )),
    }
}

/// An event with what is known about its container and pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub at: i64,
    pub kind: &'static str,
    pub container_id: String,
    pub container_name: String,
    pub attempt: u32,
    pub image: String,
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub pod_id: String,
    pub pod_name: String,
    pub namespace: String,
    pub pod_uid: String,
}

/// Container names and attempts seen so far, for the events that no longer carry them.
type Known = HashMap<String, (String, u32)>;

fn event(response: &cri::ContainerEventResponse, known: &mut Known) -> Event {
    let kind = usize::try_from(response.container_event_type)
        .ok()
        .and_then(|i| TYPES.get(i))
        .copied()
        .unwrap_or("unknown");
    let mut e = Event {
        at: response.created_at,
        kind,
        container_id: response.container_id.clone(),
        state: "Unknown",
        ..Default::default()
    };
    if let Some(pod) = &response.pod_sandbox_status {
        e.pod_id = pod.id.clone();
        if let Some(m) = &pod.metadata {
            (e.pod_name, e.namespace, e.pod_uid) =
                (m.name.clone(), m.namespace.clone(), m.uid.clone());
        }
    }
    let own = response
        .containers_statuses
        .iter()
        .find(|s| s.id == response.container_id);
    if let Some(s) = own {
        let m = s.metadata.clone().unwrap_or_default();
        known.insert(s.id.clone(), (m.name.clone(), m.attempt));
        e.state = containers::state_name(s.state);
        e.image = s
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        e.exit_code =
            (s.state == cri::ContainerState::ContainerExited as i32).then_some(s.exit_code);
    }
    if let Some((name, attempt)) = known.get(&e.container_id) {
        (e.container_name, e.attempt) = (name.clone(), *attempt);
    }
    if kind == "deleted" {
        known.remove(&e.container_id);
    }
    e
}

/// Whether the event passes the filters: for each key used, one of its values matches.
pub fn wanted(e: &Event, filters: &[Filter]) -> bool {
    let check = |same_key: fn(&Filter) -> bool, matches: &dyn Fn(&Filter) -> bool| {
        let mut of_key = filters.iter().filter(|f| same_key(f)).peekable();
        of_key.peek().is_none() || of_key.any(matches)
    };
    let named = |id: &str, name: &str, wanted: &str| {
        name == wanted || crate::select::id_matches(id, wanted)
    };
    check(
        |f| matches!(f, Filter::Container(_)),
        &|f| matches!(f, Filter::Container(c) if named(&e.container_id, &e.container_name, c)),
    ) && check(
        |f| matches!(f, Filter::Pod(_)),
        &|f| matches!(f, Filter::Pod(p) if named(&e.pod_id, &e.pod_name, p)),
    ) && check(
        |f| matches!(f, Filter::Namespace(_)),
        &|f| matches!(f, Filter::Namespace(n) if *n == e.namespace),
    ) && check(
        |f| matches!(f, Filter::Type(_)),
        &|f| matches!(f, Filter::Type(t) if *t == e.kind),
    )
}

pub fn to_json(e: &Event) -> Value {
    json!({
        "time": duration::format_rfc3339(e.at),
        "timeNano": crate::select::nanos(e.at),
        "type": e.kind,
        "containerId": e.container_id,
        "containerName": e.container_name,
        "attempt": e.attempt,
        "image": e.image,
        "state": e.state,
        "exitCode": e.exit_code,
        "podId": e.pod_id,
        "podName": e.pod_name,
        "podNamespace": e.namespace,
        "podUid": e.pod_uid,
    })
}

/// docker's line: `TIME container TYPE ID (name=..., ...)`.
pub fn to_line(e: &Event) -> String {
    let mut attributes = vec![
        format!("name={}", e.container_name),
        format!("attempt={}", e.attempt),
    ];
    if !e.image.is_empty() {
        attributes.push(format!("image={}", e.image));
    }
    if let Some(code) = e.exit_code {
        attributes.push(format!("exitCode={code}"));
    }
    attributes.push(format!("pod={}", e.pod_id));
    attributes.push(format!("podName={}", e.pod_name));
    attributes.push(format!("namespace={}", e.namespace));
    format!(
        "{} container {} {} ({})",
        duration::format_rfc3339(e.at),
        e.kind,
        e.container_id,
        attributes.join(", ")
    )
}

pub async fn events(runtime: &mut Runtime, args: &EventsArgs) -> anyhow::Result<()> {
    let mut known: Known = runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers
        .into_iter()
        .map(|c| {
            let m = c.metadata.unwrap_or_default();
            (c.id, (m.name, m.attempt))
        })
        .collect();
    let mut stream = runtime
        .get_container_events(cri::GetEventsRequest {})
        .await
        .context("subscribing to the runtime's container events")?
        .into_inner();
    while let Some(response) = stream.message().await? {
        let e = event(&response, &mut known);
        if !wanted(&e, &args.filter) {
            continue;
        }
        let line = match args.output {
            EventFormat::Json => to_json(&e).to_string(),
            EventFormat::Table => to_line(&e),
        };
        // One flush per event: a reader at the other end of a pipe sees each as it happens.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    bail!("the runtime ended the event stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(kind: cri::ContainerEventType, with_status: bool) -> cri::ContainerEventResponse {
        let status = cri::ContainerStatus {
            id: "c0ffee".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "web".into(),
                attempt: 2,
            }),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: 3,
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        cri::ContainerEventResponse {
            container_id: "c0ffee".into(),
            container_event_type: kind as i32,
            created_at: 1_714_557_600_000_000_001,
            pod_sandbox_status: Some(cri::PodSandboxStatus {
                id: "beef".into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: "app".into(),
                    namespace: "ns1".into(),
                    uid: "u".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            containers_statuses: if with_status { vec![status] } else { vec![] },
        }
    }

    #[test]
    fn filters_parse() {
        assert_eq!(filter("type=stopped"), Ok(Filter::Type("stopped")));
        assert_eq!(filter("pod=ab=c"), Ok(Filter::Pod("ab=c".into())));
        for bad in ["type=paused", "image=x", "container", "namespace="] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_carry_names_and_pass_filters() {
        let mut known = Known::new();
        let stopped = event(
            &response(cri::ContainerEventType::ContainerStoppedEvent, true),
            &mut known,
        );
        assert_eq!(
            (
                stopped.kind,
                stopped.container_name.as_str(),
                stopped.exit_code,
                stopped.state
            ),
            ("stopped", "web", Some(3), "Exited")
        );
        // A deleted container's name comes from what was seen before.
        let deleted = event(
            &response(cri::ContainerEventType::ContainerDeletedEvent, false),
            &mut known,
        );
        assert_eq!(
            (deleted.container_name.as_str(), deleted.attempt),
            ("web", 2)
        );
        assert!(known.is_empty());
        let json = to_json(&stopped);
        assert_eq!(json["time"], "2024-05-01T10:00:00.000000001Z");
        assert_eq!(json["timeNano"], "1714557600000000001");
        assert_eq!(
            (json["podName"].as_str(), json["exitCode"].as_i64()),
            (Some("app"), Some(3))
        );
        assert!(
            to_line(&stopped)
                .starts_with("2024-05-01T10:00:00.000000001Z container stopped c0ffee (name=web")
        );

        let f = |specs: &[&str]| specs.iter().map(|s| filter(s).unwrap()).collect::<Vec<_>>();
        assert!(wanted(&stopped, &[]));
        assert!(wanted(
            &stopped,
            &f(&["container=web", "pod=be", "namespace=ns1"])
        ));
        assert!(wanted(&stopped, &f(&["type=started", "type=stopped"])));
        assert!(!wanted(&stopped, &f(&["type=started"])));
        assert!(!wanted(&stopped, &f(&["container=db"])));
        assert!(wanted(&stopped, &f(&["container=db", "container=c0f"])));
        assert!(!wanted(&stopped, &f(&["container=web", "namespace=other"])));
        assert!(wanted(&stopped, &f(&["pod=app"])));
    }
}
