//! The component in headless browsers (Chromium, Firefox). jco transpiles it to JavaScript; a
//! page served from here (`browser/check.html`, `browser/check.js`) imports it with the WASI
//! shim's browser build, probes the browser's SIMD and WebGPU support, streams the model in
//! with fetch, generates the reference prompt, and posts what it saw back. Each browser runs
//! as a child process with a fresh profile and is killed once it has answered.

use super::tools::{Jco, Tool, Tools};
use super::{Matrix, Reference, PROMPT, TOKENS};
use crate::child_server::{kill_group, spawn_in_own_group};
use anyhow::{anyhow, bail, Context};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PAGE: &str = include_str!("browser/check.html");
const SCRIPT: &str = include_str!("browser/check.js");
/// `rill:gpu` for the page: no device, so the engine computes on the CPU.
const NO_GPU: &str = include_str!("browser/no-gpu.js");
const FEATURES: [&str; 5] = ["load", "stream", "simd128", "relaxed-simd", "WebGPU"];
/// Loading 271 MB and generating, in a browser's WebAssembly, on a busy machine.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

pub fn check(matrix: &mut Matrix, tools: &Tools, model: &Path, reference: &Reference, work: &Path) {
    let browsers: Vec<_> = [(&tools.chromium, Browser::Chromium), (&tools.firefox, Browser::Firefox)]
        .into_iter()
        .filter_map(|(tool, kind)| tool.as_ref().map(|tool| (kind, tool)))
        .collect();
    if browsers.is_empty() {
        return;
    }
    let mut site = match &tools.jco {
        Some(jco) => Site::start(jco, model, work),
        None => Err(anyhow!(
            "jco, which transpiles the component for browsers, was not found"
        )),
    };
    for (kind, tool) in browsers {
        let host = kind.host(tool);
        let facts = site
            .as_mut()
            .map_err(|e| anyhow!("{e:#}"))
            .and_then(|site| site.visit(kind, tool, work));
        match facts {
            Ok(facts) => record(matrix, &host, &facts, reference),
            Err(e) => matrix.record_not_checked(&host, &FEATURES, &format!("{e:#}")),
        }
    }
}

#[derive(Clone, Copy)]
enum Browser {
    Chromium,
    Firefox,
}

impl Browser {
    /// "Chromium 156.0.8078.108", "Mozilla Firefox 153.8.0esr": the version line, less the
    /// build's platform note.
    fn host(self, tool: &Tool) -> String {
        let version = tool.version.split(" built on ").next().unwrap_or(&tool.version);
        format!("{version} (headless)")
    }

    /// The headless browser opening `url` with a fresh profile in `profile`.
    fn command(self, tool: &Tool, url: &str, profile: &Path) -> Command {
        let mut cmd = Command::new(&tool.path);
        match self {
            Browser::Chromium => {
                // Root in CI and a closed network: no sandbox, nothing fetched in the background.
                cmd.args([
                    "--headless",
                    "--no-sandbox",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ]);
                // WebGPU where Chromium has an adapter for it (off by default on Linux).
                cmd.args(["--enable-unsafe-webgpu", "--enable-features=Vulkan"]);
                cmd.arg(format!("--user-data-dir={}", profile.display()));
            }
            Browser::Firefox => {
                cmd.args(["--headless", "--no-remote", "--profile"]).arg(profile);
            }
        }
        cmd.arg(url);
        cmd
    }
}

/// Turns what the page saw into the matrix's rows.
fn record(matrix: &mut Matrix, host: &str, facts: &Value, reference: &Reference) {
    let error = facts["error"].as_str();
    let failed = |what: &str| anyhow!("{what}: {}", error.unwrap_or("no reason given"));
    let loaded = facts["loaded"].as_str();
    matrix.record(
        host,
        "load",
        loaded
            .map(str::to_string)
            .ok_or_else(|| failed("the component did not load")),
    );
    let generated = &facts["generated"];
    let stream = match (loaded, generated["text"].as_str()) {
        (None, _) => Err(anyhow!("not checked: the model did not load")),
        (Some(_), None) => Err(failed("generation failed")),
        (Some(_), Some(text)) => reference.check_streamed(text, generated["events"].as_u64().unwrap_or(0) as usize),
    };
    matrix.record(host, "stream", stream);
    let kernels = facts["kernels"]
        .as_str()
        .map_or("the engine did not start".to_string(), |k| {
            format!("engine kernels {k}")
        });
    let simd = |key: &str, name: &str| match facts[key].as_bool() {
        Some(true) => Ok(format!("WebAssembly.validate accepts {name}; {kernels}")),
        _ => Err(anyhow!("WebAssembly.validate rejects {name}")),
    };
    matrix.record(host, "simd128", simd("simd128", "simd128"));
    matrix.record(host, "relaxed-simd", simd("relaxed_simd", "relaxed SIMD"));
    let webgpu = &facts["webgpu"];
    let adapter = webgpu["adapter"].as_str();
    let webgpu = match adapter {
        None => Err(anyhow!(
            "no WebGPU adapter: {}",
            webgpu["why"].as_str().unwrap_or("the page did not get that far")
        )),
        Some(adapter) if facts["kernels"].as_str().is_some_and(|k| k.contains("webgpu")) => {
            Ok(format!("adapter {adapter}; {kernels}"))
        }
        Some(adapter) => Err(anyhow!(
            "adapter {adapter}, but the engine has no WebGPU kernels ({kernels})"
        )),
    };
    matrix.record(host, "WebGPU", webgpu);
}

