//! `rill bench`: prompt processing (pp) and decode (tg) speed as llama-bench measures them,
//! plus load time and time to first token; with `--peer`, llama.cpp's `llama-bench` on the same
//! model in the same run, and the ratios between the two (bare times on shared machines are
//! noise; ratios from one run are not).

use crate::regression::Better;
use crate::store::Figure;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rill_engine::sampler::SamplingParams;
use rill_engine::GenerateParams;
use rill_host::backend::{Backend, PromptInput};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Prompt length of the prompt-processing test (llama-bench's -p).
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated in the decode test (llama-bench's -n).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Measured runs of each test, after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Threads for the peer. The engine itself runs on one thread (it is not multi-threaded).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Instead of pp/tg: decode with this many generations at once (comma-separated levels,
    /// e.g. 1,2,4,8,16), each from a --prompt-tokens prompt for --gen-tokens tokens.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Also measure the time to first token of a prompt whose first N tokens an earlier
    /// request computed (the prefix cache serves them), against the same prompt from scratch.
    #[arg(long)]
    prefix_tokens: Option<usize>,
    /// With --concurrency: the inter-token latency target whose batch size to report (as
    /// `rill serve --target-itl-ms`).
    #[arg(long, default_value_t = 100)]
    target_itl_ms: u64,
    /// llama.cpp's llama-bench binary: run it on the same model and report the ratios.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// With --concurrency: llama.cpp's llama-server binary, run with --threads threads and one
    /// slot per stream on the same model, the same streams measured the same way.
    #[arg(long)]
    peer_server: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    history: crate::bench_history::HistoryArgs,
}

/// min / median / max of repeated measurements.
#[derive(Clone, Copy)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    /// Of one or more samples.
    fn of(samples: Vec<f64>) -> Spread {
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread {
            min,
            median: crate::regression::median(samples).unwrap_or(f64::NAN),
            max,
        }
    }

    fn json(&self) -> Value {
        json!({ "min": self.min, "median": self.median, "max": self.max })
    }
}

/// A peer's figures, from llama-bench's JSON output.
struct Peer {
    name: String,
    prompt: Spread,
    decode: Spread,
}

/// Text whose tokens make the benchmark prompt (any ordinary text would do).
const PROMPT_TEXT: &str = "The river rose in the hills and ran down through the valley, past farms and mills, \
    under old stone bridges and through the town where the market was held every week. ";

/// `load` is how long opening the backend took (model read, component compiled or fetched from
/// the cache, weights loaded); `model` is the file the peer loads too.
pub fn bench(backend: &mut dyn Backend, load: Duration, model: &Path, args: BenchArgs) -> anyhow::Result<()> {
    if args.repeats == 0 || args.prompt_tokens < 2 || args.gen_tokens == 0 {
        bail!("--repeats and --gen-tokens must be at least 1, --prompt-tokens at least 2");
    }
    if !args.concurrency.is_empty() {
        return bench_concurrency(backend, model, &args);
    }
    // The peer runs first, so that its numbers come from the same minutes as ours.
    let on_gpu = backend.name() == "gpu";
    let peer = args
        .peer
        .as_deref()
        .map(|p| run_peer(p, model, &args, on_gpu))
        .transpose()?;
    let single = Single::measure(backend, load, peer, &args)?;
    let run = crate::bench_history::describe(backend, model, "single", single.figures())?;
    match args.format {
        Format::Json => println!("{}", single.json(model, &args)?),
        Format::Text => single.print(model, &args),
    }
    crate::bench_history::after_run(&run, model, &args.history)
}

/// What a single-stream run measured, with its peer's figures.
struct Single {
    backend: String,
    kernels: String,
    load: Duration,
    pp_name: String,
    tg_name: String,
    /// Prompt tokens per second.
    pp: Spread,
    /// Decode tokens per second.
    tg: Spread,
    /// Time to the first token after the prompt, ms.
    ttft: Spread,
    /// The machine's speed between the measurements (calibration.rs), M multiply-adds/s.
    calibration: Spread,
    prefix: Option<PrefixRun>,
    memory_bytes: Option<u64>,
    peer: Option<Peer>,
}

