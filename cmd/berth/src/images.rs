//! Image verbs: `pull`, `images`, `rmi`, `imagefs`, and the image part of `inspect`; pulling
//! what `run` needs.

use std::io::Write;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

pub type Images = ImageServiceClient<Channel>;

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// `--creds user:password` (a password may contain ':'), like `crictl pull --creds`.
pub fn auth(creds: Option<&str>) -> anyhow::Result<Option<cri::AuthConfig>> {
    let Some(creds) = creds else { return Ok(None) };
    let Some((username, password)) = creds.split_once(':') else {
        bail!("--creds must be USER:PASSWORD");
    };
    if username.is_empty() {
        bail!("--creds: the user name is empty");
    }
    Ok(Some(cri::AuthConfig {
        username: username.to_string(),
        password: password.to_string(),
        ..Default::default()
    }))
}

/// `berth pull`: progress on stdout (bars on a terminal, lines otherwise), then the result; with
/// `quiet`, the image ID alone.
pub async fn pull(
    connect: &crate::client::Connect,
    image: &str,
    auth: Option<cri::AuthConfig>,
    quiet: bool,
) -> anyhow::Result<()> {
    use crate::progress::{Mode, Sink};
    let channel = crate::client::channel_with(&connect.endpoint, connect.timeout, None).await?;
    let mode = Mode::detect(Sink::Stdout, quiet);
    let pulled = crate::progress::pull(channel, image, auth, Sink::Stdout, mode)
        .await
        .with_context(|| format!("pulling {image}"))?;
    if quiet {
        println!("{}", pulled.image_id);
    } else if pulled.downloaded {
        println!("Downloaded newer image for {image}: {}", pulled.image_id);
    } else {
        println!("Image is up to date for {image}: {}", pulled.image_id);
    }
    Ok(())
}

/// "sha256:<hex>" -> the first 13 hex digits, as docker and crictl print IDs.
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(13)]
}

/// Bytes in docker's style: 1000-based units with three significant digits.
fn human_size(bytes: u64) -> String {
    match crate::table::scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB"]) {
        None => format!("{bytes}B"),
        Some((value, unit)) => {
            format!("{value:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
                + unit
        }
    }
}

/// How `berth images` shows its table: crictl's optional columns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Columns {
    pub digests: bool,
    pub no_trunc: bool,
    pub pinned: bool,
}

/// One row per repo tag (an untagged image gets `<none>`), sorted by repository and tag:
/// IMAGE, TAG, [DIGEST,] IMAGE ID, SIZE[, PINNED].
fn rows(list: &[cri::Image], columns: Columns) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for image in list {
        let tags: Vec<(String, String)> = if image.repo_tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(repo, _)| repo);
            vec![(repo.to_string(), "<none>".to_string())]
        } else {
            image
                .repo_tags
                .iter()
                .map(
                    |t| match t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
                        Some((repo, tag)) => (repo.to_string(), tag.to_string()),
                        None => (t.clone(), "<none>".to_string()),
                    },
                )
                .collect()
        };
        for (repo, tag) in tags {
            let mut row = vec![repo.clone(), tag];
            if columns.digests {
                // The digest this repository knows the image by, as crictl shows it.
                let digest = image
                    .repo_digests
                    .iter()
                    .find_map(|d| d.split_once('@').filter(|(r, _)| *r == repo))
                    .or_else(|| image.repo_digests.first().and_then(|d| d.split_once('@')))
                    .map_or("<none>", |(_, digest)| digest);
                let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
                row.push(if columns.no_trunc {
                    digest.to_string()
                } else {
                    digest.chars().take(13).collect()
                });
            }
            row.push(if columns.no_trunc {
                image.id.clone()
            } else {
                short_id(&image.id).to_string()
            });
            row.push(human_size(image.size));
            if columns.pinned {
                row.push(image.pinned.to_string());
            }
            rows.push(row);
        }
    }
    rows.sort();
    rows
}

fn header(columns: Columns) -> Vec<&'static str> {
    let mut header = vec!["IMAGE", "TAG"];
    if columns.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    if columns.pinned {
        header.push("PINNED");
    }
    header
}

/// One image of `berth images -o json` (the fields README lists).
fn item(image: &cri::Image) -> serde_json::Value {
    serde_json::json!({
        "id": image.id,
        "repoTags": image.repo_tags,
        "repoDigests": image.repo_digests,
        "size": image.size,
        "pinned": image.pinned,
        "username": image.username,
        "uid": image.uid.as_ref().map(|u| u.value),
    })
}

pub async fn list(
    images: &mut Images,
    filter: Option<&str>,
    quiet: bool,
    columns: Columns,
    output: &crate::output::OutputArgs,
) -> anyhow::Result<()> {
    let list = images
        .list_images(cri::ListImagesRequest {
            filter: filter.map(|f| cri::ImageFilter { image: spec(f) }),
        })
        .await?
        .into_inner()
        .images;
    if quiet {
        let mut out = std::io::stdout().lock();
        for image in &list {
            writeln!(out, "{}", image.id)?;
        }
        return Ok(());
    }
    let items = list.iter().map(item).collect();
    crate::output::list(output, "images", items, |out, wide| {
        // Wide: every optional column, nothing shortened.
        let columns = if wide {
            Columns {
                digests: true,
                no_trunc: true,
                pinned: true,
            }
        } else {
            columns
        };
        crate::table::print_rows(out, &header(columns), &rows(&list, columns))
    })
}