/// The page, the transpiled component, the shim and the model, served on 127.0.0.1; the
/// browsers' answers arrive on `answers`.
struct Site {
    url: String,
    answers: mpsc::Receiver<Value>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct Files {
    engine: PathBuf,
    shim: PathBuf,
    model: bytes::Bytes,
    answers: mpsc::Sender<Value>,
}

impl Site {
    fn start(jco: &Jco, model: &Path, work: &Path) -> anyhow::Result<Site> {
        let engine = transpile(jco, work)?;
        let model = bytes::Bytes::from(std::fs::read(model).with_context(|| format!("reading {}", model.display()))?);
        let (answers, received) = mpsc::channel();
        let files = Files {
            engine,
            shim: jco.shim.join("dist/browser"),
            model,
            answers,
        };
        let app = Router::new()
            .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
            .route("/check.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }))
            .route("/reference.json", get(|| async { Json(json!({ "prompt": PROMPT, "tokens": TOKENS })) }))
            .route("/model.gguf", get(|State(f): State<Files>| async move { f.model }))
            .route("/engine/{*file}", get(|State(f): State<Files>, UrlPath(file): UrlPath<String>| async move { static_file(&f.engine, &file) }))
            .route("/shim/{*file}", get(|State(f): State<Files>, UrlPath(file): UrlPath<String>| async move { static_file(&f.shim, &file) }))
            .route("/log", post(|line: String| async move { eprintln!("rill compat: [browser] {line}") }))
            .route("/result", post(|State(f): State<Files>, Json(facts): Json<Value>| async move { f.answers.send(facts).map_err(|_| StatusCode::GONE) }))
            .with_state(files);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}/", listener.local_addr()?);
        runtime.spawn(async move { axum::serve(listener, app).await });
        Ok(Site {
            url,
            answers: received,
            _runtime: runtime,
        })
    }

    /// Opens the page in `browser` and waits for what it saw.
    fn visit(&mut self, browser: Browser, tool: &Tool, work: &Path) -> anyhow::Result<Value> {
        let profile = work.join(format!(
            "profile-{}",
            tool.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::create_dir_all(&profile)?;
        let mut cmd = browser.command(tool, &self.url, &profile);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        eprintln!("rill compat: opening {} in {} …", self.url, tool.path.display());
        let mut child = spawn_in_own_group(&mut cmd).with_context(|| format!("starting {}", tool.path.display()))?;
        let answer = self.answers.recv_timeout(ANSWER_TIMEOUT);
        kill_group(&mut child);
        answer.map_err(|_| anyhow!("the page did not answer within {} s", ANSWER_TIMEOUT.as_secs()))
    }
}

/// `jco transpile` of the engine component into `work/engine/` (engine.js and its core module).
fn transpile(jco: &Jco, work: &Path) -> anyhow::Result<PathBuf> {
    let component = work.join("engine.wasm");
    std::fs::write(&component, rill_host::backend::component::ENGINE_WASM)?;
    let out = work.join("engine");
    let status = Command::new(&jco.tool.path)
        .arg("transpile")
        .arg(&component)
        .arg("-o")
        .arg(&out)
        .args(["--name", "engine", "--quiet"])
        .args(["--map", "rill:gpu/webgpu@0.1.0=./no-gpu.js"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("jco transpile failed ({status})");
    }
    std::fs::write(out.join("no-gpu.js"), NO_GPU)?;
    Ok(out)
}

/// A file under `dir`, typed by its extension (module scripts and streamed compilation check).
fn static_file(dir: &Path, file: &str) -> axum::response::Response {
    if file.split('/').any(|part| part == ".." || part.is_empty()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let kind = match Path::new(file).extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
