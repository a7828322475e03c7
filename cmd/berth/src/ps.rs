//! `berth ps`: containers as crictl lists them, with crictl's filters and columns.

use std::collections::HashMap;

use berth_cri_api::v1 as cri;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::client::Connect;
use crate::containers::{short, state_name};
use crate::output::OutputArgs;
use crate::select::{SelectArgs, id_matches, nanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(long, short)]
    pub all: bool,
    /// Only print container IDs.
    #[arg(long, short)]
    pub quiet: bool,
    /// Only containers of this pod (ID or unique ID prefix).
    #[arg(long, short = 'p', value_name = "POD ID")]
    pub pod: Option<String>,
    /// Only containers with this label, KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Only containers in this state (implies --all).
    #[arg(long, short = 's', value_enum)]
    pub state: Option<State>,
    /// Only containers of this image (reference or ID).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Only containers of pods in this namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl PsArgs {
    /// What the runtime can filter itself: the state and the labels.
    fn filter(&self) -> anyhow::Result<cri::ContainerFilter> {
        let state = match (self.state, self.all || self.select.any_state()) {
            (Some(State::Created), _) => Some(cri::ContainerState::ContainerCreated),
            (Some(State::Running), _) | (None, false) => {
                Some(cri::ContainerState::ContainerRunning)
            }
            (Some(State::Exited), _) => Some(cri::ContainerState::ContainerExited),
            (Some(State::Unknown), _) => Some(cri::ContainerState::ContainerUnknown),
            (None, true) => None,
        };
        Ok(cri::ContainerFilter {
            id: String::new(),
            state: state.map(|s| cri::ContainerStateValue { state: s as i32 }),
            pod_sandbox_id: String::new(),
            label_selector: crate::flags::labels(&self.labels)?,
        })
    }
}

/// A container with its pod's name and namespace (empty if the pod is gone).
pub struct Row<'a> {
    c: &'a cri::Container,
    pod: Option<&'a cri::PodSandboxMetadata>,
}

fn image_name(c: &cri::Container) -> String {
    let image = c.image.as_ref().map_or("", |i| i.image.as_str());
    let image = if image.is_empty() {
        &c.image_ref
    } else {
        image
    };
    if image.starts_with("sha256:") {
        short(image)
    } else {
        image.to_string()
    }
}

/// One container of `berth ps -o json` (the fields README lists).
fn item(row: &Row) -> Value {
    let c = row.c;
    let m = c.metadata.clone().unwrap_or_default();
    let state =
        cri::ContainerState::try_from(c.state).map_or("CONTAINER_UNKNOWN", |s| s.as_str_name());
    json!({
        "id": c.id,
        "podSandboxId": c.pod_sandbox_id,
        "podName": row.pod.map_or("", |p| p.name.as_str()),
        "podNamespace": row.pod.map_or("", |p| p.namespace.as_str()),
        "name": m.name,
        "attempt": m.attempt,
        "image": c.image.as_ref().map_or("", |i| i.image.as_str()),
        "imageRef": c.image_ref,
        "state": state,
        "createdAt": nanos(c.created_at),
        "labels": c.labels,
        "annotations": c.annotations,
    })
}

fn table_row(row: &Row, select: &SelectArgs, wide: bool) -> Vec<String> {
    let c = row.c;
    let m = c.metadata.clone().unwrap_or_default();
    let mut cells = vec![
        select.id(&c.id),
        if select.no_trunc || wide {
            c.image
                .as_ref()
                .map_or(c.image_ref.clone(), |i| i.image.clone())
        } else {
            image_name(c)
        },
        crate::pods::ago(c.created_at),
        state_name(c.state).to_string(),
        m.name,
        m.attempt.to_string(),
        select.id(&c.pod_sandbox_id),
        row.pod.map_or(String::new(), |p| p.name.clone()),
        row.pod.map_or(String::new(), |p| p.namespace.clone()),
    ];
    if wide {
        cells.push(c.image_ref.clone());
    }
    cells
}

const HEADER: [&str; 9] = [
    "CONTAINER",
    "IMAGE",
    "CREATED",
    "STATE",
    "NAME",
    "ATTEMPT",
    "POD ID",
    "POD",
    "NAMESPACE",
];

/// The client-side filters: pod, name, namespace and image.
fn keep(row: &Row, args: &PsArgs, name: Option<&regex::Regex>, image_ids: &[String]) -> bool {
    let c = row.c;
    let m = c.metadata.clone().unwrap_or_default();
    args.pod
        .as_deref()
        .is_none_or(|p| id_matches(&c.pod_sandbox_id, p))
        && name.is_none_or(|r| r.is_match(&m.name))
        && args
            .namespace
            .as_deref()
            .is_none_or(|ns| row.pod.is_some_and(|p| p.namespace == ns))
        && args.image.as_deref().is_none_or(|wanted| {
            let spec = c.image.as_ref().map_or("", |i| i.image.as_str());
            spec == wanted
                || c.image_ref == wanted
                || image_ids.iter().any(|id| *id == c.image_ref || id == spec)
                || id_matches(&c.image_ref, wanted) && wanted.len() >= 4
        })
}

