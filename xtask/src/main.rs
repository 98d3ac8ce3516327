//! Project automation, run as `cargo xtask <task>`:
//! - `migrate [--database-url URL]`: apply the gateway's migrations (the same code
//!   `mcp-gateway migrate` runs);
//! - `check-layers`: fail when a crate gains a dependency its layer forbids.

mod layers;

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// Project automation for the MCP registry gateway.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Apply pending migrations to the configured database (or --database-url).
    Migrate {
        /// postgres://USER@HOST/DB or sqlite://PATH?mode=rwc; default: the gateway's
        /// configuration (DATABASE_URL, MCP_GATEWAY_DATABASE__URL, mcp-gateway.toml).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Check that no crate depends on what its layer forbids.
    CheckLayers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Migrate { database_url } => migrate(database_url.as_deref()),
        Task::CheckLayers => layers::check_workspace().map(|report| println!("{report}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `mcp-gateway migrate` through cargo, so there is one migration code path.
fn migrate(database_url: Option<&str>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "run",
        "--quiet",
        "--package",
        "gateway-app",
        "--bin",
        "mcp-gateway",
        "--",
    ]);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command.arg("migrate");
    let status = command.status()?;
    anyhow::ensure!(status.success(), "migration failed ({status})");
    Ok(())
}