impl Single {
    fn measure(
        backend: &mut dyn Backend,
        load: Duration,
        peer: Option<Peer>,
        args: &BenchArgs,
    ) -> anyhow::Result<Single> {
        let prompt = bench_prompt(backend, args.prompt_tokens, 0)?;
        let bos = vec![prompt[0]];
        let context = args.prompt_tokens + args.gen_tokens + 1;
        let params = |max_tokens| GenerateParams {
            sampling: SamplingParams::greedy(),
            max_tokens,
            ignore_eos: true,
            stop: Vec::new(),
            context,
            ..GenerateParams::default()
        };
        // Warm-up: touches every weight and the code paths once.
        timed(backend, &prompt[..prompt.len().min(8)], params(2))?;

        let (mut pp, mut ttft, mut tg, mut calibration) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in 0..args.repeats {
            // The machine's speed at this moment, between the measurements it calibrates.
            calibration.push(crate::calibration::measure());
            // pp: the whole prompt in one forward pass, then the first token; a prompt unlike the
            // ones before, which the prefix cache holds.
            let fresh = bench_prompt(backend, args.prompt_tokens, r + 1)?;
            let run = timed(backend, &fresh, params(1))?;
            pp.push(args.prompt_tokens as f64 / run.prompt.as_secs_f64());
            ttft.push(run.first_token.as_secs_f64() * 1e3);
            // tg: one token at a time from BOS, `gen_tokens` forward passes in all.
            let run = timed(backend, &bos, params(args.gen_tokens))?;
            tg.push(args.gen_tokens as f64 / run.total.as_secs_f64());
        }
        calibration.push(crate::calibration::measure());
        let prefix = args
            .prefix_tokens
            .map(|n| bench_prefix(backend, n, args.repeats, params(1)))
            .transpose()?;
        Ok(Single {
            backend: backend.name().to_string(),
            kernels: backend.kernel_path()?,
            load,
            pp_name: format!("pp{}", args.prompt_tokens),
            tg_name: format!("tg{}", args.gen_tokens),
            pp: Spread::of(pp),
            tg: Spread::of(tg),
            ttft: Spread::of(ttft),
            calibration: Spread::of(calibration),
            prefix,
            memory_bytes: backend.memory_bytes(),
            peer,
        })
    }

    /// The figures the metrics store records.
    fn figures(&self) -> Vec<Figure> {
        let (pp_name, tg_name) = (&self.pp_name, &self.tg_name);
        let (pp, tg, calibration) = (self.pp.median, self.tg.median, self.calibration.median);
        let mut figures = vec![
            figure(&format!("{pp_name}_tok_s"), pp, Better::Higher),
            figure(&format!("{tg_name}_tok_s"), tg, Better::Higher),
            figure("ttft_ms", self.ttft.median, Better::Lower),
            figure("load_ms", self.load.as_secs_f64() * 1e3, Better::Lower),
            figure("calibration_mmac_s", calibration, Better::Higher),
            figure(&format!("{pp_name}_vs_calibration"), pp / calibration, Better::Higher),
            figure(&format!("{tg_name}_vs_calibration"), tg / calibration, Better::Higher),
        ];
        if let Some(bytes) = self.memory_bytes {
            figures.push(figure("memory_mib", bytes as f64 / (1 << 20) as f64, Better::Lower));
        }
        if let Some(p) = &self.prefix {
            figures.push(figure("prefix_ttft_ms_cached", p.cached.median, Better::Lower));
            figures.push(figure("prefix_ttft_ms_computed", p.uncached.median, Better::Lower));
        }
        if let Some(p) = &self.peer {
            figures.push(figure(
                &format!("peer_{pp_name}_tok_s"),
                p.prompt.median,
                Better::Higher,
            ));
            figures.push(figure(
                &format!("peer_{tg_name}_tok_s"),
                p.decode.median,
                Better::Higher,
            ));
            figures.push(figure(
                &format!("{pp_name}_vs_peer"),
                pp / p.prompt.median,
                Better::Higher,
            ));
            figures.push(figure(
                &format!("{tg_name}_vs_peer"),
                tg / p.decode.median,
                Better::Higher,
            ));
        }
        figures
    }

