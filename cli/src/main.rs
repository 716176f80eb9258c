//! `rill`: run the Rill engine from the command line. The commands are the host library's
//! (`rill-host`) and the lab's (`rill-lab`); this file parses the command line, merges it with
//! rill.toml, and hands each command its settings.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rill_engine::model::RopeScalingOptions;
use rill_engine::settings::GenerationSettings;
use rill_host::backend::BackendKind;
use rill_host::config::Config;
use rill_host::{commands, edge, serve};
use rill_lab::{bench, compat, dashboard, store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "LLM inference engine: run GGUF models and stream tokens"
)]
struct Cli {
    /// Settings file (default: $RILL_CONFIG, else $XDG_CONFIG_HOME/rill/rill.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Options every model command takes; each overrides its rill.toml key.
#[derive(clap::Args)]
struct ModelArgs {
    /// GGUF file or known model name (default: the reference model, fetched on first use).
    #[arg(long)]
    model: Option<String>,
    /// Where the engine runs (default auto: the component on a hardware GPU if there is one, else on the CPU).
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Memory the engine component may use, in MiB (default: twice the model file plus 1 GiB).
    #[arg(long)]
    memory_limit_mib: Option<u64>,
    /// RoPE scaling for a longer context, over the model file's: KIND:FACTOR[:ORIGINAL_CONTEXT]
    /// with KIND linear, yarn or none (e.g. yarn:4).
    #[arg(long, value_name = "KIND:FACTOR")]
    rope_scaling: Option<RopeScalingOptions>,
}

impl ModelArgs {
    fn apply(&self, config: &mut Config) {
        if let Some(m) = &self.model {
            config.model = m.clone();
        }
        config.backend = self.backend.unwrap_or(config.backend);
        config.memory_limit_mib = self.memory_limit_mib.or(config.memory_limit_mib);
        config.rope_scaling = self.rope_scaling.or(config.rope_scaling);
    }
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt, streaming it to stdout.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: commands::run::RunArgs,
    },
    /// Serve the OpenAI-compatible API (HTTP with SSE, and WebSocket) for one model.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: serve::ServeArgs,
        /// The metrics store: per-minute request telemetry is recorded there, and /dashboard
        /// shows it with the benchmark history (default: $XDG_DATA_HOME/rill/metrics.sqlite).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Do not record per-minute telemetry in the metrics store.
        #[arg(long)]
        no_record: bool,
    },
    /// Measure prompt and decode speed, optionally side by side with llama.cpp's llama-bench.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: bench::BenchArgs,
    },
    /// Write the edge worker (a wasi:http/proxy component) with the model already loaded in
    /// its memory image, for hosts that start a fresh instance per request.
    Bake {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to write the worker component.
        #[arg(short, long)]
        output: PathBuf,
        /// Write the worker without a model: it reads one on its first request, from the
        /// folder a host preopens as /models (`RILL_MODEL` names the file, else the first .gguf).
        #[arg(long)]
        no_model: bool,
    },
    /// Serve the performance dashboard: charts of the recorded benchmark runs, the regression
    /// panel, the compatibility matrix and `rill serve`'s per-minute telemetry.
    Dashboard {
        /// The metrics store (default: $XDG_DATA_HOME/rill/metrics.sqlite).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0: any free port; the chosen one is printed).
        #[arg(long, default_value_t = 8090)]
        port: u16,
    },
    /// Run the compatibility checks on the hosts found here and record them in the metrics
    /// store (the dashboard's matrix).
    Compat {
        #[command(flatten)]
        model: ModelArgs,
        /// The metrics store (default: $XDG_DATA_HOME/rill/metrics.sqlite).
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
        /// Check only these hosts (comma-separated; default: every one found).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(compat::HOSTS))]
        only: Vec<String>,
    },
    /// Download a known model (default: the reference model) into the model cache.
    Pull {
        /// Model name; `--list` shows the known ones.
        name: Option<String>,
        /// Folder to put it in (default: models_dir from rill.toml, else $XDG_CACHE_HOME/rill/models).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// List the known models instead.
        #[arg(long)]
        list: bool,
    },
    /// Show the CPU, its SIMD features, and what the engine chooses from them.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value_t = commands::info::Format::Text)]
        format: commands::info::Format,
    },
    /// Check or show rill.toml.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// Do not add the beginning-of-sequence token.
        #[arg(long)]
        no_bos: bool,
        /// Turn control tokens written in the text (e.g. <start_of_turn>) into their ids.
        #[arg(long)]
        parse_special: bool,
        text: String,
    },
    /// Teacher-forced logits: for each input token, the top-K logits for the token after it.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids, used as given (no BOS added).
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a settings file (default: the one rill would use) and report the first problem.
    Check { path: Option<PathBuf> },
    /// Print the effective settings, defaults included, as rill.toml.
    Show,
}

