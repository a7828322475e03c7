//! `berth volume create|ls|inspect|rm|prune`, docker's verbs over `berth.volumes.v1.Volumes`,
//! and the named volumes of `run -v NAME:/path` / `create -v ...`: a name is looked up (made if
//! missing, as docker does) and the container gets its data dir as an ordinary CRI mount.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use berth_api::volumes::v1 as api;
use berth_api::volumes::v1::volumes_client::VolumesClient;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::client::{self, Connect};
use crate::flags::ContainerArgs;
use crate::output::{self, OutputArgs};

pub type Volumes = VolumesClient<Channel>;

#[derive(Debug, Clone, Subcommand)]
pub enum VolumeCommand {
    /// Make a named volume (a generated name if none is given); prints its name.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes' details (a JSON array, as docker prints it).
    Inspect(InspectArgs),
    /// Remove volumes and their data; refused while any container, running or not, uses one.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove every volume no container uses.
    Prune(PruneArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The volume's name, [a-zA-Z0-9][a-zA-Z0-9_.-]* (default: 64 random hex digits).
    pub name: Option<String>,
    /// Label KEY=VALUE; repeatable.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only print volume names.
    #[arg(long, short)]
    pub quiet: bool,
    /// label=KEY, label=KEY=VALUE, name=SUBSTRING or dangling=true|false; repeatable (all must
    /// match).
    #[arg(long = "filter", short = 'f', value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Say nothing about volumes that don't exist. A volume in use is never removed.
    #[arg(long, short)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (only asked on a terminal).
    #[arg(long, short)]
    pub force: bool,
    /// label=KEY or label=KEY=VALUE: only prune volumes with that label; repeatable.
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

/// A client of Berth's volume service.
pub async fn client(connect: &Connect) -> anyhow::Result<Volumes> {
    Ok(VolumesClient::new(
        client::channel(&connect.endpoint, connect.timeout).await?,
    ))
}

/// A status with a hint when the runtime is not Berth.
fn call_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == Code::Unimplemented {
        anyhow::anyhow!(
            "the runtime does not offer volumes (berth.volumes.v1.Volumes): is it Berth?"
        )
    } else {
        status.into()
    }
}

pub async fn volume(connect: &Connect, command: &VolumeCommand) -> anyhow::Result<()> {
    let mut volumes = client(connect).await?;
    match command {
        VolumeCommand::Create(args) => create(&mut volumes, args).await,
        VolumeCommand::Ls(args) => ls(&mut volumes, args).await,
        VolumeCommand::Inspect(args) => inspect(&mut volumes, args).await,
        VolumeCommand::Rm(args) => rm(&mut volumes, args).await,
        VolumeCommand::Prune(args) => prune(&mut volumes, args).await,
    }
}

/// The documented JSON of one volume (`volume ls -o json` items, `volume inspect`).
pub fn to_json(v: &api::Volume) -> Value {
    let labels: std::collections::BTreeMap<&String, &String> = v.labels.iter().collect();
    json!({
        "name": v.name,
        "driver": v.driver,
        "mountpoint": v.mountpoint,
        "labels": labels,
        "createdAt": v.created_at.to_string(),
        "usedBy": v.used_by,
    })
}

async fn create(volumes: &mut Volumes, args: &CreateArgs) -> anyhow::Result<()> {
    let labels = crate::flags::labels(&args.labels)?;
    let created = volumes
        .create(api::CreateVolumeRequest {
            name: args.name.clone().unwrap_or_default(),
            labels,
        })
        .await
        .map_err(call_error)?
        .into_inner();
    println!("{}", created.volume.map(|v| v.name).unwrap_or_default());
    Ok(())
}

/// `label=...` filters for the service, the others (`name`, `dangling`) applied here.
#[derive(Debug, Default, PartialEq)]
struct Filters {
    labels: Vec<api::LabelFilter>,
    names: Vec<String>,
    dangling: Option<bool>,
}

fn parse_filters(specs: &[String], labels_only: bool) -> anyhow::Result<Filters> {
    let mut filters = Filters::default();
    for spec in specs {
        let Some((kind, value)) = spec.split_once('=') else {
            bail!("--filter {spec:?}: expected label=KEY[=VALUE], name=NAME or dangling=BOOL");
        };
        match kind {
            "label" => {
                let (key, value) = match value.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (value, None),
                };
                if key.is_empty() {
                    bail!("--filter {spec:?}: the label key is empty");
                }
                filters.labels.push(api::LabelFilter {
                    key: key.to_string(),
                    value,
                });
            }
            "name" if !labels_only => filters.names.push(value.to_string()),
            "dangling" if !labels_only => {
                filters.dangling = Some(match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("--filter {spec:?}: dangling is true or false"),
                })
            }
            _ => bail!("--filter {spec:?}: unknown filter {kind:?}"),
        }
    }
    Ok(filters)
}

