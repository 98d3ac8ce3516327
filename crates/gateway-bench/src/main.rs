//! `gateway-bench`: measures the gateway against the in-repo test upstream on this
//! machine — proxy overhead against the direct path at several concurrencies (runs
//! interleaved so machine noise cancels), CPU per call, memory, catalog scale and the
//! REST API — and prints a table plus a JSON file. `cargo xtask bench` builds the
//! release binaries and runs it.

mod client;
mod load;
mod procfs;
mod report;
mod scenario;

use std::path::PathBuf;

use clap::Parser;

/// Benchmark of the MCP registry gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway-bench")]
pub struct Options {
    /// A one-minute run (shorter phases, fewer servers).
    #[arg(long)]
    pub quick: bool,
    /// A few seconds, checking only that nothing fails and the output is well formed (CI).
    #[arg(long)]
    pub smoke: bool,
    /// Directory holding the `mcp-gateway` and `test-upstream` binaries.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Only drive `tools/call` load at this MCP URL (for profiling a running gateway).
    #[arg(long, value_name = "URL")]
    pub load_only: Option<String>,
    /// Tool to call with --load-only.
    #[arg(long, default_value = "bench__echo")]
    pub tool: String,
    /// Concurrent sessions with --load-only.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds of load with --load-only.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Bearer token sent with --load-only (a gateway with `[auth]`).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if let Some(url) = &options.load_only {
        let http = match &options.token {
            Some(token) => client::http_client_with_token(token),
            None => client::http_client(),
        };
        let Ok(http) = http else {
            return std::process::ExitCode::FAILURE;
        };
        let duration = std::time::Duration::from_secs(options.seconds);
        let result = load::run(&http, url, &options.tool, options.concurrency, duration).await;
        let stats = report::Stats::from(&result);
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).unwrap_or_default()
        );
        return if result.errors == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    match scenario::run_all(&options).await {
        Ok(results) => {
            print!("{}", report::table(&results));
            if let Err(error) = report::write_json(&results, &options.out) {
                eprintln!("error: cannot write {}: {error:#}", options.out.display());
                return std::process::ExitCode::FAILURE;
            }
            println!("\nJSON: {}", options.out.display());
            if results.errors() > 0 {
                eprintln!("error: {} requests failed", results.errors());
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