/// The settings a model command runs with: rill.toml, then its flags, checked together.
fn settings(
    config_path: Option<&std::path::Path>,
    model: &ModelArgs,
    generation: Option<&GenerationSettings>,
) -> anyhow::Result<Config> {
    let (mut config, _) = Config::load(config_path)?;
    model.apply(&mut config);
    if let Some(flags) = generation {
        config.override_generation(flags);
    }
    config.validate().context("invalid settings (rill.toml and flags)")?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli.config.as_deref();
    let result = (|| match cli.command {
        Command::Serve { model, args, .. } if args.worker.is_some() => {
            let config = settings(config_path, &model, None)?;
            let worker_model = model.model.is_some().then(|| config.model_path()).transpose()?;
            edge::serve::serve(
                args.worker.as_deref().unwrap(),
                worker_model,
                &args.host,
                args.port,
                args.max_instances,
            )
        }
        Command::Serve {
            model,
            args,
            db,
            no_record,
        } => {
            let config = settings(config_path, &model, None)?;
            let path = config.model_path()?;
            let db = db.unwrap_or_else(store::default_path);
            let extras = serve::Extras {
                routes: dashboard::router(dashboard::Db::new(db.clone())),
                minute_sink: (!no_record).then(|| Arc::new(store::MinuteRecorder(db)) as _),
            };
            serve::serve(args, config, path, extras)
        }
        Command::Run { model, args } => {
            let config = settings(config_path, &model, Some(&args.generation))?;
            let mut backend = config.open_backend(&config.model_path()?)?;
            commands::run::run(backend.as_mut(), args, config.generate_params())
        }
        Command::Bench { model, args } => {
            let config = settings(config_path, &model, None)?;
            let path = config.model_path()?;
            let start = Instant::now();
            let mut backend = config.open_backend(&path)?;
            bench::bench(backend.as_mut(), start.elapsed(), &path, args)
        }
        Command::Bake {
            output, no_model: true, ..
        } => commands::bake::write_plain(&output),
        Command::Bake {
            model,
            output,
            no_model: false,
        } => {
            let config = settings(config_path, &model, None)?;
            commands::bake::bake(&config.model_path()?, &output)
        }
        Command::Compat { model, db, only } => {
            let config = settings(config_path, &model, None)?;
            compat::compat(&config.model_path()?, &db.unwrap_or_else(store::default_path), &only)
        }
        Command::Dashboard { db, host, port } => dashboard::serve(db.unwrap_or_else(store::default_path), &host, port),
        Command::Pull { name, dir, list } => {
            let (config, _) = Config::load(config_path)?;
            commands::pull(name.as_deref(), &dir.unwrap_or_else(|| config.models_dir()), list)
        }
        Command::Info { model, format } => {
            let config = settings(config_path, &model, None)?;
            commands::info::info(format, &config, &config.models_dir())
        }
        Command::Config {
            action: ConfigAction::Check { path },
        } => commands::config_check(path.as_deref().or(config_path)),
        Command::Config {
            action: ConfigAction::Show,
        } => {
            let (config, from) = Config::load(config_path)?;
            let origin = from.map_or("defaults only: no rill.toml found".into(), |p| {
                format!("from {}", p.display())
            });
            print!("# effective settings, {origin}\n{}", config.to_toml());
            Ok(())
        }
        Command::Tokenize {
            model,
            no_bos,
            parse_special,
            text,
        } => {
            let config = settings(config_path, &model, None)?;
            let mut backend = config.open_backend(&config.model_path()?)?;
            commands::tokenize(backend.as_mut(), !no_bos, parse_special, &text)
        }
        Command::Logits { model, tokens, top } => {
            let config = settings(config_path, &model, None)?;
            let mut backend = config.open_backend(&config.model_path()?)?;
            commands::logits(backend.as_mut(), &tokens, top)
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: {e:#}");
            ExitCode::FAILURE
        }
    }
}
