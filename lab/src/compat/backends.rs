//! This host's two backends, in process: the component in wasmtime (whose greedy reply becomes
//! the reference the other hosts are held to), with its SIMD features as it reports them, and
//! the native engine.

use super::{Matrix, Reference, NEAR_TIE, PROMPT, TOKENS};
use anyhow::anyhow;
use rill_engine::sampler::SamplingParams;
use rill_engine::GenerateParams;
use rill_host::backend::{self, Backend, BackendKind, PromptInput};
use std::path::Path;

const NATIVE: &str = "rill (native)";

pub fn component_host() -> String {
    format!("rill (wasmtime {})", backend::component::WASMTIME_VERSION)
}

/// Checks both backends and returns the reference (an error when the component cannot make one).
pub fn check(matrix: &mut Matrix, model: &Path) -> anyhow::Result<Reference> {
    let host = component_host();
    let reference = match load(matrix, &host, BackendKind::Component, model) {
        Some(mut component) => {
            let reference = reference(component.as_mut());
            let streamed = reference.as_ref().map(|r| {
                format!(
                    "{TOKENS} tokens streamed: {:?}; the reference for the other hosts",
                    r.pieces.concat()
                )
            });
            matrix.record(&host, "stream", streamed.map_err(|e| anyhow!("{e:#}")));
            reference
        }
        None => Err(anyhow!("the component did not load the model")),
    };
    match backend::component::capabilities() {
        Ok((kernels, simd128, relaxed)) => {
            let feature = |on: bool, name: &str| {
                if on {
                    Ok(format!("kernels {kernels}"))
                } else {
                    Err(anyhow!("{name} not available (kernels {kernels})"))
                }
            };
            matrix.record(&host, "simd128", feature(simd128, "simd128"));
            matrix.record(&host, "relaxed-simd", feature(relaxed, "relaxed SIMD"));
        }
        Err(e) => matrix.record_not_checked(&host, &["simd128", "relaxed-simd"], &format!("{e:#}")),
    }
    if let Some(mut native) = load(matrix, NATIVE, BackendKind::Native, model) {
        let checked = match &reference {
            Ok(reference) => {
                greedy(native.as_mut()).and_then(|(_, pieces)| reference.check_streamed(&pieces.concat(), pieces.len()))
            }
            Err(e) => Err(anyhow!("not checked: no reference ({e:#})")),
        };
        matrix.record(NATIVE, "stream", checked);
    }
    reference.map_err(|e| anyhow!("{e:#}: nothing to hold the hosts to"))
}

/// Records whether `kind` loads `model` (and `stream` as not checked when it does not).
fn load(matrix: &mut Matrix, host: &str, kind: BackendKind, model: &Path) -> Option<Box<dyn Backend>> {
    match backend::open(kind, model, &Default::default(), None) {
        Ok(engine) => {
            matrix.record(host, "load", Ok(format!("{} loaded", model.display())));
            Some(engine)
        }
        Err(e) => {
            matrix.record(host, "load", Err(e));
            matrix.record_not_checked(host, &["stream"], "the model did not load");
            None
        }
    }
}

/// The greedy reply to [`PROMPT`]: its token ids and their text pieces, one per event.
fn greedy(engine: &mut dyn Backend) -> anyhow::Result<(Vec<u32>, Vec<String>)> {
    let params = GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens: TOKENS,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let (mut ids, mut pieces) = (Vec::new(), Vec::new());
    engine.generate(PromptInput::Text(PROMPT), params, &mut |event| {
        ids.push(event.id);
        pieces.push(event.text);
        Ok(())
    })?;
    if ids.len() != TOKENS {
        anyhow::bail!("{} token events for {TOKENS} tokens", ids.len());
    }
    Ok((ids, pieces))
}

/// The greedy reply, and how many of its tokens come before the first near tie (the top two
/// logits of each step, teacher-forced over prompt and reply).
fn reference(engine: &mut dyn Backend) -> anyhow::Result<Reference> {
    let (ids, pieces) = greedy(engine)?;
    let mut tokens = engine.tokenize(PROMPT, true, false)?;
    let prompt_len = tokens.len();
    tokens.extend(ids);
    let steps = engine.top_logits(&tokens, 2)?;
    let margins = steps[prompt_len - 1..].iter().map(|top| top[0].1 - top[1].1);
    let binding = margins.take(TOKENS).take_while(|m| *m >= NEAR_TIE).count();
    Ok(Reference { pieces, binding })
}
