//! The final status an exec or attach reports on its error stream/channel.
//!
//! Clients parse this, so it follows kubelet exactly: with `v4.channel.k8s.io` and later (SPDY and
//! WebSocket) a `metav1.Status` in JSON, whose `NonZeroExitCode` reason and `ExitCode` cause are
//! how `kubectl exec` learns the exit code; with older protocols the plain error message, and
//! nothing at all on success. Field order and omitted empty fields match Go's `encoding/json`.

use serde::Serialize;

/// How a session ended, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// An exec's non-zero exit code.
    ExitCode {
        code: i32,
        cmd: Vec<String>,
    },
    /// Anything else (already prefixed, e.g. "error executing command in container: ...").
    Internal(String),
}

/// Which encoding the negotiated protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFormat {
    /// v4 and v5: JSON `metav1.Status`.
    Json,
    /// v1 to v3: the error message as text, nothing on success.
    Text,
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: std::borrow::Cow<'a, str>,
}

impl Outcome {
    /// The message kubelet's `StatusError.Error()` gives (what text protocols send).
    fn message(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::ExitCode { code, cmd } => Some(format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                cmd.join(" ")
            )),
            Outcome::Internal(e) => Some(format!("Internal error occurred: {e}")),
        }
    }

    /// The bytes to write on the error stream (empty: write nothing).
    pub(crate) fn encode(&self, format: StatusFormat) -> Vec<u8> {
        match format {
            StatusFormat::Text => self.message().unwrap_or_default().into_bytes(),
            StatusFormat::Json => {
                let code_text;
                let status = match self {
                    Outcome::Success => Status {
                        metadata: Empty {},
                        status: "Success",
                        message: None,
                        reason: None,
                        details: None,
                        code: None,
                    },
                    Outcome::ExitCode { code, .. } => {
                        code_text = code.to_string();
                        Status {
                            metadata: Empty {},
                            status: "Failure",
                            message: self.message(),
                            reason: Some("NonZeroExitCode"),
                            details: Some(Details {
                                causes: vec![Cause {
                                    reason: Some("ExitCode"),
                                    message: code_text.as_str().into(),
                                }],
                            }),
                            code: None,
                        }
                    }
                    Outcome::Internal(e) => Status {
                        metadata: Empty {},
                        status: "Failure",
                        message: self.message(),
                        reason: Some("InternalError"),
                        details: Some(Details {
                            causes: vec![Cause {
                                reason: None,
                                message: e.as_str().into(),
                            }],
                        }),
                        code: Some(500),
                    },
                };
                // Serializing these plain structs cannot fail; an empty status is the fallback.
                serde_json::to_vec(&status).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_match_kubelet() {
        assert_eq!(
            String::from_utf8(Outcome::Success.encode(StatusFormat::Json)).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let exit = Outcome::ExitCode {
            code: 3,
            cmd: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        assert_eq!(
            String::from_utf8(exit.encode(StatusFormat::Json)).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let internal = Outcome::Internal("error executing command in container: boom".into());
        assert_eq!(
            String::from_utf8(internal.encode(StatusFormat::Json)).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: boom","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: boom"}]},"code":500}"#
        );
    }

    #[test]
    fn text_is_the_message_and_nothing_on_success() {
        assert!(Outcome::Success.encode(StatusFormat::Text).is_empty());
        let exit = Outcome::ExitCode {
            code: 2,
            cmd: vec!["false".into()],
        };
        assert_eq!(
            String::from_utf8(exit.encode(StatusFormat::Text)).unwrap(),
            "command terminated with non-zero exit code: error executing command [false], exit code 2"
        );
    }
}
