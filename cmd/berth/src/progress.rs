//! Pull progress for `berth pull`, `run` and `create`: per-layer bars on a terminal (indicatif),
//! docker's plain status lines elsewhere, nothing when quiet.
//!
//! The progress comes from Berth's own `berth.images.v1.Images/PullWithProgress`, which runs the
//! very pull CRI's PullImage runs. Against a runtime without that service (containerd, CRI-O) the
//! pull falls back to plain CRI PullImage, which reports nothing until it ends.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::Context;
use berth_api::images::v1 as api;
use berth_api::images::v1::images_client::ImagesClient;
use berth_cri_api::v1 as cri;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::transport::Channel;

/// Where progress goes: stdout for `berth pull` (as docker), stderr for `run`/`create`, whose
/// stdout is the container's output or ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn bars, one per layer (the sink is a terminal).
    Bars,
    /// A line per layer state change, as docker prints when not on a terminal.
    Lines,
    /// Nothing but the result.
    Quiet,
}

impl Mode {
    /// Bars on a terminal, lines elsewhere, nothing with `quiet`.
    pub fn detect(sink: Sink, quiet: bool) -> Mode {
        let terminal = match sink {
            Sink::Stdout => std::io::stdout().is_terminal(),
            Sink::Stderr => std::io::stderr().is_terminal(),
        };
        match (quiet, terminal) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Bars,
            (false, false) => Mode::Lines,
        }
    }
}

/// What a finished pull reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image id (config digest), as CRI's PullImageResponse.image_ref.
    pub image_id: String,
    /// The manifest digest, when the runtime reported it.
    pub digest: Option<String>,
    /// Whether any layer had to be fetched (false: everything was on the node already).
    pub downloaded: bool,
}

/// Pulls `image`, showing progress in `mode` on `sink`.
pub async fn pull(
    channel: Channel,
    image: &str,
    auth: Option<cri::AuthConfig>,
    sink: Sink,
    mode: Mode,
) -> anyhow::Result<Pulled> {
    let request = api::PullRequest {
        image: image.to_string(),
        auth: auth.clone().map(|a| api::AuthConfig {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        }),
    };
    let mut client = ImagesClient::new(channel.clone());
    let mut stream = match client.pull_with_progress(request).await {
        Ok(response) => response.into_inner(),
        // Not Berth (or a Berth from before the service): CRI's pull, without progress.
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            return cri_pull(channel, image, auth, sink, mode).await;
        }
        Err(status) => return Err(status.into()),
    };
    let mut view = View::new(sink, mode, image);
    let mut last = None;
    while let Some(message) = stream.message().await? {
        view.show(&message);
        last = Some(message);
    }
    view.finish();
    let last = last.context("the runtime ended the pull without a result")?;
    if !last.done {
        anyhow::bail!("the runtime ended the pull of {image} before it was done");
    }
    Ok(Pulled {
        image_id: last.image_id,
        digest: (!last.manifest_digest.is_empty()).then_some(last.manifest_digest),
        downloaded: last
            .layers
            .iter()
            .any(|l| l.state() != api::LayerState::Present),
    })
}

async fn cri_pull(
    channel: Channel,
    image: &str,
    auth: Option<cri::AuthConfig>,
    sink: Sink,
    mode: Mode,
) -> anyhow::Result<Pulled> {
    if mode != Mode::Quiet {
        emit(
            sink,
            &format!("Pulling {image} (this runtime reports no progress)"),
        );
    }
    let image_id = cri::image_service_client::ImageServiceClient::new(channel)
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        })
        .await?
        .into_inner()
        .image_ref;
    Ok(Pulled {
        image_id,
        digest: None,
        downloaded: true,
    })
}

fn emit(sink: Sink, line: &str) {
    // A closed pipe must not end the pull; the result is printed (or fails) later anyway.
    let _ = match sink {
        Sink::Stdout => writeln!(std::io::stdout(), "{line}"),
        Sink::Stderr => writeln!(std::io::stderr(), "{line}"),
    };
}

/// A layer's digest as docker shows it: 12 hex digits.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
}

/// docker's words for each state.
fn state_word(state: api::LayerState) -> &'static str {
    match state {
        api::LayerState::Unspecified | api::LayerState::Waiting => "Waiting",
        api::LayerState::Downloading => "Downloading",
        api::LayerState::Verifying => "Verifying Checksum",
        api::LayerState::Unpacking => "Extracting",
        api::LayerState::Done => "Pull complete",
        api::LayerState::Present => "Already exists",
    }
}

/// The plain lines a snapshot adds to what was shown: one per layer whose state changed, plus
/// the digest once known and a note when others joined. Kept apart from drawing to be testable.
#[derive(Debug, Default)]
struct Lines {
    shown: HashMap<String, api::LayerState>,
    digest_shown: bool,
    joined_shown: u32,
}

impl Lines {
    fn next(&mut self, progress: &api::PullProgress) -> Vec<String> {
        let mut out = Vec::new();
        if progress.joined > 1 && progress.joined > self.joined_shown {
            out.push(format!(
                "{} callers are waiting for this pull (joined one in flight)",
                progress.joined
            ));
            self.joined_shown = progress.joined;
        }
        for layer in &progress.layers {
            let state = layer.state();
            if self.shown.insert(layer.digest.clone(), state) != Some(state) {
                out.push(format!("{}: {}", short(&layer.digest), state_word(state)));
            }
        }
        if !self.digest_shown && progress.done && !progress.manifest_digest.is_empty() {
            out.push(format!("Digest: {}", progress.manifest_digest));
            self.digest_shown = true;
        }
        out
    }
}

