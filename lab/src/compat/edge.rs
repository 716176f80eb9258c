//! The edge worker on the edge hosts found here: `wasmtime serve`, `rill serve --worker` (this
//! binary, always there) and `jco serve`. Each serves the plain worker reading the model from
//! a preopened folder (load, SSE, stream), then a worker baked from the model.

use super::http::{served_model, streamed_completion};
use super::tools::{Jco, Tool, Tools};
use super::{Matrix, Reference};
use crate::child_server::{free_port, ChildServer};
use anyhow::{anyhow, Context};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A fresh jco or wasmtime serve compiles a 271 MB baked worker before it answers.
const START_TIMEOUT: Duration = Duration::from_secs(300);

enum Host<'a> {
    WasmtimeServe(&'a Tool),
    RillServeWorker,
    JcoServe(&'a Jco),
}

impl Host<'_> {
    fn name(&self) -> String {
        match self {
            // "wasmtime 49.0.3 (f96eabaa1 2026-10-14)" → "wasmtime serve 49.0.3"
            Host::WasmtimeServe(wasmtime) => format!(
                "wasmtime serve {}",
                wasmtime.version.split_whitespace().nth(1).unwrap_or(&wasmtime.version)
            ),
            Host::RillServeWorker => format!(
                "rill serve --worker (wasmtime {})",
                rill_host::backend::component::WASMTIME_VERSION
            ),
            Host::JcoServe(jco) => format!("jco {} serve (Node.js {})", jco.tool.version, jco.node),
        }
    }

    /// Starts this host serving `worker`; with `model`, its folder is preopened as /models.
    fn serve(&self, worker: &Path, model: Option<&Path>, work: &Path) -> anyhow::Result<ChildServer> {
        let port = free_port()?;
        let folder_and_file = model.map(|m| {
            (
                m.parent().unwrap_or(Path::new("/")),
                m.file_name().unwrap_or_default().to_string_lossy(),
            )
        });
        let cmd = match self {
            Host::WasmtimeServe(wasmtime) => {
                let mut cmd = Command::new(&wasmtime.path);
                cmd.args([
                    "serve",
                    "-W",
                    "simd=y,relaxed-simd=y",
                    "-S",
                    "cli",
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                ]);
                if let Some((folder, file)) = &folder_and_file {
                    cmd.arg("--dir")
                        .arg(format!("{}::/models", folder.display()))
                        .arg("--env")
                        .arg(format!("RILL_MODEL=/models/{file}"));
                }
                cmd.arg(worker);
                cmd
            }
            Host::RillServeWorker => {
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.args(["serve", "--no-record", "--port", &port.to_string(), "--worker"])
                    .arg(worker);
                if let Some(model) = model {
                    cmd.arg("--model").arg(model);
                }
                cmd
            }
            Host::JcoServe(jco) => {
                let mut cmd = Command::new(&jco.tool.path);
                // A fresh instance per request, in a pool of worker threads (the edge platform model).
                cmd.arg("serve")
                    .arg(worker)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                cmd.args(["--isolate-requests", "worker", "--isolate-worker-pool-size", "2"]);
                if node_needs_relaxed_simd_flag(&jco.node) {
                    // jco passes JCO_RUN_ARGS to the node it starts.
                    cmd.env("JCO_RUN_ARGS", "--experimental-wasm-relaxed-simd");
                }
                if let Some((folder, file)) = &folder_and_file {
                    cmd.arg("--jco-import").arg(preopen_module(jco, folder, work)?);
                    cmd.env("RILL_MODEL", format!("/models/{file}"));
                }
                cmd
            }
        };
        ChildServer::start(cmd, &self.name(), port, "/health", START_TIMEOUT)
    }
}

pub fn check(matrix: &mut Matrix, tools: &Tools, model: &Path, reference: &Reference, work: &Path) {
    let mut hosts = Vec::new();
    hosts.extend(tools.wasmtime.as_ref().map(Host::WasmtimeServe));
    hosts.extend(tools.rill_worker.then_some(Host::RillServeWorker));
    hosts.extend(tools.jco.as_ref().filter(|_| tools.jco_serve).map(Host::JcoServe));
    if hosts.is_empty() {
        return;
    }
    let plain = work.join("worker.wasm");
    let baked = work.join("baked.wasm");
    let plain_written =
        std::fs::write(&plain, rill_host::edge::EDGE_WASM).with_context(|| format!("writing {}", plain.display()));
    let baked_written = rill_host::commands::bake::bake(model, &baked);
    for host in hosts {
        let name = host.name();
        match plain_written
            .as_ref()
            .map_err(|e| anyhow!("{e:#}"))
            .and_then(|_| host.serve(&plain, Some(model), work))
        {
            Ok(server) => {
                matrix.record(
                    &name,
                    "load",
                    served_model(&server.url).map(|id| format!("the plain worker loaded {id} from a preopened folder")),
                );
                match streamed_completion(&server.url) {
                    Ok((text, events)) => {
                        matrix.record(&name, "SSE", sse_events(events));
                        matrix.record(&name, "stream", reference.check_streamed(&text, events));
                    }
                    Err(e) => matrix.record_not_checked(&name, &["SSE", "stream"], &format!("{e:#}")),
                }
            }
            Err(e) => matrix.record_not_checked(&name, &["load", "SSE", "stream"], &format!("{e:#}")),
        }
        let baked_check = match &baked_written {
            Ok(()) => host
                .serve(&baked, None, work)
                .and_then(|server| streamed_completion(&server.url))
                .and_then(|(text, events)| reference.check_streamed(&text, events)),
            Err(e) => Err(anyhow!("not checked: rill bake failed: {e:#}")),
        };
        matrix.record(
            &name,
            "baked worker",
            baked_check.map(|d| format!("a worker baked from the model: {d}")),
        );
    }
}

fn sse_events(events: usize) -> anyhow::Result<String> {
    match events {
        0 | 1 => Err(anyhow!("{events} data event(s) with text: the reply was not streamed")),
        _ => Ok(format!("{events} data events with text, then data: [DONE]")),
    }
}

/// Node.js before 21 (V8 before 11.4) runs relaxed SIMD only behind a flag.
fn node_needs_relaxed_simd_flag(node_version: &str) -> bool {
    let major = node_version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    major.is_some_and(|m| m < 21)
}

/// A module for `jco serve --jco-import`: the shim gives a component no folders by default, so
/// it preopens the model's folder as /models (wasmtime serve's `--dir FOLDER::/models`). It
/// imports the very shim file jco's component uses, so both see one set of preopens.
fn preopen_module(jco: &Jco, folder: &Path, work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let filesystem = jco.shim.join("dist/nodejs/filesystem.js");
    let js = format!(
        "import {{ _addPreopen }} from {};\n_addPreopen('/models', {});\n",
        serde_json::json!(format!("file://{}", filesystem.display())),
        serde_json::json!(folder)
    );
    let path = work.join("preopen-models.mjs");
    std::fs::write(&path, js)?;
    Ok(path)
}
