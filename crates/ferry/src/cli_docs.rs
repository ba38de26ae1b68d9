//! Shell completions and man pages, generated from the command line's own definition so they
//! cannot drift from it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write ferry.1 and one page per subcommand (ferry-sync.1, ferry-task-list.1, ...) into
    /// this directory instead of printing ferry.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `ferry completions SHELL`: the script on stdout.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "ferry", &mut out);
    write_stdout(&out)
}

/// `ferry man [--dir DIR]`.
pub fn man(args: ManArgs, cli: clap::Command) -> ExitCode {
    match args.dir {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("ferry: cannot create --dir {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            match clap_mangen::generate_to(cli, &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "ferry: cannot write the man pages into {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(cli).render(&mut out) {
                Ok(()) => write_stdout(&out),
                Err(e) => {
                    eprintln!("ferry: cannot render the man page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`ferry man | head`) is the reader's choice, not a failure to report.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