impl Filters {
    fn keep(&self, v: &api::Volume) -> bool {
        self.names.iter().all(|n| v.name.contains(n.as_str()))
            && self.dangling.is_none_or(|d| d == v.used_by.is_empty())
    }
}

/// Every volume the label filters match (sorted by name).
pub async fn list(
    volumes: &mut Volumes,
    filters: Vec<api::LabelFilter>,
) -> anyhow::Result<Vec<api::Volume>> {
    Ok(volumes
        .list(api::ListVolumesRequest { filters })
        .await
        .map_err(call_error)?
        .into_inner()
        .volumes)
}

async fn ls(volumes: &mut Volumes, args: &LsArgs) -> anyhow::Result<()> {
    let filters = parse_filters(&args.filters, false)?;
    let found: Vec<api::Volume> = list(volumes, filters.labels.clone())
        .await?
        .into_iter()
        .filter(|v| filters.keep(v))
        .collect();
    if args.quiet {
        let mut out = std::io::stdout().lock();
        for v in &found {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(());
    }
    let items = found.iter().map(to_json).collect();
    output::list(&args.output, "volumes", items, |out, wide| {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|v| {
                let mut row = vec![v.driver.clone(), v.name.clone()];
                if wide {
                    row.push(v.mountpoint.clone());
                    row.push(v.used_by.len().to_string());
                }
                row
            })
            .collect();
        let header: &[&str] = if wide {
            &["DRIVER", "VOLUME NAME", "MOUNTPOINT", "CONTAINERS"]
        } else {
            &["DRIVER", "VOLUME NAME"]
        };
        crate::table::print_rows(out, header, &rows)
    })
}

async fn inspect(volumes: &mut Volumes, args: &InspectArgs) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        match volumes
            .inspect(api::InspectVolumeRequest { name: name.clone() })
            .await
        {
            Ok(found) => docs.extend(found.into_inner().volume.as_ref().map(to_json)),
            Err(s) if s.code() == Code::NotFound => missing.push(name.clone()),
            Err(s) => return Err(call_error(s)),
        }
    }
    // What was found is printed, as docker does, and the missing ones fail the command.
    if !docs.is_empty() || missing.is_empty() {
        if args.output.format.is_some() {
            for doc in &docs {
                output::one(&args.output, doc)?;
            }
        } else {
            output::one(&args.output, &Value::Array(docs))?;
        }
    }
    if !missing.is_empty() {
        bail!("no such volume: {}", missing.join(", "));
    }
    Ok(())
}

