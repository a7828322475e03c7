//! Registry credentials, from a CRI `AuthConfig` or from the config file.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use crate::config::RegistryHost;
use crate::error::RegistryError;

/// What we can authenticate with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// Username and password: sent as HTTP Basic to the registry (Basic
    /// challenge) or to the token endpoint (Bearer challenge).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token, exchanged at the token endpoint with
    /// `grant_type=refresh_token` (what `docker login` stores for some
    /// registries, e.g. Azure/ECR-style identity tokens).
    IdentityToken(String),
    /// A ready-made bearer token, sent to the registry as is.
    RegistryToken(String),
}

/// Secrets are never printed, so credentials can sit in logged structs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Builds credentials from the CRI `AuthConfig` fields (empty string =
    /// unset, as protobuf delivers them). Precedence: registry token, then
    /// identity token, then username/password, then `auth` (base64
    /// `user:pass`). All empty means anonymous (`None`).
    pub fn from_cri(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        if !registry_token.is_empty() {
            return Ok(Some(Credentials::RegistryToken(registry_token.to_string())));
        }
        if !identity_token.is_empty() {
            return Ok(Some(Credentials::IdentityToken(identity_token.to_string())));
        }
        if !username.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        if !password.is_empty() {
            return Err(RegistryError::InvalidCredentials(
                "a password was given without a username".into(),
            ));
        }
        if !auth.is_empty() {
            let (username, password) = decode_auth(auth)?;
            return Ok(Some(Credentials::Basic { username, password }));
        }
        Ok(None)
    }

    /// The credentials configured for a registry host, if any.
    pub fn from_host(host: &RegistryHost) -> Result<Option<Credentials>, RegistryError> {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        Credentials::from_cri(
            &s(&host.username),
            &s(&host.password),
            &s(&host.auth),
            &s(&host.identity_token),
            "",
        )
    }

    /// A stable fingerprint used to key cached tokens, so that a token
    /// obtained with one set of credentials (or anonymously) is never reused
    /// for a pull made with different ones: kubelet relies on the runtime
    /// checking each pod's pull secret.
    pub fn fingerprint(creds: Option<&Credentials>) -> String {
        use sha2::{Digest, Sha256};
        let Some(c) = creds else {
            return "anonymous".into();
        };
        let mut h = Sha256::new();
        match c {
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credentials::IdentityToken(t) => {
                h.update(b"identity\0");
                h.update(t.as_bytes());
            }
            Credentials::RegistryToken(t) => {
                h.update(b"registry\0");
                h.update(t.as_bytes());
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// Decodes docker config.json's `auth`: base64 of `user:pass`.
fn decode_auth(auth: &str) -> Result<(String, String), RegistryError> {
    let trimmed = auth.trim();
    let raw = STANDARD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .map_err(|e| {
            RegistryError::InvalidCredentials(format!("`auth` is not valid base64: {e}"))
        })?;
    let text = String::from_utf8(raw)
        .map_err(|_| RegistryError::InvalidCredentials("`auth` does not decode to UTF-8".into()))?;
    let Some((user, pass)) = text.split_once(':') else {
        return Err(RegistryError::InvalidCredentials(
            "`auth` must decode to \"username:password\" (no ':' found)".into(),
        ));
    };
    if user.is_empty() {
        return Err(RegistryError::InvalidCredentials(
            "`auth` decodes to an empty username".into(),
        ));
    }
    Ok((
        user.to_string(),
        pass.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    /// CRI AuthConfig fields: username, password, auth, identity token, registry token.
    type CriFields<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

    #[test]
    fn from_cri_table() {
        let b64 = STANDARD.encode("alice:s3cr:et");
        let cases: Vec<(CriFields, Option<Credentials>)> = vec![
            (("", "", "", "", ""), None),
            (("bob", "pw", "", "", ""), basic("bob", "pw")),
            (("bob", "", "", "", ""), basic("bob", "")),
            (("", "", &b64, "", ""), basic("alice", "s3cr:et")),
            (("bob", "pw", &b64, "", ""), basic("bob", "pw")),
            (("", "", "YTpi", "", ""), basic("a", "b")),
            // unpadded and whitespace-wrapped base64 are accepted
            (("", "", " YWxpY2U6eA ", "", ""), basic("alice", "x")),
            (
                ("bob", "pw", "", "idt", ""),
                Some(Credentials::IdentityToken("idt".into())),
            ),
            (
                ("bob", "pw", "", "idt", "rt"),
                Some(Credentials::RegistryToken("rt".into())),
            ),
        ];
        for ((u, p, a, i, r), want) in cases {
            assert_eq!(
                Credentials::from_cri(u, p, a, i, r).unwrap(),
                want,
                "{u} {p} {a} {i} {r}"
            );
        }
    }

    #[test]
    fn from_cri_errors() {
        let no_colon = STANDARD.encode("alice");
        let empty_user = STANDARD.encode(":pw");
        let not_utf8 = STANDARD.encode([0xff, 0xfe, b':', b'x']);
        for (auth, want) in [
            ("!!notbase64!!", "not valid base64"),
            (no_colon.as_str(), "no ':' found"),
            (empty_user.as_str(), "empty username"),
            (not_utf8.as_str(), "UTF-8"),
        ] {
            let e = Credentials::from_cri("", "", auth, "", "").unwrap_err();
            assert!(matches!(e, RegistryError::InvalidCredentials(_)));
            assert!(e.to_string().contains(want), "{auth}: {e}");
        }
        let e = Credentials::from_cri("", "pw", "", "", "").unwrap_err();
        assert!(e.to_string().contains("without a username"), "{e}");
    }

    #[test]
    fn from_host_and_debug() {
        let h = RegistryHost {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let c = Credentials::from_host(&h).unwrap();
        assert_eq!(c, basic("u", "hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            Credentials::from_host(&RegistryHost::default()).unwrap(),
            None
        );
        assert_ne!(
            Credentials::fingerprint(c.as_ref()),
            Credentials::fingerprint(basic("u", "other").as_ref())
        );
        assert_eq!(Credentials::fingerprint(None), "anonymous");
    }
}