/// The progress display of one pull.
struct View {
    sink: Sink,
    mode: Mode,
    lines: Lines,
    bars: Option<Bars>,
}

impl View {
    fn new(sink: Sink, mode: Mode, image: &str) -> View {
        if mode != Mode::Quiet {
            emit(sink, &format!("Pulling {image}"));
        }
        View {
            sink,
            mode,
            lines: Lines::default(),
            bars: (mode == Mode::Bars).then(|| Bars::new(sink)),
        }
    }

    fn show(&mut self, progress: &api::PullProgress) {
        match (self.mode, &mut self.bars) {
            (Mode::Bars, Some(bars)) => bars.show(progress),
            (Mode::Lines, _) => {
                for line in self.lines.next(progress) {
                    emit(self.sink, &line);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bars) = self.bars.take() {
            bars.finish();
        }
    }
}

/// indicatif bars, one per layer, in manifest order.
struct Bars {
    multi: MultiProgress,
    layers: HashMap<String, (ProgressBar, api::LayerState)>,
    digest: Option<String>,
    joined: Option<ProgressBar>,
}

impl Bars {
    fn new(sink: Sink) -> Bars {
        let target = match sink {
            Sink::Stdout => ProgressDrawTarget::stdout(),
            Sink::Stderr => ProgressDrawTarget::stderr(),
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            layers: HashMap::new(),
            digest: None,
            joined: None,
        }
    }

    fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix}: {msg:<12} [{bar:40}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn text_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn show(&mut self, progress: &api::PullProgress) {
        if progress.joined > 1 {
            let joined = self.joined.get_or_insert_with(|| {
                let bar = self.multi.insert(0, ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            });
            joined.set_message(format!(
                "{} callers are waiting for this pull",
                progress.joined
            ));
        }
        for layer in &progress.layers {
            let state = layer.state();
            let entry = self.layers.entry(layer.digest.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(layer.total_bytes));
                bar.set_prefix(short(&layer.digest).to_string());
                bar.set_style(Self::text_style());
                bar.set_message(state_word(api::LayerState::Waiting));
                (bar, api::LayerState::Unspecified)
            });
            let (bar, shown) = entry;
            bar.set_length(layer.total_bytes);
            bar.set_position(layer.downloaded_bytes);
            if *shown != state {
                match state {
                    api::LayerState::Downloading => bar.set_style(Self::bar_style()),
                    api::LayerState::Done | api::LayerState::Present => {
                        bar.set_style(Self::text_style());
                    }
                    _ => {}
                }
                bar.set_message(state_word(state));
                *shown = state;
            }
        }
        if progress.done && !progress.manifest_digest.is_empty() {
            self.digest = Some(progress.manifest_digest.clone());
        }
    }

    fn finish(self) {
        for (bar, _) in self.layers.values() {
            bar.finish();
        }
        if let Some(joined) = &self.joined {
            joined.finish_and_clear();
        }
        // The bars stay on screen as docker's do; the digest goes below them.
        if let Some(digest) = &self.digest {
            let _ = self.multi.println(format!("Digest: {digest}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(digest: &str, state: api::LayerState, got: u64) -> api::LayerProgress {
        api::LayerProgress {
            digest: digest.to_string(),
            total_bytes: 100,
            downloaded_bytes: got,
            state: state as i32,
        }
    }

    #[test]
    fn plain_lines_say_each_state_change_once() {
        let mut lines = Lines::default();
        let a = "sha256:aaaaaaaaaaaaaaaaaaaa";
        let b = "sha256:bbbbbbbbbbbbbbbbbbbb";
        let step = |layers, done, joined| api::PullProgress {
            image: "x".into(),
            layers,
            joined,
            done,
            image_id: String::new(),
            manifest_digest: if done {
                "sha256:m".into()
            } else {
                String::new()
            },
        };
        assert!(lines.next(&step(vec![], false, 1)).is_empty());
        assert_eq!(
            lines.next(&step(
                vec![
                    layer(a, api::LayerState::Present, 100),
                    layer(b, api::LayerState::Downloading, 10)
                ],
                false,
                1
            )),
            ["aaaaaaaaaaaa: Already exists", "bbbbbbbbbbbb: Downloading"]
        );
        // More bytes in the same state: nothing new to say.
        assert!(
            lines
                .next(&step(
                    vec![
                        layer(a, api::LayerState::Present, 100),
                        layer(b, api::LayerState::Downloading, 60)
                    ],
                    false,
                    1
                ))
                .is_empty()
        );
        assert_eq!(
            lines.next(&step(
                vec![
                    layer(a, api::LayerState::Present, 100),
                    layer(b, api::LayerState::Done, 100)
                ],
                true,
                2
            )),
            [
                "2 callers are waiting for this pull (joined one in flight)",
                "bbbbbbbbbbbb: Pull complete",
                "Digest: sha256:m"
            ]
        );
    }

    #[test]
    fn quiet_wins_and_short_digests_are_twelve_digits() {
        assert_eq!(Mode::detect(Sink::Stdout, true), Mode::Quiet);
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(state_word(api::LayerState::Unpacking), "Extracting");
    }
}
