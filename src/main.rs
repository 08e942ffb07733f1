//! Parses flags, builds, runs, and maps the result to an exit status:
//! 0 success, 1 an image is not available, 2 a usage or configuration error.

use std::process::ExitCode;

use argh::FromArgs;

use k8s_image_availability_exporter::app;
use k8s_image_availability_exporter::check_command;
use k8s_image_availability_exporter::config::{normalize_args, Args, Command, Config};
use k8s_image_availability_exporter::registry::Checker;
use k8s_image_availability_exporter::sys::{logger, malloc};

fn main() -> ExitCode {
    malloc::limit_arenas(2);
    let raw: Vec<String> = std::env::args().collect();
    let name = raw
        .first()
        .map(String::as_str)
        .unwrap_or("k8s-image-availability-exporter");
    let rest = normalize_args(&raw[1.min(raw.len())..]);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let args = match Args::from_args(&[name], &rest) {
        Ok(a) => a,
        Err(early) => {
            return if early.status.is_ok() {
                print!("{}", early.output);
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", early.output);
                ExitCode::from(2)
            };
        }
    };
    if args.version {
        println!(
            "k8s-image-availability-exporter {}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    logger::init(logger::parse_level(&args.log_level).unwrap_or(log::LevelFilter::Info));
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match &config.command {
        Command::Check {
            images,
            platforms,
            runtime,
        } => {
            let checker = match Checker::new(config.registry.checker.clone()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let rows = check_command::run(
                &config.registry,
                &checker,
                images,
                platforms,
                runtime.as_deref(),
            );
            if let Err(e) =
                check_command::print(&rows, config.output, &mut std::io::stdout().lock())
            {
                eprintln!("error: writing output: {e}");
                return ExitCode::from(2);
            }
            ExitCode::from(check_command::exit_code(&rows) as u8)
        }
        Command::Serve => ExitCode::from(app::run(&config)),
    }
}
