//! `berth pull` and `berth run` progress: docker's plain lines when stdout is not a terminal,
//! redrawn indicatif bars on a terminal (a pty made by util-linux `script`), nothing with -q.
//! The image is the local registry's `big10` (10 layers of 20 MiB).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use berth_e2e::Berthd;
use berth_e2e::berth_binary;
use berth_e2e::registry::SHARED;

fn big10() -> String {
    format!("{SHARED}/berth-test/big10:latest")
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// Runs `berth ARGS` with stdout and stderr on a pseudo-terminal (`script -qfec`), returning
/// what the terminal received.
fn on_a_terminal(berthd: &Berthd, args: &[&str]) -> (bool, String) {
    let mut command = vec![
        berth_binary().unwrap().display().to_string(),
        "-H".into(),
        format!("unix://{}", berthd.socket.display()),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    let out = Command::new("script")
        .args(["-qfec", &command.join(" "), "/dev/null"])
        // A terminal of known width, as a person's would be.
        .env("COLUMNS", "120")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("running script (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn pull_shows_per_layer_progress_as_lines_bars_or_nothing() {
    let berthd = Berthd::start("cli-pull-progress").await.unwrap();
    let image = big10();
    let run = |args: &[&str]| berthd.cli(args).unwrap();

    // Not a terminal: one line per layer and state change, then the digest and the result.
    let (ok, out, err) = run(&["pull", &image]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("Pulling {image}\n")), "{out}");
    assert_eq!(lines_with(&out, ": Pull complete").len(), 10, "{out}");
    // Snapshots are throttled to one per 100 ms, so a layer that downloads within one interval
    // shows no Downloading line of its own; big10's 200 MB always shows some.
    let downloading = lines_with(&out, ": Downloading").len();
    assert!((1..=10).contains(&downloading), "{out}");
    assert!(lines_with(&out, "Already exists").is_empty(), "{out}");
    let layer_line = lines_with(&out, ": Pull complete")[0];
    let (short, _) = layer_line.split_once(':').unwrap();
    assert!(
        short.len() == 12 && short.bytes().all(|b| b.is_ascii_hexdigit()),
        "{layer_line}"
    );
    assert_eq!(lines_with(&out, "Digest: sha256:").len(), 1, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("Downloaded newer image for {image}: sha256:")),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no terminal codes off a terminal: {out:?}"
    );
    let id = last.rsplit(' ').next().unwrap().to_string();

    // Again: every layer is already there.
    let (ok, out, err) = run(&["pull", &image]);
    assert!(ok, "{err}");
    assert_eq!(lines_with(&out, ": Already exists").len(), 10, "{out}");
    assert!(
        out.ends_with(&format!("Image is up to date for {image}: {id}\n")),
        "{out}"
    );

    // -q: the image ID alone.
    let (ok, out, err) = run(&["pull", "-q", &image]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("{id}\n"));

    // On a terminal: bars redrawn in place (cursor movement), ending with every layer complete.
    let (ok, _, err) = run(&["rmi", &image]);
    assert!(ok, "{err}");
    let (ok, screen) = on_a_terminal(&berthd, &["pull", &image]);
    assert!(ok, "{screen}");
    assert!(
        screen.contains("\x1b["),
        "bars are drawn with escapes: {screen:?}"
    );
    assert!(screen.contains("Pull complete"), "{screen}");
    assert!(screen.contains("Downloading"), "{screen}");
    assert!(screen.contains("MiB/"), "byte counts of total: {screen}");
    assert!(screen.contains(&format!("for {image}: {id}")), "{screen}");

    let (ok, _, err) = run(&["rmi", &image]);
    assert!(ok, "{err}");

    // run pulls a missing image with progress on stderr (stdout is the container's); -q hides it.
    let image = format!("{SHARED}/berth-test/busybox:latest");
    let (ok, out, err) = run(&["run", "--rm", &image, "echo", "ran"]);
    assert!(ok, "{err}");
    assert_eq!(out, "ran\n");
    assert!(
        err.contains(&format!("Unable to find image {image} locally")),
        "{err}"
    );
    assert!(!lines_with(&err, ": Pull complete").is_empty(), "{err}");
    let (ok, _, err) = run(&["rmi", &image]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["run", "--rm", "-q", &image, "echo", "quiet"]);
    assert!(ok, "{err}");
    assert_eq!((out.as_str(), err.as_str()), ("quiet\n", ""));
    let (ok, _, err) = run(&["rmi", &image]);
    assert!(ok, "{err}");
    berthd.finish();
}
