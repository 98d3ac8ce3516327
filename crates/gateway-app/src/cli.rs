//! The `mcp-gateway` command line. With no subcommand it serves, so
//! `cargo run -p gateway-app` starts the gateway.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

/// MCP Registry Gateway: a registry of upstream MCP servers and one MCP endpoint in
/// front of them all.
#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./mcp-gateway.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL (sqlite://PATH?mode=rwc or postgres://USER@HOST/DB); overrides
    /// DATABASE_URL and the config file.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Serving options; accepted with or without the `serve` subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway on HTTP (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Validate the configuration and print it (secrets redacted), then exit.
    CheckConfig,
    /// Import `server.json` documents (one, or a JSON list) from a file or an
    /// http(s) URL into the private registry served at /v0.1, then exit.
    Import {
        /// A file path or an http(s) URL.
        #[arg(value_name = "FILE|URL")]
        source: String,
    },
}

/// Options of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Interface to bind [default: 127.0.0.1].
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 8000].
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Apply pending migrations before serving (PostgreSQL; SQLite always does).
    #[arg(long, global = true)]
    pub migrate: bool,
    /// Allow a non-loopback --host without [auth]: anyone who reaches the port can
    /// call every upstream and change the registry.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// HTTP worker threads (1–1024) [default: one per CPU core]. Each worker serves
    /// many connections; see docs/configuration.md for pool sizes.
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
}

impl Cli {
    /// The command line's overrides of the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            host: self.serve.host.clone(),
            port: self.serve.port,
            log_format: self.log_format,
            database_url: self.database_url.clone(),
            insecure: self.serve.insecure,
            workers: self.serve.workers,
        }
    }
}
