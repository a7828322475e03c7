//! berthd: the Berth CRI daemon.

mod cli;
mod logging;
// mallopt, mallinfo2, malloc_trim: glibc's allocator knobs.
#[allow(unsafe_code)]
mod malloc;
mod migrate;
// remove_var(NOTIFY_SOCKET) while single-threaded, clock_gettime(CLOCK_MONOTONIC).
#[allow(unsafe_code)]
mod notify;
mod reload;
mod serve;
// flock(2) on the lock file beside the socket.
#[allow(unsafe_code)]
mod socket;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Config {
            action: cli::ConfigAction::Default,
        }) => {
            print!("{}", berth_config::DEFAULT_CONFIG_TOML);
            ExitCode::SUCCESS
        }
        Some(cli::Command::Config {
            action: cli::ConfigAction::Show,
        }) => match show_config(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Some(cli::Command::Config {
            action: cli::ConfigAction::Migrate { from_containerd },
        }) => match migrate::from_containerd(&from_containerd) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        None => match run(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

/// `berthd config show`: the effective configuration after files and flags, as TOML.
fn show_config(cli: &cli::Cli) -> anyhow::Result<()> {
    let loaded = cli.load_config()?;
    for source in &loaded.sources {
        println!("# from {}", source.display());
    }
    print!("{}", toml::to_string_pretty(&loaded.config)?);
    Ok(())
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    // Logging may not be set up yet (config errors come first), so write straight to stderr.
    eprintln!("berthd: {e:#}");
    ExitCode::FAILURE
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    cloexec_inherited_fds();
    // Before any thread exists: the arena limit applies to threads created afterwards.
    malloc::limit_arenas();
    // notify::init removes an environment variable, sound only while single-threaded.
    #[allow(unsafe_code)]
    // SAFETY: no thread exists yet (the runtime and logging start below).
    unsafe {
        notify::init()
    };
    let loaded = cli.load_config()?;
    let log = logging::init(&loaded.config.log)?;
    // Test-only crash points (BERTH_FAILPOINTS); logged loudly should one ever be set in production.
    for (point, action) in berth_failpoint::init_from_env()? {
        tracing::warn!(point, ?action, "failpoint enabled");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for a node daemon and keep idle memory low; blocking work
        // (disk, runtime binaries) goes to the blocking pool.
        .worker_threads(2)
        .enable_all()
        .thread_name("berthd")
        .build()?;
    let served = runtime.block_on(serve::serve(loaded, cli, log));
    // Tasks still running hold clones of the services and the store; shutting the runtime down
    // drops them. A blocking call stuck in the kernel cannot be interrupted: do not wait for it
    // forever (the store then stays open and the next start repairs it).
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    served?.close();
    tracing::info!("berthd stopped");
    Ok(())
}

/// How long the runtime's leftover tasks may take to finish once serving has ended.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Marks every descriptor berthd inherited beyond stdio close-on-exec. Whatever started berthd
/// (a shell's `flock FILE berthd`, a supervisor) may leave descriptors open, and berthd's children
/// would inherit them: a pod's monitor outlives berthd by design, so a lock file its starter held
/// stayed locked for the pod's whole life (seen in a test rig whose lock two monitors kept).
// close_range(2), or fcntl(F_SETFD) one by one: std has neither.
#[allow(unsafe_code)]
fn cloexec_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    // Kernels before 5.11: one by one.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl(F_SETFD) only sets a descriptor flag; a descriptor that was the directory
        // listing's own and is closed by now just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
