//! Image workloads: what kubelet's image manager does.
//!
//! * `pull-cold`: PullImage of an image that is not present. Each iteration first removes the
//!   image (untimed), so every timed pull downloads and unpacks every layer. Both runtimes delete
//!   content and snapshots synchronously on RemoveImage, so nothing is left to reuse.
//! * `pull-warm`: PullImage of an image whose layers are all present (kubelet's `Always` pull
//!   policy on a node that has the image): resolve the manifest, find everything local, record.
//! * `image-queries`: ImageStatus by tag and ListImages on a store of `many_count` images
//!   (`<many_repo>:img-<i>`, made by `hack/bench/many-images.sh`), which kubelet calls on every
//!   pod start and every image GC pass.

use anyhow::{Context, Result};
use k8s_cri::v1::{
    ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest,
};

use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn pull_request(image: &str) -> PullImageRequest {
    PullImageRequest {
        image: spec(image),
        auth: None,
        sandbox_config: None,
    }
}

async fn pull(clients: &mut Clients, image: &str) -> Result<()> {
    clients
        .image
        .pull_image(pull_request(image))
        .await
        .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

async fn remove(clients: &mut Clients, image: &str) -> Result<()> {
    clients
        .image
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .with_context(|| format!("removing {image}"))?;
    Ok(())
}

/// `pull-cold` (the image is removed, untimed, before every timed pull) or `pull-warm` (pulled once
/// in setup, so every timed pull finds all layers present).
pub struct Pull {
    image: String,
    cold: bool,
}

impl Pull {
    pub fn cold(opts: &WorkloadOpts) -> Pull {
        Pull {
            image: opts.image.clone(),
            cold: true,
        }
    }

    pub fn warm(opts: &WorkloadOpts) -> Pull {
        Pull {
            image: opts.image.clone(),
            cold: false,
        }
    }
}

impl Workload for Pull {
    fn name(&self) -> &'static str {
        if self.cold { "pull-cold" } else { "pull-warm" }
    }

    fn ops(&self) -> &'static [&'static str] {
        &["PullImage"]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            if self.cold {
                Ok(())
            } else {
                pull(clients, &self.image).await
            }
        })
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if self.cold
                && let Err(e) = remove(clients, &self.image).await
            {
                rec.fail("PullImage", format!("{e:#}"));
                return;
            }
            rec.call(
                "PullImage",
                clients.image.pull_image(pull_request(&self.image)),
            )
            .await;
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove(clients, &self.image))
    }
}

pub struct ImageQueries {
    names: Vec<String>,
}

impl ImageQueries {
    pub fn new(opts: &WorkloadOpts) -> ImageQueries {
        let names = (0..opts.many_count)
            .map(|i| format!("{}:img-{i}", opts.many_repo))
            .collect();
        ImageQueries { names }
    }
}

impl Workload for ImageQueries {
    fn name(&self) -> &'static str {
        "image-queries"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["ImageStatus", "ListImages"]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for name in &self.names {
                pull(clients, name).await?;
            }
            Ok(())
        })
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if self.names.is_empty() {
                rec.fail("ImageStatus", "no images (--many-count 0)");
                return;
            }
            let name = &self.names[(iter as usize) % self.names.len()];
            let req = ImageStatusRequest {
                image: spec(name),
                verbose: false,
            };
            let status = rec
                .call("ImageStatus", clients.image.image_status(req))
                .await;
            if status.is_some_and(|s| s.image.is_none()) {
                rec.fail("ImageStatus", format!("{name} not found"));
            }
            let list = rec
                .call(
                    "ListImages",
                    clients
                        .image
                        .list_images(ListImagesRequest { filter: None }),
                )
                .await;
            if let Some(list) = list
                && list.images.len() < self.names.len()
            {
                rec.fail(
                    "ListImages",
                    format!(
                        "{} images listed, expected {}",
                        list.images.len(),
                        self.names.len()
                    ),
                );
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for name in &self.names {
                remove(clients, name).await?;
            }
            Ok(())
        })
    }
}
