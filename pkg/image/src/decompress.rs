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

/// Wraps `input` in the right decoder.
pub fn decoder<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    Ok(match compression {
        Compression::None => Box::new(input),
        // MultiGzDecoder: some tools write layers as several concatenated gzip members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(256 * 1024, input),
        )),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| ImageError::Decompress(format!("zstd: {e}")))?,
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
}