/// The image's status, or an error naming what was asked for (ImageStatus answers "absent" with
/// an empty response).
async fn status(images: &mut Images, image: &str) -> anyhow::Result<cri::ImageStatusResponse> {
    let response = images
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await?
        .into_inner();
    if response.image.is_none() {
        bail!("no such image: {image}");
    }
    Ok(response)
}

pub async fn remove(images: &mut Images, names: &[String]) -> anyhow::Result<()> {
    let mut failed = 0;
    for name in names {
        // RemoveImage succeeds for absent images (CRI semantics); a person wants to know.
        let result = match status(images, name).await {
            Ok(_) => images
                .remove_image(cri::RemoveImageRequest { image: spec(name) })
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => println!("Deleted: {name}"),
            Err(e) => {
                eprintln!("berth: removing {name}: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} image(s) not removed", names.len());
    }
    Ok(())
}

/// Pulls `image` unless the runtime has it already (what `berth run` and `berth create` do first).
/// Pulls `image` unless the runtime has it, for `run` and `create`: progress goes to stderr (their
/// stdout is the container's output or ID), nothing with `quiet`.
pub async fn ensure(
    connect: &crate::client::Connect,
    image: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    use crate::progress::{Mode, Sink};
    let present = connect
        .images(Some(connect.timeout))
        .await?
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .is_some();
    if !present {
        let mode = Mode::detect(Sink::Stderr, quiet);
        if mode != Mode::Quiet {
            eprintln!("Unable to find image {image} locally");
        }
        let channel = crate::client::channel_with(&connect.endpoint, connect.timeout, None).await?;
        crate::progress::pull(channel, image, None, Sink::Stderr, mode)
            .await
            .with_context(|| format!("pulling {image}"))?;
    }
    Ok(())
}

/// The image's status and config as JSON; `None` if there is no such image.
pub async fn inspect_json(
    images: &mut Images,
    image: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let response = images
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose: true,
        })
        .await?
        .into_inner();
    let Some(found) = response.image else {
        return Ok(None);
    };
    let info: serde_json::Value = response
        .info
        .get("info")
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok(Some(serde_json::json!({
        "id": found.id,
        "repoTags": found.repo_tags,
        "repoDigests": found.repo_digests,
        "size": found.size,
        "uid": found.uid.map(|u| u.value),
        "username": found.username,
        "pinned": found.pinned,
        "info": info,
    })))
}

pub async fn fs_info(images: &mut Images) -> anyhow::Result<()> {
    let response = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await?
        .into_inner();
    for fs in &response.image_filesystems {
        let mountpoint = fs.fs_id.as_ref().map_or("", |f| f.mountpoint.as_str());
        let bytes = fs.used_bytes.as_ref().map_or(0, |v| v.value);
        let inodes = fs.inodes_used.as_ref().map_or(0, |v| v.value);
        println!("{mountpoint}: {} used, {inodes} inodes", human_size(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids_print_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(200_000_000), "200MB");
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789abc");
    }

    #[test]
    fn rows_split_repo_and_tag_and_keep_ports() {
        let image = cri::Image {
            id: "sha256:aaaaaaaaaaaaaaaa".into(),
            repo_tags: vec![
                "localhost:5000/x/y:1.0".into(),
                "docker.io/library/busybox:latest".into(),
            ],
            size: 2_000,
            ..Default::default()
        };
        let untagged = cri::Image {
            id: "sha256:bbbbbbbbbbbbbbbb".into(),
            repo_digests: vec!["localhost:5000/z@sha256:cc".into()],
            ..Default::default()
        };
        let list = [image, untagged];
        let rows = rows(&list, Columns::default());
        assert_eq!(rows[0][..2], ["docker.io/library/busybox", "latest"]);
        assert_eq!(rows[1][..2], ["localhost:5000/x/y", "1.0"]);
        assert_eq!(
            rows[2][..3],
            ["localhost:5000/z", "<none>", "bbbbbbbbbbbbb"]
        );
        assert_eq!(rows[1][3], "2kB");
        let all = Columns {
            digests: true,
            no_trunc: true,
            pinned: true,
        };
        assert_eq!(header(all).len(), 6);
        let wide = super::rows(&list, all);
        assert_eq!(wide[2][2..5], ["cc", "sha256:bbbbbbbbbbbbbbbb", "0B"]);
        assert_eq!(
            (wide[0][2].as_str(), wide[0][5].as_str()),
            ("<none>", "false")
        );
        assert_eq!(item(&list[0])["size"], 2000);
    }

    #[test]
    fn creds_need_a_user() {
        assert!(auth(Some("nouser")).is_err());
        assert!(auth(Some(":pw")).is_err());
        let a = auth(Some("u:p:w")).unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p:w"));
        assert!(auth(None).unwrap().is_none());
    }
}
