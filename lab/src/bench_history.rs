//! What `rill bench` does with a run's figures besides printing them: `--record` stores the
//! run in the metrics store, `--check FILE` compares it with a committed baseline (exit 1 on a
//! regression), `--write-baseline FILE` makes that baseline from the last recorded runs.
//!
//! Only figures measured against something in the same run are checked (`…_vs_calibration`,
//! `…_vs_peer`): bare times on shared machines move by tens of percent from one minute to the
//! next; ratios from one run move much less.

use crate::regression::{self, Baseline, Better, Thresholds};
use crate::store::{Figure, Run, Store};
use anyhow::{bail, Context};
use clap::Args;
use rill_host::backend::Backend;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct HistoryArgs {
    /// Store this run in the metrics store.
    #[arg(long)]
    record: bool,
    /// The metrics store (default: $XDG_DATA_HOME/rill/metrics.sqlite).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Compare this run's in-run ratios with a baseline file (see --write-baseline) and exit
    /// with status 1 if one regressed beyond --threshold.
    #[arg(long, value_name = "BASELINE.json")]
    check: Option<PathBuf>,
    /// Write a baseline file from the last --baseline-runs recorded runs like this one (this
    /// one included, with --record).
    #[arg(long, value_name = "BASELINE.json")]
    write_baseline: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    baseline_runs: usize,
    /// Smallest relative change in the wrong direction that --check reports as a regression
    /// (it must also lie 3 MADs outside the baseline's spread).
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
}

impl HistoryArgs {
    pub fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(crate::store::default_path)
    }
}

/// A figure a run is judged by: measured against something in the same run.
pub fn is_checked(name: &str) -> bool {
    name.contains("_vs_")
}

/// Two runs measured the same things the same way.
pub fn comparable(a: &Run, b: &Run) -> bool {
    (&a.kind, &a.backend, &a.host, &a.model, &a.quant, &a.cpu)
        == (&b.kind, &b.backend, &b.host, &b.model, &b.quant, &b.cpu)
        && figure_names(a) == figure_names(b)
}

fn figure_names(run: &Run) -> std::collections::BTreeSet<&str> {
    run.figures.iter().map(|f| f.name.as_str()).collect()
}

/// A committed baseline: the median and MAD of each checked figure over several runs.
#[derive(Serialize, Deserialize)]
struct BaselineFile {
    /// How the runs were made, for the next person.
    command: String,
    made_unix: u64,
    git_commit: String,
    cpu: String,
    backend: String,
    model: String,
    figures: BTreeMap<String, BaselineFigure>,
}

#[derive(Serialize, Deserialize)]
struct BaselineFigure {
    #[serde(flatten)]
    baseline: Baseline,
    better: Better,
}

/// `figures` of a `kind` run (`single` or `concurrency`) of `backend` on `model`, with where
/// and how they were measured.
pub fn describe(backend: &mut dyn Backend, model: &Path, kind: &str, figures: Vec<Figure>) -> anyhow::Result<Run> {
    let (host, runtime) = match backend.name() {
        // The component on the CPU or on a GPU (`kernel_path` names the adapter).
        "component" | "gpu" => (
            "rill",
            format!("wasmtime {}", rill_host::backend::component::WASMTIME_VERSION),
        ),
        other => (other, format!("native {}", std::env::consts::ARCH)),
    };
    Ok(Run {
        time: crate::store::now(),
        git_commit: env!("RILL_GIT_COMMIT").into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: host.into(),
        runtime,
        cpu: rill_host::commands::info::cpu_class(),
        backend: backend.name().into(),
        kernel_path: backend.kernel_path()?,
        model: model
            .file_name()
            .map_or_else(|| model.display().to_string(), |n| n.to_string_lossy().into_owned()),
        quant: rill_host::commands::info::model_plan(model)?.quant,
        kind: kind.into(),
        figures,
    })
}

