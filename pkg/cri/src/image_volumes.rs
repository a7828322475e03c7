//! CRI `Mount.image` (image volumes, KEP-4639) ↔ `berth_spec::ImageSource`. The image is resolved
//! and mounted by `berth-container` at CreateContainer; here only the shape of the request is
//! checked, as containerd does: no host path, read-only.

use berth_cri_api::v1 as cri;
use berth_spec::ImageSource;

use crate::error::CriError;

/// The image volume a CRI mount asks for, if it names an image.
pub(crate) fn source(m: &cri::Mount) -> Result<Option<ImageSource>, CriError> {
    let image = m.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        if !m.image_sub_path.is_empty() {
            return Err(CriError::InvalidArgument(format!(
                "mount {}: image_sub_path without an image",
                m.container_path
            )));
        }
        return Ok(None);
    }
    if !m.host_path.is_empty() {
        return Err(CriError::InvalidArgument(format!(
            "mount {}: an image volume has no host_path (got {:?})",
            m.container_path, m.host_path
        )));
    }
    if !m.readonly {
        return Err(CriError::InvalidArgument(format!(
            "mount {}: an image volume must be readonly",
            m.container_path
        )));
    }
    Ok(Some(ImageSource {
        image: image.to_string(),
        sub_path: m.image_sub_path.clone(),
        ..Default::default()
    }))
}

/// What ContainerStatus reports as the mount's image: the reference the request named.
pub(crate) fn image_spec(source: &ImageSource) -> cri::ImageSpec {
    cri::ImageSpec {
        image: source.image.clone(),
        user_specified_image: source.image.clone(),
        // The image ID, as PullImage's image_ref names it (kubelet 1.33+ reports it).
        image_ref: source.image_id.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_mount(host_path: &str, readonly: bool) -> cri::Mount {
        cri::Mount {
            container_path: "/mnt/img".into(),
            host_path: host_path.into(),
            readonly,
            image: Some(cri::ImageSpec {
                image: "registry/app:1".into(),
                ..Default::default()
            }),
            image_sub_path: "etc".into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_mount_translation() {
        let s = source(&image_mount("", true)).unwrap().unwrap();
        assert_eq!(s.image, "registry/app:1");
        assert_eq!(s.sub_path, "etc");
        assert!(s.image_id.is_empty());
        assert!(source(&cri::Mount::default()).unwrap().is_none());
    }

    #[test]
    fn malformed_image_mounts_are_invalid() {
        for m in [
            image_mount("/host", true),
            image_mount("", false),
            cri::Mount {
                image_sub_path: "x".into(),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(source(&m), Err(CriError::InvalidArgument(_))),
                "{m:?}"
            );
        }
    }
}
