//! Config files given with `--config`: ferry's own TOML, or a RedisShake config recognised and
//! run with its settings carried over (`ferry_engine::spec::shake`); and `ferry config
//! convert`, which prints the ferry config a RedisShake file becomes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ferry_engine::spec::TaskSpec;
use ferry_engine::spec::shake::{self, Converted};

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a RedisShake config as a ferry config (TOML), with a comment on every setting
    ///
    /// Reads RedisShake 4's shake.toml ([sync_reader], [rdb_reader], [redis_writer],
    /// [filter], [advanced], [module]), RedisShake 3's TOML ([source] type, [target] type)
    /// and the flat redis-shake.conf of RedisShake 2. The comments at the top name every
    /// setting that did not carry over as it was: refused (ferry sync refuses the file),
    /// carried over with a difference, not carried over, or unknown.
    ///
    /// Passwords: one written in the RedisShake file is written into the URL of the output
    /// (it is no more exposed than in the file it came from); one RedisShake took from the
    /// environment (${VAR}) is left out, and a comment says which variable held it.
    ///
    /// `ferry sync --config FILE` runs a RedisShake file directly, with the same mapping.
    ///
    /// Exit status: 0, or 1 when ferry sync would refuse the file (the output is still
    /// printed, the refused settings left out and named at the top).
    #[command(verbatim_doc_comment)]
    Convert {
        /// The RedisShake config file.
        file: PathBuf,
    },
}

/// Reads `--config FILE`: ferry's TOML, or a RedisShake config, which is logged setting by
/// setting where it does not carry over as it was, and refused where it cannot.
pub fn load(path: &Path) -> ferry_engine::Result<TaskSpec> {
    let text = read(path)?;
    if shake::detect(&text).is_none() {
        return TaskSpec::from_toml(&text).map_err(|e| {
            ferry_engine::Error::Config(format!("config file {}{e}", path.display()))
        });
    }
    let converted = convert(path, &text)?;
    let told: Vec<_> = converted
        .notes
        .iter()
        .filter(|n| n.worth_telling())
        .collect();
    tracing::info!(
        "{} is a {}: running it with its settings mapped ({} not carried over as written; `ferry config convert` shows the ferry config)",
        path.display(),
        converted.dialect.describe(),
        told.len()
    );
    for note in told {
        tracing::warn!("{}: {}", path.display(), note.line());
    }
    converted
        .into_spec()
        .map_err(|e| ferry_engine::Error::Config(format!("{}: {e}", path.display())))
}

pub fn run(args: ConfigArgs) -> ExitCode {
    let ConfigCommand::Convert { file } = args.command;
    let converted = read(&file).and_then(|text| {
        if shake::detect(&text).is_none() {
            return Err(ferry_engine::Error::Config(format!(
                "{} is not a RedisShake config (no [sync_reader], [rdb_reader] or [redis_writer]; no [source] type; no source.address): nothing to convert",
                file.display()
            )));
        }
        convert(&file, &text)
    });
    let converted = match converted {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", converted.to_toml());
    let refused: Vec<String> = converted.refused().map(|n| n.line()).collect();
    if refused.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "ferry: {}: ferry sync refuses this file: {}",
        file.display(),
        refused.join("; ")
    );
    ExitCode::FAILURE
}

fn read(path: &Path) -> ferry_engine::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        ferry_engine::Error::Config(format!("cannot read config file {}: {e}", path.display()))
    })
}

fn convert(path: &Path, text: &str) -> ferry_engine::Result<Converted> {
    shake::convert(text, &|var| std::env::var(var).ok()).map_err(|e| {
        ferry_engine::Error::Config(format!("RedisShake config {}: {e}", path.display()))
    })
}
