//! `test-upstream`: runs the MCP test upstream over stdio or Streamable HTTP. Logs go to
//! stderr (`RUST_LOG`, default `warn`); in stdio mode stdout carries the protocol.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::{Parser, Subcommand};
use gateway_test_upstream::{TestUpstream, serve_http_with, serve_stdio_with};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// MCP test upstream for the registry gateway's tests.
#[derive(Debug, Parser)]
#[command(name = "test-upstream", version)]
struct Cli {
    /// Serve lists (tools, resources, templates, prompts) in pages of this many items.
    #[arg(long, global = true)]
    page_size: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP on stdin/stdout.
    Stdio,
    /// Serve MCP over Streamable HTTP at http://HOST:PORT/mcp.
    Http {
        /// Address to bind.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        host: IpAddr,
        /// Port to bind; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let mut upstream = TestUpstream::new();
    if let Some(size) = cli.page_size {
        upstream = upstream.with_page_size(size);
    }
    match cli.command {
        Command::Stdio => serve_stdio_with(upstream).await,
        Command::Http { host, port } => {
            // Install the handlers before the banner, so a signal sent on seeing it is handled.
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            let server = serve_http_with(upstream, SocketAddr::new(host, port)).await?;
            eprintln!(
                "listening on http://{}/mcp",
                SocketAddr::new(host, server.port())
            );
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            server.stop().await;
            Ok(())
        }
    }
}
