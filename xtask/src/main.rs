//! Project automation, run as `cargo xtask <task>`:
//! - `migrate [--database-url URL]`: apply the gateway's migrations (the same code
//!   `mcp-gateway migrate` runs);
//! - `check-layers`: fail when a crate gains a dependency its layer forbids;
//! - `bench`: the benchmark (docs/benchmarks.md);
//! - `peers`: install the pinned third-party MCP peers for the interop tests;
//! - `fuzz`: run every cargo-fuzz target over its committed seed corpus.

mod layers;

use std::path::{Path, PathBuf};

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
    /// Build the release binaries and run the benchmark (see docs/benchmarks.md).
    Bench {
        /// A one-minute run.
        #[arg(long)]
        quick: bool,
        /// A few seconds on the debug binaries, checking only that nothing fails (CI).
        #[arg(long)]
        smoke: bool,
    },
    /// Install the pinned third-party MCP peers (npm and PyPI) under .peers/ for
    /// the interop tests; run them with TEST_PEERS_DIR=.peers.
    Peers,
    /// Run every fuzz target in fuzz/ (cargo-fuzz, nightly toolchain) for a while,
    /// starting from its seed corpus in fuzz/corpus/. Installs cargo-fuzz if needed.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Migrate { database_url } => migrate(database_url.as_deref()),
        Task::CheckLayers => layers::check_workspace().map(|report| println!("{report}")),
        Task::Peers => peers(),
        Task::Bench { quick, smoke } => bench(quick, smoke),
        Task::Fuzz { seconds } => fuzz(seconds),
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

/// The repository root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {command:?}: {e}"))?;
    anyhow::ensure!(status.success(), "{command:?} failed ({status})");
    Ok(())
}

/// The fuzz targets of fuzz/Cargo.toml.
const FUZZ_TARGETS: &[&str] = &["jsonrpc_message", "exposed_names", "resource_uri", "cursor"];

/// Runs each fuzz target for `seconds`. New inputs libFuzzer finds go to a scratch
/// corpus under target/, so the committed seeds stay as they are; a crash fails the
/// task and leaves its input in fuzz/artifacts/ (add it to the seeds once fixed).
fn fuzz(seconds: u32) -> anyhow::Result<()> {
    let root = root();
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    anyhow::ensure!(
        has_nightly,
        "fuzzing needs a nightly toolchain (rustup toolchain install nightly)"
    );
    let has_cargo_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in FUZZ_TARGETS {
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        println!("fuzzing {target} for {seconds} s");
        run(Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none"])
            .arg(target)
            .arg(&scratch)
            .arg(root.join("fuzz/corpus").join(target))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ]))?;
    }
    Ok(())
}

/// Installs exactly the versions pinned in peers/package-lock.json,
/// peers/requirements.txt and peers/schemathesis.txt, so every machine tests against
/// the same peers.
fn peers() -> anyhow::Result<()> {
    let root = root();
    let pinned = root.join("peers");
    let node_dir = root.join(".peers/node");
    std::fs::create_dir_all(&node_dir)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pinned.join(file), node_dir.join(file))?;
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&node_dir))?;
    for (venv, requirements) in [("py", "requirements.txt"), ("st", "schemathesis.txt")] {
        let venv = root.join(".peers").join(venv);
        if !venv.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(pinned.join(requirements)))?;
    }
    println!(
        "peers installed; run the interop tests with TEST_PEERS_DIR={}",
        root.join(".peers").display()
    );
    Ok(())
}

/// Builds what the benchmark runs (release, or debug for the smoke run) and runs it.
fn bench(quick: bool, smoke: bool) -> anyhow::Result<()> {
    let root = root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = if smoke { "debug" } else { "release" };
    let mut build = Command::new(&cargo);
    build.current_dir(&root).args([
        "build",
        "--quiet",
        "-p",
        "gateway-app",
        "-p",
        "gateway-test-upstream",
        "-p",
        "gateway-bench",
    ]);
    if !smoke {
        build.arg("--release");
    }
    run(&mut build)?;
    let bin_dir = root.join("target").join(profile);
    let mut bench = Command::new(bin_dir.join("gateway-bench"));
    bench.current_dir(&root).arg("--bin-dir").arg(&bin_dir);
    if quick {
        bench.arg("--quick");
    }
    if smoke {
        bench.args(["--smoke", "--out", "target/bench/smoke.json"]);
    }
    run(&mut bench)?;
    if smoke {
        return Ok(());
    }
    // Token verification with a cached key, a micro-benchmark of its own.
    let mut verify = Command::new(&cargo);
    verify.current_dir(&root).args([
        "bench",
        "--quiet",
        "-p",
        "gateway-auth",
        "--bench",
        "verify",
    ]);
    run(&mut verify)?;
    // Rate-limit decisions, in process and (with REDIS_URL) through Redis.
    let mut decide = Command::new(&cargo);
    decide.current_dir(&root).args([
        "bench",
        "--quiet",
        "-p",
        "gateway-limits",
        "--bench",
        "decide",
    ]);
    run(&mut decide)
}
