//! Digests: chain IDs, digest validation, and a reader that hashes what passes through it.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::error::SnapshotError;

const SHA256_PREFIX: &str = "sha256:";

/// Computes an OCI chain ID.
///
/// Per the OCI image spec, `ChainID(L0) = DiffID(L0)` and
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`, formatted as `sha256:<hex>`.
/// A chain ID names a whole stack of layers, which is what a snapshot (a diff plus its
/// ancestors) is, so snapshots are keyed by it rather than by the layer's own diff ID.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(parent) => {
            let mut hasher = Sha256::new();
            hasher.update(parent.as_bytes());
            hasher.update(b" ");
            hasher.update(diff_id.as_bytes());
            format!("{SHA256_PREFIX}{}", hex(&hasher.finalize()))
        }
    }
}

/// Checks that `value` is `sha256:` followed by 64 lowercase hex digits.
///
/// Only sha256 is accepted: it is what every registry and builder uses for diff IDs, and
/// accepting other spellings (upper case, other algorithms) would let two names denote one layer.
pub fn validate_digest(value: &str) -> Result<(), SnapshotError> {
    let invalid = |reason| SnapshotError::InvalidDigest {
        value: value.to_string(),
        reason,
    };
    let hex = value
        .strip_prefix(SHA256_PREFIX)
        .ok_or_else(|| invalid("only sha256:<hex> digests are supported"))?;
    if hex.len() != 64 {
        return Err(invalid("expected 64 hex digits after sha256:"));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("expected lowercase hex digits after sha256:"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Wraps a reader and hashes every byte read through it, so the diff ID is computed in the same
/// pass that extracts the layer (no second read of the stream, no buffering of the blob).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns the `sha256:<hex>` digest and length of everything read so far.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("{SHA256_PREFIX}{}", hex(&self.hasher.finalize())),
            self.bytes,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";
    const B: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

    #[test]
    fn chain_id_of_first_layer_is_its_diff_id() {
        assert_eq!(chain_id(None, A), A);
    }

    #[test]
    fn chain_id_matches_independent_vector() {
        // printf '%s' "$A $B" | sha256sum  (with A and B as above, full length)
        assert_eq!(
            chain_id(Some(A), B),
            "sha256:71dec89dc33c1a1cd5f73cd1e0885ec74b73b03fb9d5a98fddb6486563565072"
        );
    }

    #[test]
    fn hashing_reader_hashes_everything_read() {
        // printf 'abc' | sha256sum
        let mut r = HashingReader::new(&b"abc"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        let (digest, len) = r.finish();
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(len, 3);
    }

    #[test]
    fn validates_digests() {
        assert!(validate_digest(A).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha512:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
            "sha256:A3ED95CAEB02FFE68CDD9FD84406680AE93D633CB16422D00E8A7C22955B46D4",
            "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d",
            "sha256:../../../../../../../../../../../../../../../../../../../../../etc",
        ] {
            assert!(validate_digest(bad).is_err(), "{bad:?} accepted");
        }
    }
}