    /// `--format json`.
    fn json(&self, model: &Path, args: &BenchArgs) -> anyhow::Result<Value> {
        let (pp_name, tg_name) = (&self.pp_name, &self.tg_name);
        let mut out = json!({
            "model": model.display().to_string(),
            "cpu": rill_host::commands::info::cpu_class(),
            "time_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
            "rill": {
                "backend": self.backend, "kernel_path": self.kernels, "threads": 1, "repeats": args.repeats,
                "load_ms": self.load.as_secs_f64() * 1e3,
                (pp_name.clone()): self.pp.json(), (tg_name.clone()): self.tg.json(),
                "time_to_first_token_ms": self.ttft.json(),
                "calibration_mmac_s": self.calibration.json(),
            },
        });
        if let Some(p) = &self.prefix {
            out["rill"]["prefix"] = json!({ "tokens": p.tokens, "ttft_ms_uncached": p.uncached.json(), "ttft_ms_cached": p.cached.json(), "ratio": p.cached.median / p.uncached.median });
        }
        if let Some(p) = &self.peer {
            out["peer"] = json!({ "name": p.name, "threads": args.threads, (pp_name.clone()): p.prompt.json(), (tg_name.clone()): p.decode.json() });
            out["ratio"] =
                json!({ pp_name: self.pp.median / p.prompt.median, tg_name: self.tg.median / p.decode.median });
        }
        Ok(out)
    }

    /// `--format text`.
    fn print(&self, model: &Path, args: &BenchArgs) {
        let (pp_name, tg_name) = (&self.pp_name, &self.tg_name);
        println!("model   {}", model.display());
        println!("cpu     {}", rill_host::commands::info::cpu_class());
        println!(
            "rill    {} backend, kernels {}, 1 thread, {} repeats, load {:.2} s, calibration {:.0} M multiply-adds/s",
            self.backend,
            self.kernels,
            args.repeats,
            self.load.as_secs_f64(),
            self.calibration.median
        );
        println!("{:<40}{:>10}{:>10}{:>10}", "", "min", "median", "max");
        let row = |name: &str, s: &Spread| println!("{name:<40}{:>10.2}{:>10.2}{:>10.2}", s.min, s.median, s.max);
        row(&format!("  {pp_name} tok/s"), &self.pp);
        row(&format!("  {tg_name} tok/s"), &self.tg);
        row(&format!("  first token ms ({pp_name})"), &self.ttft);
        if let Some(p) = &self.prefix {
            row(
                &format!("  first token ms, {}-token prefix computed", p.tokens),
                &p.uncached,
            );
            row("  … same prefix cached", &p.cached);
            println!(
                "  cached / computed (medians): {:.2}×",
                p.cached.median / p.uncached.median
            );
        }
        if let Some(p) = &self.peer {
            println!("{}, {} thread(s)", p.name, args.threads);
            row(&format!("  {pp_name} tok/s"), &p.prompt);
            row(&format!("  {tg_name} tok/s"), &p.decode);
            println!(
                "ratio rill / peer (medians): {pp_name} {:.2}×, {tg_name} {:.2}×",
                self.pp.median / p.prompt.median,
                self.tg.median / p.decode.median
            );
        }
    }
}

fn figure(name: &str, value: f64, better: Better) -> Figure {
    Figure {
        name: name.to_string(),
        value,
        better,
    }
}

