//! `berth commit`, `berth save` and `berth load`: berth.images.v1.Images Commit, Save and Load.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_api::images::v1 as api;
use berth_api::images::v1::images_client::ImagesClient;
use clap::Args;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::client::{self, Connect};
use crate::containers;

/// Bytes per message sent to `Load` (berthd writes `Save` in chunks of the same size).
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The history entry's author, e.g. "Jane <jane@example.com>".
    #[arg(long, short)]
    author: Option<String>,
    /// The history entry's comment.
    #[arg(long, short)]
    message: Option<String>,
    /// Freeze a running container while its files are copied (without it, a running container
    /// is copied file by file as it goes on changing them).
    #[arg(long, short)]
    pause: bool,
    /// Container ID, unique ID prefix or name.
    container: String,
    /// NAME[:TAG] for the new image (short names mean docker.io/library/NAME, as for pulls);
    /// without it the image has no name and is found by its ID.
    image: Option<String>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save (names, IDs or ID prefixes).
    #[arg(required = true)]
    images: Vec<String>,
    /// Write the archive to FILE (made whole or not at all) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive from FILE instead of stdin: an OCI image layout (berth save, skopeo
    /// oci-archive:) or a docker archive (docker save, skopeo docker-archive:).
    #[arg(long, short, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print only the loaded images' IDs.
    #[arg(long, short)]
    quiet: bool,
}

/// A client of Berth's image service whose calls take as long as they take (archives are big).
async fn images(connect: &Connect) -> anyhow::Result<ImagesClient<Channel>> {
    let channel = client::channel_with(&connect.endpoint, connect.timeout, None).await?;
    Ok(ImagesClient::new(channel))
}

fn unsupported(status: tonic::Status, what: &str) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!("the runtime does not offer {what} (berth.images.v1.Images): is it Berth?")
    } else {
        status.into()
    }
}

pub async fn commit(connect: &Connect, args: &CommitArgs) -> anyhow::Result<()> {
    let container = containers::find(&mut connect.runtime().await?, &args.container, false).await?;
    let request = api::CommitRequest {
        container_id: container.id,
        reference: args.image.clone().unwrap_or_default(),
        author: args.author.clone().unwrap_or_default(),
        message: args.message.clone().unwrap_or_default(),
        pause: args.pause,
    };
    let response = images(connect)
        .await?
        .commit(request)
        .await
        .map_err(|s| unsupported(s, "commit"))?
        .into_inner();
    println!("{}", response.image_id);
    Ok(())
}

pub async fn save(connect: &Connect, args: &SaveArgs) -> anyhow::Result<()> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
    }
    let request = api::SaveRequest {
        references: args.images.clone(),
    };
    let mut stream = images(connect)
        .await?
        .save(request)
        .await
        .map_err(|s| unsupported(s, "save"))?
        .into_inner();
    match &args.output {
        Some(path) => {
            let mut out = Partial::create(path)?;
            while let Some(chunk) = stream.message().await? {
                out.file.write_all(&chunk.data)?;
            }
            out.finish(path)
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.message().await? {
                out.write_all(&chunk.data)?;
            }
            Ok(out.flush()?)
        }
    }
}

/// `FILE.berth-partial`, renamed to FILE once the whole archive is in: a failed save leaves
/// neither a truncated archive nor a half-replaced one.
struct Partial {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    done: bool,
}

impl Partial {
    fn create(path: &Path) -> anyhow::Result<Partial> {
        let mut name = path.as_os_str().to_os_string();
        name.push(".berth-partial");
        let partial = PathBuf::from(name);
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        Ok(Partial {
            file: std::io::BufWriter::with_capacity(CHUNK, file),
            path: partial,
            done: false,
        })
    }

    fn finish(mut self, path: &Path) -> anyhow::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        std::fs::rename(&self.path, path).with_context(|| format!("writing {}", path.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub async fn load(connect: &Connect, args: &LoadArgs) -> anyhow::Result<()> {
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &args.input {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None if std::io::stdin().is_terminal() => {
            bail!("refusing to read an archive from a terminal: use -i FILE or redirect stdin")
        }
        None => {
            // A duplicate of fd 0 read on tokio's blocking pool (tokio's own stdin needs a
            // feature this client leaves off).
            let fd = std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned()?;
            Box::new(tokio::fs::File::from_std(std::fs::File::from(fd)))
        }
    };
    let (tx, rx) = mpsc::channel::<api::Chunk>(4);
    let reading = tokio::spawn(send_chunks(input, tx));
    let answer = images(connect)
        .await?
        .load(tokio_stream_of(rx))
        .await
        .map_err(|s| unsupported(s, "load"));
    // A read error is the cause of whatever the runtime answered to the cut-off stream.
    reading.await.context("reading the archive")??;
    for image in answer?.into_inner().images {
        if args.quiet {
            println!("{}", image.id);
        } else if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        } else {
            for name in image.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(())
}

async fn send_chunks(
    mut input: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    tx: mpsc::Sender<api::Chunk>,
) -> anyhow::Result<()> {
    loop {
        let mut data = Vec::with_capacity(CHUNK);
        while data.len() < CHUNK {
            let n = (&mut input)
                .take((CHUNK - data.len()) as u64)
                .read_to_end(&mut data)
                .await?;
            if n == 0 {
                break;
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        // The runtime stopped reading (it refused the archive): its answer says why.
        if tx.send(api::Chunk { data }).await.is_err() {
            return Ok(());
        }
    }
}

/// The chunks as the request stream tonic takes.
fn tokio_stream_of(
    mut rx: mpsc::Receiver<api::Chunk>,
) -> impl futures_util::Stream<Item = api::Chunk> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