pub fn after_run(run: &Run, model: &Path, args: &HistoryArgs) -> anyhow::Result<()> {
    if args.record || args.write_baseline.is_some() {
        let path = args.db_path();
        let mut store = Store::open(&path, crate::store::DEFAULT_RETENTION)?;
        if args.record {
            store.record_run(run)?;
            eprintln!("rill bench: recorded in {}", path.display());
            if store.compat_matrix()?.is_empty() {
                eprintln!("rill bench: no compatibility checks recorded yet: running this host's own (`rill compat` checks the other hosts)");
                store.record_compat(&crate::compat::in_process(model))?;
            }
        }
        if let Some(out) = &args.write_baseline {
            write_baseline(&store, run, args.baseline_runs, out)?;
        }
    }
    if let Some(file) = &args.check {
        check(
            run,
            file,
            Thresholds {
                min_change: args.threshold,
                ..Thresholds::default()
            },
        )?;
    }
    Ok(())
}

fn write_baseline(store: &Store, run: &Run, n: usize, out: &Path) -> anyhow::Result<()> {
    let runs: Vec<Run> = store.runs()?.into_iter().filter(|r| comparable(r, run)).collect();
    let recent = &runs[runs.len().saturating_sub(n)..];
    if recent.len() < MIN_HISTORY {
        bail!("a baseline needs at least {MIN_HISTORY} recorded runs like this one; the store has {} (run with --record first)", recent.len());
    }
    let figures = run
        .figures
        .iter()
        .filter(|f| is_checked(&f.name))
        .map(|f| {
            let values: Vec<f64> = recent
                .iter()
                .flat_map(|r| r.figures.iter().filter(|g| g.name == f.name).map(|g| g.value))
                .collect();
            (
                f.name.clone(),
                BaselineFigure {
                    baseline: Baseline::of(&values).expect("comparable runs have every figure"),
                    better: f.better,
                },
            )
        })
        .collect();
    let file = BaselineFile {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        made_unix: run.time,
        git_commit: run.git_commit.clone(),
        cpu: run.cpu.clone(),
        backend: run.backend.clone(),
        model: run.model.clone(),
        figures,
    };
    std::fs::write(out, serde_json::to_string_pretty(&file)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "rill bench: wrote the baseline of {} runs to {}",
        recent.len(),
        out.display()
    );
    Ok(())
}

fn check(run: &Run, file: &Path, thresholds: Thresholds) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the baseline {}", file.display()))?;
    let baseline: BaselineFile =
        serde_json::from_str(&text).with_context(|| format!("reading the baseline {}", file.display()))?;
    if baseline.cpu != run.cpu {
        eprintln!("rill bench --check: note: the baseline was made on {:?}, this is {:?} (the checked figures are relative to this machine's calibration)", baseline.cpu, run.cpu);
    }
    let mut regressions = Vec::new();
    println!(
        "check against {} ({} runs at {})",
        file.display(),
        baseline.figures.values().next().map_or(0, |f| f.baseline.runs),
        baseline.git_commit
    );
    println!(
        "{:<28}{:>12}{:>12}{:>9}{:>8}{:>12}",
        "figure", "this run", "baseline", "change", "z", "confidence"
    );
    for (name, expected) in &baseline.figures {
        let Some(Figure { value, .. }) = run.figures.iter().find(|f| &f.name == name) else {
            bail!(
                "this run has no figure {name}: run the bench as the baseline's command did: {}",
                baseline.command
            );
        };
        let v = regression::compare(name, *value, expected.baseline, expected.better, thresholds);
        let flag = if v.regression { "  REGRESSION" } else { "" };
        println!(
            "{name:<28}{:>12.4}{:>12.4}{:>8.1}%{:>8.1}{:>11.1}%{flag}",
            v.value,
            v.baseline.median,
            v.change * 100.0,
            v.z,
            v.confidence * 100.0
        );
        if v.regression {
            regressions.push(v);
        }
    }
    if !regressions.is_empty() {
        let list: Vec<String> = regressions
            .iter()
            .map(|v| format!("{} {:+.1}% (z {:.1})", v.figure, v.change * 100.0, v.z))
            .collect();
        bail!("performance regression against {}: {}", file.display(), list.join(", "));
    }
    Ok(())
}

/// A checked figure of the latest run of its kind, against the runs like it before.
#[derive(Serialize)]
pub struct HistoryVerdict {
    pub time: u64,
    pub git_commit: String,
    pub host: String,
    pub backend: String,
    pub model: String,
    pub quant: String,
    pub kind: String,
    /// Whether enough earlier runs stand behind the baseline ([`MIN_HISTORY`]) to call a
    /// regression; with fewer, the change is shown and nothing is flagged.
    pub judged: bool,
    #[serde(flatten)]
    pub verdict: regression::Verdict,
}

