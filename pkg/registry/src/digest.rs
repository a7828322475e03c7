//! Content digests and incremental verification.
//!
//! Registries are untrusted: everything fetched by digest is hashed while it
//! streams in and compared with what was asked for. Only `sha256` and
//! `sha512` are accepted (the OCI image spec's registered algorithms); any
//! other algorithm is rejected rather than trusted unverified.

use std::fmt;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::RegistryError;

/// A hash algorithm registered by the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated `algorithm:hex` digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Validates `s` (`sha256:` + 64 lowercase hex, or `sha512:` + 128).
    pub fn parse(s: &str) -> Result<Digest, RegistryError> {
        let err = |reason: String| RegistryError::InvalidDigest {
            digest: s.to_string(),
            reason,
        };
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(err("expected <algorithm>:<hex>".into()));
        };
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(err(format!(
                    "unsupported algorithm {other:?} (only sha256 and sha512 are)"
                )));
            }
        };
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(err(format!(
                "{} digests are {} lowercase hex characters",
                algorithm.name(),
                algorithm.hex_len()
            )));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `data` computed with `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// `sha256:<hex>` of `data`: the digest of freshly received bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    Digest::compute(Algorithm::Sha256, data).to_string()
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(a: Algorithm) -> Hasher {
        match a {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, format!("{:x}", h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, format!("{:x}", h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// Hashes content as it streams in and checks it against the descriptor it
/// was fetched by: digest always, size when known. Feed every chunk to
/// [`update`](Self::update) (it fails as soon as the content is longer than
/// expected, so a hostile endpoint can't make us write unbounded data), then
/// call [`finish`](Self::finish) before trusting or committing the content.
pub struct DigestVerifier {
    what: String,
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Hasher,
    seen: u64,
}

impl DigestVerifier {
    /// `what` names the content in errors (e.g. "layer sha256:... of
    /// docker.io/library/busybox").
    pub fn new(
        what: impl Into<String>,
        expected_digest: &str,
        expected_size: Option<u64>,
    ) -> Result<DigestVerifier, RegistryError> {
        let expected = Digest::parse(expected_digest)?;
        Ok(DigestVerifier {
            what: what.into(),
            hasher: Hasher::new(expected.algorithm),
            expected,
            expected_size,
            seen: 0,
        })
    }

    /// Hashes a chunk; fails if the total exceeds the expected size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.expected_size
            && self.seen > size
        {
            return Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                expected: size,
                actual: self.seen,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Bytes hashed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Checks size and digest; returns the verified digest.
    pub fn finish(self) -> Result<Digest, RegistryError> {
        if let Some(size) = self.expected_size
            && self.seen != size
        {
            return Err(RegistryError::SizeMismatch {
                what: self.what,
                expected: size,
                actual: self.seen,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(RegistryError::DigestMismatch {
                what: self.what,
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parse_accepts_and_rejects() {
        assert_eq!(Digest::parse(HELLO).unwrap().to_string(), HELLO);
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert!(Digest::parse(&sha512).is_ok());
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &HELLO.to_uppercase(),
            &format!("md5:{}", "a".repeat(32)),
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn verifier_ok_in_chunks() {
        let mut v = DigestVerifier::new("blob", HELLO, Some(5)).unwrap();
        v.update(b"he").unwrap();
        v.update(b"llo").unwrap();
        assert_eq!(v.bytes_seen(), 5);
        assert_eq!(v.finish().unwrap().to_string(), HELLO);
        assert_eq!(sha256_digest(b"hello"), HELLO);
    }

    #[test]
    fn verifier_mismatches() {
        let mut v = DigestVerifier::new("blob x", HELLO, None).unwrap();
        v.update(b"hellO").unwrap();
        let e = v.finish().unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }));
        assert!(e.to_string().contains("blob x") && e.to_string().contains(HELLO));

        let mut v = DigestVerifier::new("blob", HELLO, Some(4)).unwrap();
        assert!(matches!(
            v.update(b"hello"),
            Err(RegistryError::SizeMismatch {
                expected: 4,
                actual: 5,
                ..
            })
        ));

        let mut v = DigestVerifier::new("blob", HELLO, Some(6)).unwrap();
        v.update(b"hello").unwrap();
        assert!(matches!(
            v.finish(),
            Err(RegistryError::SizeMismatch { .. })
        ));
    }
}
