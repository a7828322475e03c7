//! `berth system df`: what images and containers take on disk, and how much of it `berth system
//! prune -a` would free, in docker's table (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE).
//!
//! Images: SIZE is what the image filesystem uses (ImageFsInfo: layers shared by images are
//! counted once), or the images' own sizes summed if the runtime does not say; ACTIVE are those a
//! container was created from; RECLAIMABLE is the size of the others (pinned ones excepted), at
//! most SIZE. Containers: SIZE is their writable layers (ListContainerStats), ACTIVE the running
//! ones, RECLAIMABLE the layers of those not running. Local Volumes (Berth's named volumes, when
//! the runtime serves `berth.volumes.v1`): SIZE is the regular files under their data dirs (read
//! on this node), ACTIVE those a container uses, RECLAIMABLE the size of the others.
//!
//! `-o json|yaml` prints `{"types": [{"type", "total", "active", "size", "reclaimable"}]}`, sizes
//! in bytes (`size`/`reclaimable` null when unknown).

use berth_cri_api::v1 as cri;
use clap::Args;
use serde_json::{Value, json};

use crate::client::Connect;
use crate::output::OutputArgs;
use crate::prune;

#[derive(Debug, Clone, Args)]
pub struct DfArgs {
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub kind: &'static str,
    pub total: usize,
    pub active: usize,
    pub size: Option<u64>,
    pub reclaimable: Option<u64>,
}

impl Usage {
    fn json(&self) -> Value {
        json!({
            "type": self.kind,
            "total": self.total,
            "active": self.active,
            "size": self.size,
            "reclaimable": self.reclaimable,
        })
    }

    /// The cells docker shows: RECLAIMABLE with its share of SIZE.
    fn row(&self) -> Vec<String> {
        let size = |v: Option<u64>| v.map_or("-".to_string(), prune::human_size);
        let reclaimable = match (self.reclaimable, self.size) {
            (Some(r), Some(s)) if s > 0 => format!("{} ({}%)", size(Some(r)), r * 100 / s),
            (r, _) => size(r),
        };
        vec![
            self.kind.to_string(),
            self.total.to_string(),
            self.active.to_string(),
            size(self.size),
            reclaimable,
        ]
    }
}

/// The images' row from the list, the IDs in use and the filesystem's own count.
pub fn images_usage(
    images: &[cri::Image],
    in_use: &std::collections::HashSet<String>,
    fs_used: Option<u64>,
) -> Usage {
    let unused = prune::unused(images, in_use, true);
    let size = fs_used.unwrap_or_else(|| images.iter().map(|i| i.size).sum());
    let reclaimable: u64 = unused.iter().map(|i| i.size).sum();
    Usage {
        kind: "Images",
        total: images.len(),
        active: images.iter().filter(|i| prune::used(i, in_use)).count(),
        size: Some(size),
        reclaimable: Some(reclaimable.min(size)),
    }
}

/// The containers' row; writable layers a runtime did not report count as unknown.
pub fn containers_usage(
    containers: &[cri::Container],
    layers: &std::collections::HashMap<String, u64>,
) -> Usage {
    let running = |c: &&cri::Container| c.state == cri::ContainerState::ContainerRunning as i32;
    let known = containers.iter().any(|c| layers.contains_key(&c.id)) || containers.is_empty();
    let sum = |cs: &mut dyn Iterator<Item = &cri::Container>| -> u64 {
        cs.filter_map(|c| layers.get(&c.id)).sum()
    };
    Usage {
        kind: "Containers",
        total: containers.len(),
        active: containers.iter().filter(running).count(),
        size: known.then(|| sum(&mut containers.iter())),
        reclaimable: known.then(|| sum(&mut containers.iter().filter(|c| !running(c)))),
    }
}

/// Bytes of the regular files under `dir`, symlinks not followed; `None` if it can't be read
/// (berth runs on another node than the runtime, or without the right to look).
pub fn tree_size(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            let metadata = entry.metadata().ok()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if metadata.is_file() {
                total += metadata.len();
            }
        }
    }
    Some(total)
}

