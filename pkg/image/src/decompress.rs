//! Layer media types and their decompression.

use std::io::Read;

use crate::ImageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type; anything that is not a layer tar is refused with a clear
/// error (non-distributable "foreign" layers included: they are deprecated and need URLs we don't fetch).
pub fn layer_compression(media_type: &str) -> Result<Compression, ImageError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Compression::Zstd),
        // Docker's uncompressed form, rarely seen but valid.
        "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        other => Err(ImageError::UnsupportedLayer(other.to_string())),
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// The compression the data itself shows: gzip and zstd by their magic numbers, else a plain tar
/// (whose first bytes are an entry name). Some tools label layers wrongly (skopeo 1.9 with
/// `--dest-oci-accept-uncompressed-layers` calls plain tars `tar+gzip`); containerd and docker
/// decide from the data, and so do we. The digests still cover exactly the bytes received.
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `input` in the decoder its first bytes call for; `declared` (from the media type) is only
/// logged when it disagrees.
pub fn decoder<'a, R: Read + 'a>(
    declared: Compression,
    mut input: R,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut prefix = [0u8; 4];
    let mut have = 0;
    while have < prefix.len() {
        match input.read(&mut prefix[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ImageError::ReadLayer {
                    op: "reading the layer",
                    source,
                });
            }
        }
    }
    let compression = sniff(&prefix[..have]);
    if compression != declared {
        tracing::debug!(?declared, actual = ?compression, "layer compression differs from its media type");
    }
    let input = std::io::Cursor::new(prefix).take(have as u64).chain(input);
    Ok(match compression {
        Compression::None => Box::new(input),
        // MultiGzDecoder: some tools write layers as several concatenated gzip members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(256 * 1024, input),
        )),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|source| ImageError::Zstd { source })?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_round_trip_and_media_types() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"layer bytes").unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        decoder(Compression::Gzip, &gz[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"layer bytes");
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert!(
            layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
                .is_err()
        );
    }

    fn decode(declared: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(declared, data)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_data_decides_not_the_label() {
        let tar = b"etc/passwd\0\0\0 a plain tar starts with a name".to_vec();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        let gz = enc.finish().unwrap();
        // A plain tar labelled gzip, gzip labelled plain, and the labels that are right.
        assert_eq!(decode(Compression::Gzip, &tar), tar);
        assert_eq!(decode(Compression::None, &gz), tar);
        assert_eq!(decode(Compression::Gzip, &gz), tar);
        assert_eq!(decode(Compression::None, &tar), tar);
        // Shorter than any magic number, and empty.
        assert_eq!(decode(Compression::Gzip, b"ab"), b"ab");
        assert_eq!(decode(Compression::Zstd, b""), b"");
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
    }

    #[test]
    fn a_prefix_that_arrives_a_byte_at_a_time_is_kept() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"layer").unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        decoder(Compression::None, OneByte(&gz))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"layer");
    }
}