fn bench_concurrency(backend: &mut dyn Backend, model: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    if args.concurrency.contains(&0) {
        bail!("--concurrency levels must be at least 1");
    }
    let prompt = bench_prompt(backend, args.prompt_tokens, 0)?;
    let warm_up = &prompt[..prompt.len().min(8)];
    // The peer first, level by level, so that its numbers come from the same minutes as ours.
    let peer = match &args.peer_server {
        Some(bin) => {
            let slots = args.concurrency.iter().copied().max().unwrap_or(1);
            let server = crate::peer_server::PeerServer::start(
                bin,
                model,
                args.threads,
                slots,
                args.prompt_tokens + args.gen_tokens + 16,
            )?;
            server.level(1, warm_up, 2)?;
            Some(
                args.concurrency
                    .iter()
                    .map(|&n| server.level(n, &prompt, args.gen_tokens))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
        }
        None => None,
    };
    crate::bench_batch::level(backend, 1, warm_up, 2)?;
    let calibration_before = crate::calibration::measure();
    let levels = args
        .concurrency
        .iter()
        .map(|&n| crate::bench_batch::level(backend, n, &prompt, args.gen_tokens))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let calibration = (calibration_before + crate::calibration::measure()) / 2.0;
    let limit = crate::bench_batch::settled_limit(&levels, args.target_itl_ms as f64);
    let mut figures = vec![figure("calibration_mmac_s", calibration, Better::Higher)];
    for (i, l) in levels.iter().enumerate() {
        let n = l.streams;
        figures.push(figure(&format!("c{n}_tok_s"), l.aggregate, Better::Higher));
        figures.push(figure(&format!("c{n}_itl_ms_p95"), l.inter_token_ms.p95, Better::Lower));
        figures.push(figure(
            &format!("c{n}_vs_calibration"),
            l.aggregate / calibration,
            Better::Higher,
        ));
        if let Some(p) = &peer {
            figures.push(figure(
                &format!("c{n}_vs_peer"),
                l.aggregate / p[i].aggregate,
                Better::Higher,
            ));
        }
    }
    let run = crate::bench_history::describe(backend, model, "concurrency", figures)?;
    match args.format {
        Format::Json => {
            let mut out = json!({
                "cpu": rill_host::commands::info::cpu_class(), "backend": backend.name(), "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
                "levels": levels.iter().map(|l| l.json()).collect::<Vec<_>>(),
                "target_itl_ms": args.target_itl_ms, "batch_limit_at_target": limit,
            });
            if let Some(p) = &peer {
                out["peer"] = json!({ "name": "llama.cpp (llama-server)", "threads": args.threads, "levels": p.iter().map(|l| l.json()).collect::<Vec<_>>() });
            }
            println!("{out}");
        }
        Format::Text => {
            println!(
                "rill    {} backend, kernels {}, 1 thread, prompt {} tokens, {} tokens per stream",
                backend.name(),
                backend.kernel_path()?,
                args.prompt_tokens,
                args.gen_tokens
            );
            crate::bench_batch::print(&levels);
            println!(
                "batch size for a {} ms inter-token target (p95): {limit} stream(s)",
                args.target_itl_ms
            );
            if let Some(p) = &peer {
                println!(
                    "peer    llama.cpp (llama-server), {} thread(s), one slot per stream",
                    args.threads
                );
                crate::bench_batch::print(p);
                let ratios: Vec<String> = levels
                    .iter()
                    .zip(p)
                    .map(|(r, p)| format!("{} streams {:.2}×", r.streams, r.aggregate / p.aggregate))
                    .collect();
                println!("ratio rill / peer, aggregate decode: {}", ratios.join(", "));
            }
        }
    }
    crate::bench_history::after_run(&run, model, &args.history)
}

/// `n` tokens of ordinary text, starting with BOS. Each `variant` starts at another place in
/// the text, so that no two variants share a prefix (the prefix cache would serve it).
pub fn bench_prompt(backend: &mut dyn Backend, n: usize, variant: usize) -> anyhow::Result<Vec<u32>> {
    let skip = variant * 7;
    let text = PROMPT_TEXT.repeat((n + skip) / 16 + 1);
    let tokens = backend.tokenize(&text, true, false)?;
    if tokens.len() < n + skip {
        bail!("the benchmark text makes only {} tokens", tokens.len());
    }
    Ok([&tokens[..1], &tokens[1 + skip..n + skip]].concat())
}

/// Times to first token of prompts that share their first `tokens` tokens with an earlier one.
struct PrefixRun {
    tokens: usize,
    uncached: Spread,
    cached: Spread,
}

/// Each repeat: a prompt of `tokens` new tokens plus a question, then the same tokens with
/// another question (the prefix cache serves the shared whole blocks).
fn bench_prefix(
    backend: &mut dyn Backend,
    tokens: usize,
    repeats: usize,
    params: GenerateParams,
) -> anyhow::Result<PrefixRun> {
    let params = GenerateParams {
        context: tokens + 64,
        ..params
    };
    let questions = [
        backend.tokenize(" What happened next?", false, false)?,
        backend.tokenize(" Who lived there?", false, false)?,
    ];
    let (mut uncached, mut cached) = (Vec::new(), Vec::new());
    for r in 0..repeats {
        // Variants far from the pp test's, so nothing before this repeat shares its start.
        let shared = bench_prompt(backend, tokens, 1000 + r)?;
        let [first, second] = questions.clone().map(|q| [shared.as_slice(), &q].concat());
        uncached.push(timed(backend, &first, params.clone())?.first_token.as_secs_f64() * 1e3);
        cached.push(timed(backend, &second, params.clone())?.first_token.as_secs_f64() * 1e3);
    }
    Ok(PrefixRun {
        tokens,
        uncached: Spread::of(uncached),
        cached: Spread::of(cached),
    })
}

struct Run {
    /// The engine's prompt-processing time.
    prompt: Duration,
    /// From the call to the first token event, as the caller sees it.
    first_token: Duration,
    /// From the call to the end of the generation.
    total: Duration,
}

fn timed(backend: &mut dyn Backend, prompt: &[u32], params: GenerateParams) -> anyhow::Result<Run> {
    let expected = params.max_tokens;
    let start = Instant::now();
    let mut first_token = None;
    let mut events = 0;
    let outcome = backend.generate(PromptInput::Tokens(prompt), params, &mut |_| {
        first_token.get_or_insert_with(|| start.elapsed());
        events += 1;
        plant_slowdown();
        Ok(())
    })?;
    let total = start.elapsed();
    if events != expected {
        bail!("the engine produced {events} tokens where {expected} were asked for");
    }
    Ok(Run {
        prompt: outcome.timings.prompt,
        first_token: first_token.unwrap_or(total),
        total,
    })
}

/// Test builds can plant a regression: `RILL_FAULT_TOKEN_DELAY_MS` makes every token that
/// much later, as a slower engine would (the `--check` test needs a real one to catch).
fn plant_slowdown() {
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = std::env::var("RILL_FAULT_TOKEN_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Runs llama-bench on `model` with the same test sizes and reads its JSON report; `on_gpu`:
/// every layer on the GPU with flash attention (a CUDA or Vulkan build of llama.cpp).
fn run_peer(llama_bench: &Path, model: &Path, args: &BenchArgs, on_gpu: bool) -> anyhow::Result<Peer> {
    let mut cmd = std::process::Command::new(llama_bench);
    cmd.arg("-m").arg(model);
    cmd.args([
        "-p",
        &args.prompt_tokens.to_string(),
        "-n",
        &args.gen_tokens.to_string(),
    ]);
    cmd.args([
        "-t",
        &args.threads.to_string(),
        "-r",
        &args.repeats.to_string(),
        "-o",
        "json",
    ]);
    if on_gpu {
        cmd.args(["-ngl", "99", "-fa", "1"]);
    }
    crate::child_server::with_library_path(&mut cmd, llama_bench)?;
    eprintln!("rill: running {} …", llama_bench.display());
    let out = cmd
        .output()
        .with_context(|| format!("running {}", llama_bench.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            llama_bench.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_llama_bench(&out.stdout, args.prompt_tokens, args.gen_tokens)
        .with_context(|| format!("reading the report of {}", llama_bench.display()))
}

/// llama-bench `-o json`: an array with one object per test, each with `n_prompt`, `n_gen`
/// and `samples_ts` (tokens per second of each repeat).
fn parse_llama_bench(stdout: &[u8], prompt_tokens: usize, gen_tokens: usize) -> anyhow::Result<Peer> {
    let tests: Vec<Value> = serde_json::from_slice(stdout)?;
    let samples = |n_prompt: usize, n_gen: usize| -> anyhow::Result<Spread> {
        let test = tests
            .iter()
            .find(|t| t["n_prompt"] == n_prompt && t["n_gen"] == n_gen)
            .with_context(|| format!("no test with n_prompt {n_prompt}, n_gen {n_gen}"))?;
        let ts: Option<Vec<f64>> = test["samples_ts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect());
        match ts {
            Some(ts) if !ts.is_empty() => Ok(Spread::of(ts)),
            _ => bail!("the test has no samples_ts"),
        }
    };
    // Builds from a source package report their commit as "unknown".
    let commit = tests
        .first()
        .and_then(|t| t["build_commit"].as_str())
        .filter(|c| *c != "unknown");
    let name = commit.map_or("llama.cpp (llama-bench)".into(), |c| {
        format!("llama.cpp {c} (llama-bench)")
    });
    Ok(Peer {
        name,
        prompt: samples(prompt_tokens, 0)?,
        decode: samples(0, gen_tokens)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
        assert_eq!(Spread::of(vec![5.0, 1.0, 4.0]).median, 4.0);
    }

    #[test]
    fn reads_llama_bench_json() {
        let report = br#"[
          {"build_commit": "0c1e57098", "n_prompt": 128, "n_gen": 0, "avg_ts": 200.0, "samples_ts": [190.0, 200.0, 210.0]},
          {"build_commit": "0c1e57098", "n_prompt": 0, "n_gen": 64, "avg_ts": 25.0, "samples_ts": [24.0, 26.0, 25.0]}
        ]"#;
        let p = parse_llama_bench(report, 128, 64).unwrap();
        assert_eq!((p.prompt.min, p.prompt.median, p.prompt.max), (190.0, 200.0, 210.0));
        assert_eq!(p.decode.median, 25.0);
        assert!(p.name.contains("0c1e57098"));
        assert!(parse_llama_bench(report, 512, 64).is_err());
    }
}
