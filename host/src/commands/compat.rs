//! `rill compat`: the compatibility matrix from real checks, recorded in the metrics store.
//! Each check runs the thing it names and records pass or fail with what it saw; nothing is
//! typed in by hand. Checked so far: this host's two backends (the component in wasmtime and
//! the native crate): the model loads, tokens stream, and the component's SIMD features.

use crate::backend::{self, BackendKind, PromptInput};
use crate::store::{CompatResult, Store};
use rill_engine::sampler::SamplingParams;
use rill_engine::GenerateParams;
use std::path::Path;

/// Tokens the stream check asks for.
const STREAM_TOKENS: usize = 4;

pub fn compat(model: &Path, db: &Path) -> anyhow::Result<()> {
    let time = crate::store::now();
    let mut results = Vec::new();
    let mut record = |host: &str, feature: &str, outcome: anyhow::Result<String>| {
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        println!("{host:<28}{feature:<14}{:<6}{detail}", if passed { "pass" } else { "FAIL" });
        results.push(CompatResult { time, host: host.into(), feature: feature.into(), passed, detail });
    };
    let wasmtime = format!("rill (wasmtime {})", backend::component::WASMTIME_VERSION);
    for (host, kind) in [(wasmtime.as_str(), BackendKind::Component), ("rill (native)", BackendKind::Native)] {
        match backend::open(kind, model, &Default::default(), None) {
            Ok(mut engine) => {
                record(host, "load", Ok(format!("{} loaded", model.display())));
                record(host, "stream", stream(engine.as_mut()));
            }
            Err(e) => {
                record(host, "load", Err(e));
                record(host, "stream", Err(anyhow::anyhow!("not checked: the model did not load")));
            }
        }
    }
    match backend::component::capabilities() {
        Ok((kernels, simd128, relaxed)) => {
            let feature = |on: bool, name: &str| if on { Ok(format!("kernels {kernels}")) } else { Err(anyhow::anyhow!("{name} not available (kernels {kernels})")) };
            record(&wasmtime, "simd128", feature(simd128, "simd128"));
            record(&wasmtime, "relaxed-simd", feature(relaxed, "relaxed SIMD"));
        }
        Err(e) => record(&wasmtime, "simd128", Err(e)),
    }
    Store::open(db, crate::store::DEFAULT_RETENTION)?.record_compat(&results)?;
    eprintln!("rill compat: recorded {} checks in {}", results.len(), db.display());
    Ok(())
}

/// Tokens arrive one by one, as many as asked for.
fn stream(engine: &mut dyn backend::Backend) -> anyhow::Result<String> {
    let params = GenerateParams { sampling: SamplingParams::greedy(), max_tokens: STREAM_TOKENS, ignore_eos: true, ..GenerateParams::default() };
    let mut events = 0;
    engine.generate(PromptInput::Text("Once upon a time"), params, &mut |_| {
        events += 1;
        Ok(())
    })?;
    if events != STREAM_TOKENS {
        anyhow::bail!("{events} token events for {STREAM_TOKENS} tokens");
    }
    Ok(format!("{events} tokens streamed"))
}