pub async fn ps(connect: &Connect, args: &PsArgs) -> anyhow::Result<()> {
    let name = args.select.name_regex()?;
    let mut runtime = connect.runtime().await?;
    let mut containers = runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(args.filter()?),
        })
        .await?
        .into_inner()
        .containers;
    let pods = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let pods: HashMap<&str, &cri::PodSandboxMetadata> = pods
        .iter()
        .filter_map(|p| Some((p.id.as_str(), p.metadata.as_ref()?)))
        .collect();
    // --image names an image as a person does; the containers record its ID.
    let image_ids = match &args.image {
        Some(image) => {
            let found = connect
                .images(Some(connect.timeout))
                .await?
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: image.clone(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await?
                .into_inner()
                .image;
            found.map(|i| vec![i.id]).unwrap_or_default()
        }
        None => Vec::new(),
    };
    containers.retain(|c| {
        let row = Row {
            c,
            pod: pods.get(c.pod_sandbox_id.as_str()).copied(),
        };
        keep(&row, args, name.as_ref(), &image_ids)
    });
    args.select.newest(&mut containers, |c| c.created_at);
    let rows: Vec<Row> = containers
        .iter()
        .map(|c| Row {
            c,
            pod: pods.get(c.pod_sandbox_id.as_str()).copied(),
        })
        .collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r.c.id);
        }
        return Ok(());
    }
    let items = rows.iter().map(item).collect();
    crate::output::list(&args.output, "containers", items, |out, wide| {
        let mut header = HEADER.to_vec();
        if wide {
            header.push("IMAGE REF");
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| table_row(r, &args.select, wide))
            .collect();
        crate::table::print_rows(out, &header, &cells)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ps: PsArgs,
    }

    fn args(a: &[&str]) -> PsArgs {
        Cli::try_parse_from(std::iter::once("ps").chain(a.iter().copied()))
            .unwrap()
            .ps
    }

    fn container(id: &str, pod: &str, name: &str, image: &str) -> cri::Container {
        cri::Container {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 2,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            image_ref: "sha256:1234567890abcdef".into(),
            state: cri::ContainerState::ContainerExited as i32,
            ..Default::default()
        }
    }

    #[test]
    fn ps_filters_running_unless_told_otherwise() {
        let running = Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        });
        let f = args(&["--label", "a=b"]).filter().unwrap();
        assert_eq!(f.state, running);
        assert_eq!(f.label_selector["a"], "b");
        assert_eq!(args(&["-a"]).filter().unwrap().state, None);
        assert_eq!(args(&["-l"]).filter().unwrap().state, None, "--latest");
        assert_eq!(args(&["-n", "2"]).filter().unwrap().state, None, "--last");
        let exited = args(&["--state", "exited"])
            .filter()
            .unwrap()
            .state
            .unwrap();
        assert_eq!(exited.state, cri::ContainerState::ContainerExited as i32);
    }

    #[test]
    fn client_side_filters() {
        let pod = cri::PodSandboxMetadata {
            name: "p".into(),
            namespace: "kube-system".into(),
            ..Default::default()
        };
        let c = container("c0ffee", "abcdef", "etcd-main", "docker.io/library/etcd:3");
        let row = Row {
            c: &c,
            pod: Some(&pod),
        };
        let check = |a: &[&str], ids: &[String]| {
            let a = args(a);
            let name = a.select.name_regex().unwrap();
            keep(&row, &a, name.as_ref(), ids)
        };
        assert!(check(
            &[
                "--name",
                "^etcd",
                "--namespace",
                "kube-system",
                "--pod",
                "abc"
            ],
            &[]
        ));
        assert!(!check(&["--name", "^main"], &[]));
        assert!(!check(&["--namespace", "default"], &[]));
        assert!(!check(&["--pod", "bcd"], &[]));
        assert!(check(&["--image", "docker.io/library/etcd:3"], &[]));
        assert!(check(
            &["--image", "etcd:3"],
            &["sha256:1234567890abcdef".into()]
        ));
        assert!(check(&["--image", "1234567890"], &[]));
        assert!(!check(&["--image", "busybox"], &[]));
        let orphan = Row { c: &c, pod: None };
        let a = args(&["--namespace", "kube-system"]);
        assert!(!keep(&orphan, &a, None, &[]));
    }

    #[test]
    fn ps_rows_look_like_crictl() {
        let pod = cri::PodSandboxMetadata {
            name: "web-pod".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        let c = container(
            "0123456789abcdef0123",
            "fedcba9876543210",
            "web",
            "sha256:aaaaaaaaaaaaaaaaaaaa",
        );
        let row = Row {
            c: &c,
            pod: Some(&pod),
        };
        let cells = table_row(&row, &SelectArgs::default(), false);
        assert_eq!(cells[0], "0123456789abc");
        assert_eq!(cells[1], "aaaaaaaaaaaaa");
        assert_eq!(cells[3..6], ["Exited", "web", "2"]);
        assert_eq!(cells[6..], ["fedcba9876543", "web-pod", "ns"]);
        let full = table_row(&row, &args(&["--no-trunc"]).select, true);
        assert_eq!((full[0].as_str(), full.len()), ("0123456789abcdef0123", 10));
        let json = item(&row);
        assert_eq!(json["state"], "CONTAINER_EXITED");
        assert_eq!(
            (json["podName"].as_str(), json["attempt"].as_u64()),
            (Some("web-pod"), Some(2))
        );
    }
}
