//! A server in a child process (llama.cpp's `llama-server`, `wasmtime serve`, `jco serve`, …):
//! started on a free port, ready once a path of it answers, killed when dropped with every
//! process it started (jco serve runs the component in a child node process, a browser has
//! helpers). Its stderr is kept in a file, so that a server that fails to start can say why.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ChildServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    stderr: PathBuf,
}

/// A port nothing listens on now (the server started next binds it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ChildServer {
    /// Runs `cmd` (already told to listen on 127.0.0.1:`port`) and waits up to `timeout` for
    /// `GET ready_path` to answer 200.
    pub fn start(
        mut cmd: Command,
        name: &str,
        port: u16,
        ready_path: &str,
        timeout: Duration,
    ) -> anyhow::Result<ChildServer> {
        let stderr = std::env::temp_dir().join(format!("rill-{}-{port}.stderr", std::process::id()));
        let log = std::fs::File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = spawn_in_own_group(&mut cmd).with_context(|| format!("starting {name}"))?;
        let server = ChildServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr,
        };
        server.wait_ready(name, ready_path, timeout)
    }

    fn wait_ready(mut self, name: &str, ready_path: &str, timeout: Duration) -> anyhow::Result<Self> {
        let agent = local_agent(Duration::from_secs(10));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{name} exited ({status}) before it served: {}", self.stderr_tail());
            }
            if agent.get(&format!("{}{ready_path}", self.url)).call().is_ok() {
                return Ok(self);
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not answer {ready_path} within {} s: {}",
                    timeout.as_secs(),
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines the server wrote to stderr, on one line.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<_> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Starts `cmd` as the leader of a new process group, so that [`kill_group`] ends what it
/// starts as well.
pub fn spawn_in_own_group(cmd: &mut Command) -> std::io::Result<Child> {
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd.spawn()
}

/// Kills `child`'s process group (see [`spawn_in_own_group`]) and reaps `child`.
pub fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) on the group `child` leads; it touches no memory of ours.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

/// An HTTP client for servers on this machine: no proxy (one set in the environment would
/// otherwise be asked for 127.0.0.1), a deadline per request, HTTP error statuses as errors.
pub fn local_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A llama.cpp build with shared libraries keeps them beside its binaries: `cmd` (running
/// `binary`) looks there first.
pub fn with_library_path(cmd: &mut Command, binary: &Path) -> anyhow::Result<()> {
    if let Some(dir) = binary.parent() {
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(
            std::env::var_os("LD_LIBRARY_PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        cmd.env("LD_LIBRARY_PATH", std::env::join_paths(paths)?);
    }
    Ok(())
}
