//! A registry that drops or stalls a blob mid-download (a TCP proxy in front of the test
//! registry): the pull fails cleanly (or within the stall timeout), nothing half-written stays,
//! and a later pull works. Invariants as in `chaos_faults.rs`: every RPC answers within its
//! deadline, no panic, berthd still answers, the leak check passes.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_e2e::chaos::{Cri, end_checked};
use berth_e2e::registry::SHARED;
use berth_e2e::{Berthd, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Close the connection after the first bytes of one blob (once).
    Drop,
    /// Stop forwarding after the first bytes of every blob, holding the connection open.
    Stall,
}

/// A TCP proxy in front of the shared registry that breaks blob downloads after `after` bytes.
struct Proxy {
    port: u16,
    faults: Arc<AtomicU32>,
    armed: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(fault: Fault, after: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(AtomicU32::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let (f, a) = (faults.clone(), armed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (f, a) = (f.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = proxy_one(client, fault, after, f, a).await;
                });
            }
        });
        Proxy {
            port,
            faults,
            armed,
        }
    }

    fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/berth-test/{name}", self.port)
    }
}

async fn proxy_one(
    client: TcpStream,
    fault: Fault,
    after: usize,
    faults: Arc<AtomicU32>,
    armed: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let upstream = TcpStream::connect(SHARED).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    // Whether a blob GET went up this connection: its response is what gets broken.
    let blob = Arc::new(AtomicBool::new(false));
    let seen = blob.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return uw.shutdown().await;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.contains("GET /v2/") && text.contains("/blobs/") {
                seen.store(true, Ordering::SeqCst);
            }
            uw.write_all(&buf[..n]).await?;
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    let result = loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break Ok(()),
            Ok(n) => n,
        };
        if blob.load(Ordering::SeqCst) && armed.load(Ordering::SeqCst) {
            if sent + n > after {
                let keep = after.saturating_sub(sent);
                cw.write_all(&buf[..keep]).await?;
                cw.flush().await?;
                faults.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Fault::Drop => {
                        armed.store(false, Ordering::SeqCst);
                        break Ok(());
                    }
                    Fault::Stall => {
                        // Hold both halves open, sending nothing, until the client gives up.
                        let mut sink = [0u8; 1];
                        let _ = ur.read(&mut sink).await;
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        break Ok(());
                    }
                }
            }
            sent += n;
        }
        cw.write_all(&buf[..n]).await?;
    };
    up.abort();
    result
}

/// Bytes of a blob response forwarded before the fault: past the headers and into the layer.
const FAULT_AFTER: usize = 16 * 1024;

#[tokio::test]
async fn a_blob_dropped_mid_download_fails_cleanly_or_is_retried() {
    let started = Instant::now();
    let berthd = Berthd::start("regdrop").await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    let proxy = Proxy::start(Fault::Drop, FAULT_AFTER).await;
    let reference = proxy.reference("busybox:latest");
    let before = cri.image_fs_used().await.expect("ImageFsInfo");
    match cri.pull(&reference).await {
        Ok(r) => eprintln!("pulled after Berth's own retry: {r}"),
        Err(e) => {
            eprintln!("the pull failed: {e}");
            assert!(!e.hung, "{e}");
            assert!(
                cri.images().await.expect("ListImages").is_empty(),
                "no image from a failed pull"
            );
            let after = cri.image_fs_used().await.expect("ImageFsInfo");
            eprintln!("ImageFsInfo used: {before} before, {after} after");
            assert!(
                after <= before + (1 << 20),
                "no partial layer kept: {before} -> {after}"
            );
        }
    }
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 1, "the fault happened");
    // Without faults the same pull works.
    proxy.armed.store(false, Ordering::SeqCst);
    cri.pull(&reference).await.expect("the pull without faults");
    assert_eq!(cri.images().await.expect("ListImages").len(), 1);
    cri.remove_image(&reference).await.expect("RemoveImage");
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_stalled_blob_fails_the_pull_within_the_stall_timeout() {
    let started = Instant::now();
    let options = Options {
        dropin: "[image]\npull_stall_timeout_secs = 2\n".into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("regstall", options)
        .await
        .expect("starting berthd");
    let cri = Cri::new(&berthd);
    let proxy = Proxy::start(Fault::Stall, FAULT_AFTER).await;
    let reference = proxy.reference("busybox:latest");
    let t = Instant::now();
    let err = cri
        .pull(&reference)
        .await
        .expect_err("a pull whose blob stalls");
    let took = t.elapsed();
    eprintln!("the pull failed after {took:?}: {err}");
    assert!(!err.hung, "{err}");
    assert!(
        took < Duration::from_secs(15),
        "within a few seconds, not {took:?}"
    );
    assert!(
        err.message.contains("stall") || err.message.contains("no data"),
        "a clear error: {err}"
    );
    assert!(
        proxy.faults.load(Ordering::SeqCst) >= 1,
        "the fault happened"
    );
    assert!(
        cri.images().await.expect("ListImages").is_empty(),
        "no image from a failed pull"
    );
    let used = cri.image_fs_used().await.expect("ImageFsInfo");
    eprintln!("ImageFsInfo used after the failure: {used}");
    proxy.armed.store(false, Ordering::SeqCst);
    cri.pull(&reference).await.expect("the pull without faults");
    cri.remove_image(&reference).await.expect("RemoveImage");
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}