async fn rm(volumes: &mut Volumes, args: &RmArgs) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for name in &args.names {
        match volumes
            .remove(api::RemoveVolumeRequest { name: name.clone() })
            .await
        {
            Ok(_) => println!("{name}"),
            Err(s) if s.code() == Code::NotFound && args.force => {}
            Err(s) => {
                eprintln!("berth: {}", client::render(&call_error(s)));
                failed.push(name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove volume(s) {}", failed.join(", "));
    }
    Ok(())
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!(
        "WARNING! This will remove all local volumes not used by at least one container.\n\
         Are you sure you want to continue? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

async fn prune(volumes: &mut Volumes, args: &PruneArgs) -> anyhow::Result<()> {
    let filters = parse_filters(&args.filters, true)?;
    if !args.force && !confirm()? {
        return Ok(());
    }
    let pruned = volumes
        .prune(api::PruneVolumesRequest {
            filters: filters.labels,
        })
        .await
        .map_err(call_error)?
        .into_inner();
    if !pruned.removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &pruned.removed {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        crate::prune::human_size(pruned.reclaimed_bytes)
    );
    Ok(())
}

/// The data dir of volume `name`, made first if it does not exist (as `docker run -v` does).
pub async fn ensure(volumes: &mut Volumes, name: &str) -> anyhow::Result<String> {
    let inspect = |volumes: &mut Volumes| {
        let mut volumes = volumes.clone();
        let name = name.to_string();
        async move { volumes.inspect(api::InspectVolumeRequest { name }).await }
    };
    let found = match inspect(volumes).await {
        Ok(found) => found.into_inner().volume,
        Err(s) if s.code() == Code::NotFound => {
            let created = volumes
                .create(api::CreateVolumeRequest {
                    name: name.to_string(),
                    labels: HashMap::new(),
                })
                .await;
            match created {
                Ok(c) => c.into_inner().volume,
                // Made meanwhile by someone else: use theirs.
                Err(s) if s.code() == Code::AlreadyExists => {
                    inspect(volumes)
                        .await
                        .map_err(call_error)?
                        .into_inner()
                        .volume
                }
                Err(s) => return Err(call_error(s)),
            }
        }
        Err(s) => return Err(call_error(s)),
    };
    found
        .map(|v| v.mountpoint)
        .filter(|m| !m.is_empty())
        .with_context(|| format!("the runtime gave no mountpoint for volume {name}"))
}

/// `args` with each named volume of `-v` replaced by its data dir (volumes made as needed); the
/// service is only called when there is one.
pub async fn resolve_mounts(
    connect: &Connect,
    args: &ContainerArgs,
) -> anyhow::Result<ContainerArgs> {
    let mut args = args.clone();
    if !args
        .volumes
        .iter()
        .any(|m| crate::flags::volume_name(m).is_some())
    {
        return Ok(args);
    }
    let mut volumes = client(connect).await?;
    for mount in &mut args.volumes {
        if let Some(name) = crate::flags::volume_name(mount) {
            let name = name.to_string();
            mount.host_path = ensure(&mut volumes, &name)
                .await
                .with_context(|| format!("volume {name}"))?;
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_as_docker_writes_them() {
        let specs = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = parse_filters(
            &specs(&["label=a", "label=b=c=d", "name=web", "dangling=true"]),
            false,
        )
        .unwrap();
        assert_eq!(
            f.labels,
            [
                api::LabelFilter {
                    key: "a".into(),
                    value: None
                },
                api::LabelFilter {
                    key: "b".into(),
                    value: Some("c=d".into())
                }
            ]
        );
        assert_eq!((f.names, f.dangling), (vec!["web".to_string()], Some(true)));
        for bad in ["label", "label==x", "x=y", "dangling=maybe"] {
            assert!(parse_filters(&specs(&[bad]), false).is_err(), "{bad}");
        }
        assert!(
            parse_filters(&specs(&["name=x"]), true).is_err(),
            "prune: labels only"
        );
        let v = api::Volume {
            name: "web-data".into(),
            used_by: vec!["c1".into()],
            ..Default::default()
        };
        let keep = |specs: &[&str]| parse_filters(&self::specs(specs), false).unwrap().keep(&v);
        assert!(keep(&["name=data", "dangling=false"]));
        assert!(!keep(&["dangling=true"]) && !keep(&["name=db"]));
    }

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }
}
