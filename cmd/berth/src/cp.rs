//! `berth cp`: files between a container and this host, as `docker cp` copies them, through
//! berthd's CopyFrom/CopyTo (tar archives of the container's rootfs, read and written on the host
//! side: the image needs no `tar`).
//!
//! Docker's rules for where things land: a file onto an existing file replaces it; into an
//! existing directory it goes in under its own name; to a path that does not exist it gets that
//! name (a trailing `/` then says "a directory that must exist", an error). A directory into an
//! existing directory goes in under its own name, or with `SRC/.` its contents do; to a path that
//! does not exist it becomes that directory; onto a file it is an error. `-` as DEST writes the tar
//! to stdout, as SRC reads one from stdin.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_api::containers::v1 as api;
use clap::Args;
use tokio::sync::mpsc;
use tonic::Code;

use crate::client::Connect;
use crate::containers;
use crate::ctrops::{self, Containers, no_service};

/// Archive bytes per CopyTo message.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// Follow a symlink SRC names (copy what it points to, not the link).
    #[arg(long = "follow-link", short = 'L')]
    pub follow_link: bool,
    /// CONTAINER:PATH, a local path, or - (a tar archive on stdin).
    pub src: String,
    /// CONTAINER:PATH, a local path, or - (the tar archive to stdout).
    pub dest: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Container { container: String, path: String },
    Local(String),
    Stdio,
}

/// docker's reading of an argument: `-`, a path (starting with `/` or `.`, or without a `:`
/// before any `/`), else CONTAINER:PATH.
fn side(arg: &str) -> Side {
    if arg == "-" {
        return Side::Stdio;
    }
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Local(arg.to_string());
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.is_empty() && !container.contains('/') => {
            Side::Container {
                container: container.to_string(),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
            }
        }
        _ => Side::Local(arg.to_string()),
    }
}