/// Earlier runs a baseline needs before a change against it is judged: fewer have no spread
/// worth the name.
pub const MIN_HISTORY: usize = 3;

/// For the latest run of every kind of run in `runs` (oldest first) that has an earlier run
/// like it: each checked figure against the last `window` of them (judged from [`MIN_HISTORY`]).
pub fn latest_against_history(runs: &[Run], window: usize, thresholds: Thresholds) -> Vec<HistoryVerdict> {
    let mut verdicts = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        if runs[i + 1..].iter().any(|later| comparable(later, run)) {
            continue;
        }
        let earlier: Vec<&Run> = runs[..i].iter().filter(|r| comparable(r, run)).collect();
        let earlier = &earlier[earlier.len().saturating_sub(window)..];
        if earlier.is_empty() {
            continue;
        }
        let judged = earlier.len() >= MIN_HISTORY;
        for f in run.figures.iter().filter(|f| is_checked(&f.name)) {
            let values: Vec<f64> = earlier
                .iter()
                .flat_map(|r| r.figures.iter().filter(|g| g.name == f.name).map(|g| g.value))
                .collect();
            let Some(baseline) = Baseline::of(&values) else {
                continue;
            };
            let mut verdict = regression::compare(&f.name, f.value, baseline, f.better, thresholds);
            verdict.regression &= judged;
            verdicts.push(HistoryVerdict {
                time: run.time,
                git_commit: run.git_commit.clone(),
                host: run.host.clone(),
                backend: run.backend.clone(),
                model: run.model.clone(),
                quant: run.quant.clone(),
                kind: run.kind.clone(),
                judged,
                verdict,
            });
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(time: u64, backend: &str, ratio: f64) -> Run {
        Run {
            time,
            git_commit: format!("c{time}"),
            version: "0.1.0".into(),
            host: "rill".into(),
            runtime: "wasmtime".into(),
            cpu: "cpu".into(),
            backend: backend.into(),
            kernel_path: "simd128".into(),
            model: "m.gguf".into(),
            quant: "Q4_K_M".into(),
            kind: "single".into(),
            figures: vec![
                Figure {
                    name: "tg64_tok_s".into(),
                    value: ratio * 100.0,
                    better: Better::Higher,
                },
                Figure {
                    name: "tg64_vs_calibration".into(),
                    value: ratio,
                    better: Better::Higher,
                },
            ],
        }
    }

    #[test]
    fn the_latest_run_of_each_kind_is_judged_by_its_ratios_against_the_runs_like_it() {
        let noise = [1.0, 1.03, 0.98, 1.01, 0.99, 1.02];
        let mut runs: Vec<Run> = noise
            .iter()
            .enumerate()
            .map(|(t, n)| run(t as u64, "component", 0.5 * n))
            .collect();
        // Native runs, at another level, never mix with the component's.
        runs.extend(
            noise
                .iter()
                .enumerate()
                .map(|(t, n)| run(100 + t as u64, "native", 0.9 * n)),
        );
        runs.push(run(200, "component", 0.4)); // planted: 20% down
        let verdicts = latest_against_history(&runs, 10, Thresholds::default());
        // One checked figure per kind of run (bare tok/s are not judged).
        assert_eq!(verdicts.len(), 2, "{}", serde_json::to_string(&verdicts).unwrap());
        let component = verdicts.iter().find(|v| v.backend == "component").unwrap();
        assert!(component.verdict.regression && component.time == 200);
        assert!((component.verdict.change + 0.2).abs() < 0.02);
        let native = verdicts.iter().find(|v| v.backend == "native").unwrap();
        assert!(!native.verdict.regression);
        assert!(verdicts.iter().all(|v| v.judged));
    }

    #[test]
    fn a_second_run_shows_its_change_without_a_verdict() {
        let runs = [run(0, "component", 0.5), run(1, "component", 0.4)];
        let verdicts = latest_against_history(&runs, 10, Thresholds::default());
        assert_eq!(verdicts.len(), 1);
        // 20% down, but one earlier run is no baseline to flag it against.
        assert!(
            !verdicts[0].judged && !verdicts[0].verdict.regression && (verdicts[0].verdict.change + 0.2).abs() < 1e-9
        );
        assert!(latest_against_history(&runs[..1], 10, Thresholds::default()).is_empty());
    }
}