/// The Local Volumes row, if the runtime has Berth's volume service.
async fn volumes_usage(connect: &Connect) -> anyhow::Result<Option<Usage>> {
    let mut client = crate::volume::client(connect).await?;
    let request = berth_api::volumes::v1::ListVolumesRequest { filters: vec![] };
    let volumes = match client.list(request).await {
        Ok(r) => r.into_inner().volumes,
        Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
        Err(s) => return Err(s.into()),
    };
    let sizes: Vec<Option<u64>> = volumes
        .iter()
        .map(|v| tree_size(std::path::Path::new(&v.mountpoint)))
        .collect();
    let known = sizes.iter().all(Option::is_some);
    let sum = |unused_only: bool| -> u64 {
        volumes
            .iter()
            .zip(&sizes)
            .filter(|(v, _)| !unused_only || v.used_by.is_empty())
            .filter_map(|(_, s)| *s)
            .sum()
    };
    Ok(Some(Usage {
        kind: "Local Volumes",
        total: volumes.len(),
        active: volumes.iter().filter(|v| !v.used_by.is_empty()).count(),
        size: known.then(|| sum(false)),
        reclaimable: known.then(|| sum(true)),
    }))
}

pub async fn df(connect: &Connect, args: &DfArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    let mut images = connect.images(Some(connect.timeout)).await?;
    let containers = runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    let in_use = prune::images_in_use(&containers, &mut images).await?;
    let list = prune::list_images(&mut images).await?;
    let fs_used = prune::image_fs_used(&mut images).await;
    let layers = prune::writable_layers(&mut runtime).await;
    let mut rows = vec![
        images_usage(&list, &in_use, fs_used),
        containers_usage(&containers, &layers),
    ];
    rows.extend(volumes_usage(connect).await?);
    let items = rows.iter().map(Usage::json).collect();
    crate::output::list(&args.output, "types", items, |out, _wide| {
        let cells: Vec<Vec<String>> = rows.iter().map(Usage::row).collect();
        crate::table::print_rows(
            out,
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &cells,
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn usage_counts_active_and_reclaimable_like_docker() {
        let image = |id: &str, size, pinned| cri::Image {
            id: id.into(),
            repo_tags: vec![format!("r/{id}:1")],
            size,
            pinned,
            ..Default::default()
        };
        let list = [
            image("a", 100, false),
            image("b", 300, false),
            image("p", 50, true),
        ];
        let in_use: HashSet<String> = ["a".to_string()].into();
        let u = images_usage(&list, &in_use, Some(400));
        assert_eq!(
            (u.total, u.active, u.size, u.reclaimable),
            (3, 1, Some(400), Some(300))
        );
        assert_eq!(u.row()[4], "300B (75%)");
        // No filesystem figure: the sizes summed; reclaimable never above the size.
        let u = images_usage(&list, &HashSet::new(), None);
        assert_eq!((u.active, u.size, u.reclaimable), (0, Some(450), Some(400)));
        let u = images_usage(&list, &HashSet::new(), Some(200));
        assert_eq!(u.reclaimable, Some(200));

        let container = |id: &str, state: cri::ContainerState| cri::Container {
            id: id.into(),
            state: state as i32,
            ..Default::default()
        };
        let cs = [
            container("r", cri::ContainerState::ContainerRunning),
            container("x", cri::ContainerState::ContainerExited),
        ];
        let layers = HashMap::from([("r".to_string(), 10), ("x".to_string(), 5_000)]);
        let u = containers_usage(&cs, &layers);
        assert_eq!(
            (u.total, u.active, u.size, u.reclaimable),
            (2, 1, Some(5_010), Some(5_000))
        );
        assert_eq!(u.row(), ["Containers", "2", "1", "5.01kB", "5kB (99%)"]);
        let u = containers_usage(&cs, &HashMap::new());
        assert_eq!((u.size, u.row()[3].as_str()), (None, "-"));
        assert_eq!(u.json()["size"], Value::Null);

        let dir = std::env::temp_dir().join(format!("berth-df-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), "12345").unwrap();
        std::fs::write(dir.join("g"), "678").unwrap();
        // A symlink is not followed: what it points at is not the volume's.
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        assert_eq!(tree_size(&dir), Some(8));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(tree_size(&dir), None);
    }
}