/// The last component of a path after a trailing `/` or `/.`, as docker names a copy.
fn base_name(path: &str) -> String {
    let mut p = path;
    while let Some(t) = p.strip_suffix("/.").or_else(|| p.strip_suffix('/')) {
        p = t;
    }
    Path::new(p)
        .file_name()
        .map_or_else(|| ".".to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether SRC asks for a directory's contents rather than the directory (`dir/.`).
fn contents_only(path: &str) -> bool {
    path.ends_with("/.") || path == "."
}

/// Where a copy lands, by docker's rules: the directory to extract into and the name the copied
/// path gets there ("." for a directory's contents).
#[derive(Debug, PartialEq, Eq)]
struct Landing {
    dir: String,
    name: String,
}

/// What the destination is: `Some(true)` a directory, `Some(false)` something else, `None`
/// missing.
fn landing(
    src: &str,
    src_is_dir: bool,
    dest: &str,
    dest_is_dir: Option<bool>,
) -> anyhow::Result<Landing> {
    let parent = |p: &str| {
        let trimmed = p.trim_end_matches('/');
        match Path::new(trimmed).parent() {
            Some(d) if d.as_os_str().is_empty() => ".".to_string(),
            Some(d) => d.to_string_lossy().into_owned(),
            None => "/".to_string(),
        }
    };
    match dest_is_dir {
        Some(true) => Ok(Landing {
            dir: dest.to_string(),
            name: if src_is_dir && contents_only(src) {
                ".".into()
            } else {
                base_name(src)
            },
        }),
        Some(false) if src_is_dir => {
            bail!("cannot copy a directory to a file: {dest} is not a directory")
        }
        Some(false) => Ok(Landing {
            dir: parent(dest),
            name: base_name(dest),
        }),
        None if dest.ends_with('/') && !src_is_dir => {
            bail!("destination directory {dest} does not exist")
        }
        None => Ok(Landing {
            dir: parent(dest),
            name: base_name(dest),
        }),
    }
}

pub async fn cp(connect: &Connect, args: &CpArgs) -> anyhow::Result<()> {
    match (side(&args.src), side(&args.dest)) {
        (Side::Container { container, path }, dest) => {
            let dest = match dest {
                Side::Container { .. } => {
                    bail!("copying between containers is not supported: copy to this host first")
                }
                Side::Local(d) => Some(d),
                Side::Stdio => None,
            };
            copy_from(
                connect,
                &container,
                &path,
                dest.as_deref(),
                args.follow_link,
            )
            .await
        }
        (src, Side::Container { container, path }) => {
            let src = match src {
                Side::Local(s) => Some(s),
                Side::Stdio => None,
                Side::Container { .. } => unreachable!("matched above"),
            };
            copy_to(connect, src.as_deref(), &container, &path, args.follow_link).await
        }
        _ => bail!("one of SRC and DEST must be CONTAINER:PATH"),
    }
}

/// The container's full ID and a client for streams.
async fn open(connect: &Connect, container: &str) -> anyhow::Result<(String, Containers)> {
    let mut runtime = connect.runtime().await?;
    let id = containers::find(&mut runtime, container, false).await?.id;
    Ok((id, ctrops::service(connect, None).await?))
}

/// What `path` is in the container; `None` if there is nothing there.
async fn stat(
    service: &mut Containers,
    id: &str,
    path: &str,
    follow: bool,
) -> anyhow::Result<Option<api::PathStat>> {
    let request = api::StatPathRequest {
        container_id: id.to_string(),
        path: path.to_string(),
        follow_link: follow,
    };
    match service.stat_path(request).await {
        Ok(r) => Ok(r.into_inner().stat),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(no_service(s, "cp")),
    }
}

async fn copy_from(
    connect: &Connect,
    container: &str,
    path: &str,
    dest: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let (id, mut service) = open(connect, container).await?;
    let (dir, rebase) = match dest {
        None => (None, String::new()),
        Some(dest) => {
            let Some(src) = stat(&mut service, &id, path, follow).await? else {
                bail!("no such file or directory in container {container}: {path}");
            };
            let local = std::fs::metadata(dest).ok().map(|m| m.is_dir());
            let landing = landing(path, src.is_dir, dest, local)?;
            if !Path::new(&landing.dir).is_dir() {
                bail!("destination directory {} does not exist", landing.dir);
            }
            (Some(PathBuf::from(landing.dir)), landing.name)
        }
    };
    let mut stream = service
        .copy_from(api::CopyFromRequest {
            container_id: id,
            path: path.to_string(),
            follow_link: follow,
            rebase_name: rebase,
        })
        .await
        .map_err(|s| no_service(s, "cp"))?
        .into_inner();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let sink = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let reader = Chunks {
            rx,
            chunk: Vec::new(),
            at: 0,
        };
        match dir {
            None => {
                let mut reader = reader;
                let mut out = std::io::stdout().lock();
                std::io::copy(&mut reader, &mut out)?;
                out.flush()?;
                Ok(())
            }
            Some(dir) => unpack(reader, &dir),
        }
    });
    let received = async {
        while let Some(message) = stream.message().await? {
            if !message.data.is_empty() && tx.send(message.data).await.is_err() {
                break; // the writer failed: its error says why
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(tx);
    let written = sink.await.context("the archive writer")?;
    received?;
    written
}

/// Extracts an archive from the container here: paths with `..` and links out of `dir` are
/// refused (tar's own checks), owners kept when berth runs as root.
fn unpack(reader: impl Read, dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    archive
        .unpack(dir)
        .with_context(|| format!("extracting into {}", dir.display()))
}

/// The bytes of a channel of chunks, as one reader.
struct Chunks {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// berthd stopped reading the archive: it answered (done, or refused it) before berth had sent
/// all of it. Not a local failure (nor a broken pipe, which berth would exit 0 for).
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("berthd stopped reading the archive")
    }
}

impl std::error::Error for Closed {}

fn closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<Closed>())
    })
}

/// Sends what is written as CopyTo messages of [`CHUNK`] bytes.
struct Sender {
    tx: mpsc::Sender<api::CopyToRequest>,
    buf: Vec<u8>,
}

impl Sender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(api::CopyToRequest {
                data,
                ..Default::default()
            })
            .map_err(|_| std::io::Error::other(Closed))
    }
}

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Archives the local `src` as `name` (a directory's contents at the top for "."), or passes
/// stdin's archive through.
fn archive(src: Option<&Path>, name: &str, follow: bool, out: &mut Sender) -> anyhow::Result<()> {
    let Some(src) = src else {
        std::io::copy(&mut std::io::stdin().lock(), out).context("reading the archive on stdin")?;
        return Ok(out.flush()?);
    };
    let src = if follow {
        std::fs::canonicalize(src).with_context(|| format!("{}", src.display()))?
    } else {
        src.to_path_buf()
    };
    let mut builder = tar::Builder::new(&mut *out);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);
    append_tree(&mut builder, &src, Path::new(name))?;
    builder.into_inner()?;
    Ok(out.flush()?)
}

/// Appends `src` as `name`, a directory with everything beneath it (in name order), symlinks as
/// symlinks with their targets byte for byte.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, src: &Path, name: &Path) -> anyhow::Result<()> {
    let at = || format!("archiving {}", src.display());
    let meta = std::fs::symlink_metadata(src).with_context(at)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).with_context(at)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        return append_link_raw(b, &mut h, name, target.as_os_str().as_bytes()).with_context(at);
    }
    if !meta.is_dir() {
        return b.append_path_with_name(src, name).with_context(at);
    }
    b.append_dir(name, src).with_context(at)?;
    let mut children: Vec<std::ffi::OsString> = std::fs::read_dir(src)
        .with_context(at)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(at)?;
    children.sort();
    for child in children {
        append_tree(b, &src.join(&child), &name.join(&child))?;
    }
    Ok(())
}

