//! `rill compat`: the compatibility matrix from real checks, recorded in the metrics store.
//! Each check runs the thing it names on a host found on this machine and records pass or
//! fail with what it saw; nothing is typed in by hand. A host that is not installed is
//! skipped (and said so), not recorded.
//!
//! | host | features checked |
//! | --- | --- |
//! | rill, the component in wasmtime | load, stream, simd128, relaxed-simd; SSE and WebSocket through `rill serve` |
//! | rill, the native engine | load, stream |
//! | `wasmtime serve`, `rill serve --worker`, `jco serve` | the edge worker: load (model from a preopened folder), stream, SSE; baked worker |
//! | Chromium, Firefox (headless) | the component transpiled by jco: load, stream, simd128, relaxed-simd, WebGPU |
//!
//! "stream" means the tokens arrive one by one and agree with the greedy reply of the component
//! in this host's wasmtime (the build the conformance tests hold to llama.cpp's logits) by the
//! conformance tests' rule: the same tokens up to the first step where its top two logits
//! are within 0.5 of each other, where a rounding difference may rightly pick the other one.

mod backends;
mod browser;
mod edge;
mod http;
mod tools;

use crate::store::{CompatResult, Store};
use std::path::{Path, PathBuf};

/// The prompt every host continues, and how many tokens it is asked for: one the model is
/// sure how to go on with (top-two margins of 3 or more here), so that every token binds.
const PROMPT: &str = "1, 2, 3, 4, 5,";
const TOKENS: usize = 8;
/// Top-two logit margin under which two correct engines may pick different tokens.
const NEAR_TIE: f32 = 0.5;

/// What a host must stream for [`PROMPT`]: the reference engine's greedy reply, token by token.
pub struct Reference {
    /// Each token's text.
    pub pieces: Vec<String>,
    /// The tokens a host must agree on: those before the first near tie.
    pub binding: usize,
}

impl Reference {
    fn binding_text(&self) -> String {
        self.pieces[..self.binding].concat()
    }

    /// Whether `text`, streamed in `events` pieces, agrees with the reference.
    fn check_streamed(&self, text: &str, events: usize) -> anyhow::Result<String> {
        let binding = self.binding_text();
        if !text.starts_with(&binding) {
            anyhow::bail!("streamed {text:?}, which does not start with the reference's {binding:?}");
        }
        if events < 2 {
            anyhow::bail!("the reply came in {events} piece(s), not streamed token by token");
        }
        let agreeing = match self.binding {
            TOKENS => format!("the reference's {TOKENS} tokens"),
            n => format!("agreeing with the reference's first {n} tokens (then a near tie)"),
        };
        Ok(format!("{events} events: {text:?}, {agreeing}"))
    }
}

/// The results of one `rill compat` run, printed as they come.
struct Matrix {
    time: u64,
    results: Vec<CompatResult>,
}

impl Matrix {
    fn record(&mut self, host: &str, feature: &str, outcome: anyhow::Result<String>) {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        println!(
            "{host:<40}{feature:<14}{:<6}{detail}",
            if passed { "pass" } else { "FAIL" }
        );
        self.results.push(CompatResult {
            time: self.time,
            host: host.into(),
            feature: feature.into(),
            passed,
            detail,
        });
    }

    /// Records each of `features` as failed because `why` (a check they all needed failed).
    fn record_not_checked(&mut self, host: &str, features: &[&str], why: &str) {
        for feature in features {
            self.record(host, feature, Err(anyhow::anyhow!("not checked: {why}")));
        }
    }
}

/// A scratch folder for workers, transpiled code and browser profiles, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("rill-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub use tools::HOSTS;

/// The checks of this host's own backends only (a few seconds, nothing started): what
/// `rill bench --record` puts in a store that has no matrix yet.
pub fn in_process(model: &Path) -> Vec<CompatResult> {
    let mut matrix = Matrix {
        time: crate::store::now(),
        results: Vec::new(),
    };
    if let Err(e) = backends::check(&mut matrix, model) {
        eprintln!("rill: {e:#}");
    }
    matrix.results
}

/// Runs the checks on the hosts found here (those in `only`, when given) and records them in `db`.
pub fn compat(model: &Path, db: &Path, only: &[String]) -> anyhow::Result<()> {
    let model = model.canonicalize()?;
    let work = WorkDir::new()?;
    let mut matrix = Matrix {
        time: crate::store::now(),
        results: Vec::new(),
    };
    let reference = backends::check(&mut matrix, &model)?;
    let tools = tools::Tools::find(only);
    if tools.rill_serve {
        http::check_rill_serve(&mut matrix, &model, &reference);
    }
    edge::check(&mut matrix, &tools, &model, &reference, &work.0);
    browser::check(&mut matrix, &tools, &model, &reference, &work.0);
    Store::open(db, crate::store::DEFAULT_RETENTION)?.record_compat(&matrix.results)?;
    eprintln!(
        "rill compat: recorded {} checks in {}",
        matrix.results.len(),
        db.display()
    );
    Ok(())
}
