//! `rill`: run the Rill engine from the command line.

mod backend;
mod commands;

use backend::BackendKind;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rill", version, about = "LLM inference engine: run GGUF models and stream tokens")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every model command takes.
#[derive(clap::Args)]
struct ModelArgs {
    /// GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Where the engine runs: the WIT component in wasmtime, or the engine crate natively.
    #[arg(long, value_enum, default_value_t = BackendKind::Component)]
    backend: BackendKind,
    /// Memory the engine component may use, in MiB (default: twice the model file plus 1 GiB).
    #[arg(long)]
    memory_limit_mib: Option<usize>,
}

impl ModelArgs {
    fn open(&self) -> anyhow::Result<Box<dyn backend::Backend>> {
        backend::open(self.backend, &self.model, self.memory_limit_mib.map(|m| m << 20))
    }
}

#[derive(Subcommand)]
enum Command {
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
    /// Generate a continuation of a prompt, streaming it to stdout.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        args: commands::run::RunArgs,
    },
    /// Show the CPU, its SIMD features, and the kernels each backend uses.
    Info {
        #[arg(long, value_enum, default_value_t = commands::info::Format::Text)]
        format: commands::info::Format,
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

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Tokenize { model, no_bos, parse_special, text } => {
            model.open().and_then(|mut b| commands::tokenize(b.as_mut(), !no_bos, parse_special, &text))
        }
        Command::Run { model, args } => model.open().and_then(|mut b| commands::run::run(b.as_mut(), args)),
        Command::Info { format } => commands::info::info(format),
        Command::Logits { model, tokens, top } => model.open().and_then(|mut b| commands::logits(b.as_mut(), &tokens, top)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: {e:#}");
            ExitCode::FAILURE
        }
    }
}