/// A link entry with its target as stored (tar's `append_link` turns `/` into `//`), in a GNU
/// long-link entry first when it does not fit the header's 100 bytes.
fn append_link_raw<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &Path,
    target: &[u8],
) -> std::io::Result<()> {
    h.set_size(0);
    const FIELD: usize = 100;
    if target.len() > FIELD {
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongLink);
        long.set_path("././@LongLink")?;
        long.set_mode(0o644);
        long.set_size(target.len() as u64 + 1);
        long.set_cksum();
        b.append(&long, target.chain(&[0u8][..]))?;
        h.set_link_name_literal(&target[..FIELD])?;
    } else {
        h.set_link_name_literal(target)?;
    }
    b.append_data(h, name, std::io::empty())
}

async fn copy_to(
    connect: &Connect,
    src: Option<&str>,
    container: &str,
    path: &str,
    follow: bool,
) -> anyhow::Result<()> {
    let (id, mut service) = open(connect, container).await?;
    let dest = stat(&mut service, &id, path, true).await?;
    let (dir, name) = match src {
        None => match dest {
            Some(d) if d.is_dir => (path.to_string(), String::new()),
            Some(_) => bail!("destination {path} in container {container} is not a directory"),
            None => bail!("destination directory {path} does not exist in container {container}"),
        },
        Some(src) => {
            let meta = if follow {
                std::fs::metadata(src)
            } else {
                std::fs::symlink_metadata(src)
            };
            let meta = meta.with_context(|| src.to_string())?;
            let landing = landing(src, meta.is_dir(), path, dest.map(|d| d.is_dir))?;
            (landing.dir, landing.name)
        }
    };
    let (tx, mut rx) = mpsc::channel::<api::CopyToRequest>(4);
    tx.send(api::CopyToRequest {
        container_id: id,
        path: dir,
        data: Vec::new(),
    })
    .await?;
    let src_path = src.map(PathBuf::from);
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = Sender {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        archive(src_path.as_deref(), &name, follow, &mut out)
    });
    let requests = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let answer = service.copy_to(requests).await;
    let written = writer.await.context("the archive reader")?;
    match (written, answer) {
        // A local failure first: berthd then saw an archive cut short.
        (Err(e), _) if !closed(&e) => Err(e),
        (_, Err(s)) => Err(no_service(s, "cp")),
        // berthd had the whole archive (its end, before the padding some writers add).
        (_, Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_docker_reads_them() {
        let c = |container: &str, path: &str| Side::Container {
            container: container.into(),
            path: path.into(),
        };
        assert_eq!(side("web:/etc/passwd"), c("web", "/etc/passwd"));
        assert_eq!(side("web:"), c("web", "/"));
        assert_eq!(side("-"), Side::Stdio);
        assert_eq!(side("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(side("/abs:x"), Side::Local("/abs:x".into()));
        assert_eq!(side("dir/a:b"), Side::Local("dir/a:b".into()));
        assert_eq!(side("plain"), Side::Local("plain".into()));
    }

    #[test]
    fn landings_follow_dockers_rules() {
        let l = |dir: &str, name: &str| Landing {
            dir: dir.into(),
            name: name.into(),
        };
        // A file: into a directory, onto a file, to a new name.
        assert_eq!(
            landing("/etc/passwd", false, "/tmp", Some(true)).unwrap(),
            l("/tmp", "passwd")
        );
        assert_eq!(
            landing("/etc/passwd", false, "/tmp/f", Some(false)).unwrap(),
            l("/tmp", "f")
        );
        assert_eq!(
            landing("/etc/passwd", false, "/tmp/new", None).unwrap(),
            l("/tmp", "new")
        );
        assert_eq!(
            landing("passwd", false, "new", None).unwrap(),
            l(".", "new")
        );
        assert!(landing("/etc/passwd", false, "/tmp/new/", None).is_err());
        // A directory: into one, its contents into one, to a new name, never onto a file.
        assert_eq!(
            landing("/etc", true, "/tmp", Some(true)).unwrap(),
            l("/tmp", "etc")
        );
        assert_eq!(
            landing("/etc/.", true, "/tmp", Some(true)).unwrap(),
            l("/tmp", ".")
        );
        assert_eq!(
            landing("/etc/", true, "/tmp/new/", None).unwrap(),
            l("/tmp", "new")
        );
        assert!(landing("/etc", true, "/tmp/f", Some(false)).is_err());
    }
}
