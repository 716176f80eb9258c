//! `rill`: run the Rill engine from the command line.

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rill", version, about = "LLM inference engine: run GGUF models and stream tokens")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        /// Do not add the beginning-of-sequence token.
        #[arg(long)]
        no_bos: bool,
        /// Turn control tokens written in the text (e.g. <start_of_turn>) into their ids.
        #[arg(long)]
        parse_special: bool,
        text: String,
    },
    /// Generate a continuation of a prompt, streaming it to stdout.
    Run(commands::run::RunArgs),
    /// Teacher-forced logits: for each input token, the top-K logits for the token after it.
    Logits {
        #[arg(long)]
        model: PathBuf,
        /// Comma-separated token ids, used as given (no BOS added).
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Tokenize { model, no_bos, parse_special, text } => commands::tokenize(&model, !no_bos, parse_special, &text),
        Command::Run(args) => commands::run::run(args),
        Command::Logits { model, tokens, top } => commands::logits(&model, &tokens, top),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: {e:#}");
            ExitCode::FAILURE
        }
    }
}
