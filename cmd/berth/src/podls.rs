//! `berth pods`: pod sandboxes as crictl lists them, with crictl's filters.

use berth_cri_api::v1 as cri;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::output::OutputArgs;
use crate::pods::{Runtime, ago};
use crate::select::{SelectArgs, id_matches, nanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodState {
    Ready,
    #[value(name = "notready")]
    NotReady,
}

#[derive(Debug, Clone, Args)]
pub struct PodsArgs {
    /// Only print pod IDs.
    #[arg(long, short)]
    pub quiet: bool,
    /// Only the pod with this ID (or unique ID prefix).
    #[arg(long, value_name = "POD ID")]
    pub id: Option<String>,
    /// Only pods in this namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only pods in this state.
    #[arg(long, short = 's', value_enum)]
    pub state: Option<PodState>,
    /// Only pods with this label, KEY=VALUE; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl PodsArgs {
    /// What the runtime filters itself: state and labels.
    fn filter(&self) -> anyhow::Result<cri::PodSandboxFilter> {
        let state = self.state.map(|s| cri::PodSandboxStateValue {
            state: match s {
                PodState::Ready => cri::PodSandboxState::SandboxReady,
                PodState::NotReady => cri::PodSandboxState::SandboxNotready,
            } as i32,
        });
        Ok(cri::PodSandboxFilter {
            id: String::new(),
            state,
            label_selector: crate::flags::labels(&self.labels)?,
        })
    }

    fn keep(&self, pod: &cri::PodSandbox, name: Option<&regex::Regex>) -> bool {
        let m = pod.metadata.clone().unwrap_or_default();
        self.id.as_deref().is_none_or(|id| id_matches(&pod.id, id))
            && self.namespace.as_deref().is_none_or(|ns| m.namespace == ns)
            && name.is_none_or(|r| r.is_match(&m.name))
    }
}

fn state_name(state: i32) -> &'static str {
    if state == cri::PodSandboxState::SandboxReady as i32 {
        "Ready"
    } else {
        "NotReady"
    }
}

/// One pod of `berth pods -o json` (the fields README lists).
fn item(p: &cri::PodSandbox) -> Value {
    let m = p.metadata.clone().unwrap_or_default();
    let state =
        cri::PodSandboxState::try_from(p.state).map_or("SANDBOX_NOTREADY", |s| s.as_str_name());
    json!({
        "id": p.id,
        "name": m.name,
        "namespace": m.namespace,
        "uid": m.uid,
        "attempt": m.attempt,
        "state": state,
        "createdAt": nanos(p.created_at),
        "runtimeHandler": p.runtime_handler,
        "labels": p.labels,
        "annotations": p.annotations,
    })
}

fn table_row(p: &cri::PodSandbox, select: &SelectArgs, wide: bool) -> Vec<String> {
    let m = p.metadata.clone().unwrap_or_default();
    let mut cells = vec![
        if wide { p.id.clone() } else { select.id(&p.id) },
        ago(p.created_at),
        state_name(p.state).to_string(),
        m.name,
        m.namespace,
        m.attempt.to_string(),
        p.runtime_handler.clone(),
    ];
    if wide {
        cells.push(m.uid);
    }
    cells
}

pub async fn list(runtime: &mut Runtime, args: &PodsArgs) -> anyhow::Result<()> {
    let name = args.select.name_regex()?;
    let mut items = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(args.filter()?),
        })
        .await?
        .into_inner()
        .items;
    items.retain(|p| args.keep(p, name.as_ref()));
    args.select.newest(&mut items, |p| p.created_at);
    if args.quiet {
        for pod in &items {
            println!("{}", pod.id);
        }
        return Ok(());
    }
    let json = items.iter().map(item).collect();
    crate::output::list(&args.output, "items", json, |out, wide| {
        let mut header = vec![
            "POD ID",
            "CREATED",
            "STATE",
            "NAME",
            "NAMESPACE",
            "ATTEMPT",
            "RUNTIME",
        ];
        if wide {
            header.push("UID");
        }
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|p| table_row(p, &args.select, wide))
            .collect();
        crate::table::print_rows(out, &header, &rows)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pods: PodsArgs,
    }

    fn args(a: &[&str]) -> PodsArgs {
        Cli::try_parse_from(std::iter::once("pods").chain(a.iter().copied()))
            .unwrap()
            .pods
    }

    #[test]
    fn pod_filters() {
        let pod = cri::PodSandbox {
            id: "abcdef0123456789".into(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "web-1".into(),
                namespace: "prod".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            state: cri::PodSandboxState::SandboxReady as i32,
            ..Default::default()
        };
        let keep = |a: &[&str]| {
            let a = args(a);
            a.keep(&pod, a.select.name_regex().unwrap().as_ref())
        };
        assert!(keep(&[
            "--name",
            "web-[0-9]",
            "--namespace",
            "prod",
            "--id",
            "abcd"
        ]));
        assert!(!keep(&["--namespace", "default"]));
        assert!(!keep(&["--name", "^db"]));
        let f = args(&["--state", "notready", "--label", "a=b"])
            .filter()
            .unwrap();
        assert_eq!(
            f.state.unwrap().state,
            cri::PodSandboxState::SandboxNotready as i32
        );
        assert_eq!(f.label_selector["a"], "b");
        assert_eq!(item(&pod)["state"], "SANDBOX_READY");
        assert_eq!(
            table_row(&pod, &SelectArgs::default(), false)[0],
            "abcdef0123456"
        );
        assert_eq!(table_row(&pod, &SelectArgs::default(), true).len(), 8);
    }
}
