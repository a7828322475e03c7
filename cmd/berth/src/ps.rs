//! `berth ps`: containers as crictl lists them.

use std::io::Write;

use clap::{Args, ValueEnum};
use k8s_cri::v1 as cri;

use crate::containers::{Runtime, short, state_name};
use crate::pods;

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
    /// Only containers of this pod (ID).
    #[arg(long, value_name = "POD ID")]
    pub pod: Option<String>,
    /// Only containers with this label, KEY=VALUE; repeatable.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Only containers in this state (implies --all).
    #[arg(long, value_enum)]
    pub state: Option<State>,
}

impl PsArgs {
    fn filter(&self) -> anyhow::Result<cri::ContainerFilter> {
        let state = match (self.state, self.all) {
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
            pod_sandbox_id: self.pod.clone().unwrap_or_default(),
            label_selector: crate::flags::labels(&self.labels)?,
        })
    }
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

fn rows(containers: &[cri::Container]) -> Vec<[String; 7]> {
    containers
        .iter()
        .map(|c| {
            let m = c.metadata.clone().unwrap_or_default();
            [
                short(&c.id),
                image_name(c),
                pods::ago(c.created_at),
                state_name(c.state).to_string(),
                m.name,
                m.attempt.to_string(),
                short(&c.pod_sandbox_id),
            ]
        })
        .collect()
}

pub async fn ps(runtime: &mut Runtime, args: &PsArgs) -> anyhow::Result<()> {
    let mut containers = runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(args.filter()?),
        })
        .await?
        .into_inner()
        .containers;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for c in &containers {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(());
    }
    let header = [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
    ];
    crate::table::print(&mut out, header, &rows(&containers))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_filters_running_unless_told_otherwise() {
        let ps = |all, state| PsArgs {
            all,
            quiet: false,
            pod: Some("p".into()),
            labels: vec!["a=b".into()],
            state,
        };
        let running = Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        });
        let f = ps(false, None).filter().unwrap();
        assert_eq!((f.state, f.pod_sandbox_id.as_str()), (running, "p"));
        assert_eq!(f.label_selector["a"], "b");
        assert_eq!(ps(true, None).filter().unwrap().state, None);
        let exited = ps(false, Some(State::Exited))
            .filter()
            .unwrap()
            .state
            .unwrap();
        assert_eq!(exited.state, cri::ContainerState::ContainerExited as i32);
    }

    #[test]
    fn ps_rows_look_like_crictl() {
        let c = cri::Container {
            id: "0123456789abcdef0123".into(),
            pod_sandbox_id: "fedcba9876543210".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "web".into(),
                attempt: 2,
            }),
            image: Some(cri::ImageSpec {
                image: "sha256:aaaaaaaaaaaaaaaaaaaa".into(),
                ..Default::default()
            }),
            state: cri::ContainerState::ContainerExited as i32,
            ..Default::default()
        };
        let row = &rows(&[c])[0];
        assert_eq!(row[0], "0123456789abc");
        assert_eq!(row[1], "aaaaaaaaaaaaa");
        assert_eq!(row[3..6], ["Exited", "web", "2"]);
        assert_eq!(row[6], "fedcba9876543");
    }
}
