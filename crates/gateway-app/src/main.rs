//! `mcp-gateway`: serve (default), migrate, check-config.

use std::process::ExitCode;

use clap::Parser;
use gateway_app::cli::{Cli, Command};
use gateway_app::config::{Settings, config_path};
use gateway_app::startup::{Application, open_store};
use gateway_app::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings =
        match Settings::load(config_path(cli.config.clone()).as_deref(), &cli.overrides()) {
            Ok(settings) => settings,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
    let telemetry = telemetry::init(&settings.log, &settings.tracing);

    let outcome = match cli.command {
        Some(Command::CheckConfig) => {
            print!("{}", settings.to_redacted_toml());
            Ok(())
        }
        Some(Command::Migrate) => migrate(&settings).await,
        Some(Command::Import { source }) => gateway_app::import::run(&settings, &source).await,
        Some(Command::Serve) | None => serve(&settings, cli.serve.migrate).await,
    };
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: &Settings, migrate: bool) -> Result<(), String> {
    let app = Application::build(settings, migrate)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped(true)
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))
}

async fn migrate(settings: &Settings) -> Result<(), String> {
    let store = open_store(settings, true)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    println!("database is up to date");
    Ok(())
}
