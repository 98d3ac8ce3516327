//! The composition root of the MCP registry gateway: command line, configuration,
//! telemetry, wiring of adapters into services, and the lifespan of the process.
//!
//! Architecture invariant: no business logic lives here; this crate only reads
//! settings, builds adapters, hands them to services and starts/stops them in order.

pub mod cli;
pub mod config;
pub mod import;
pub mod startup;
pub mod telemetry;

pub use config::{Overrides, Settings};
pub use startup::{Application, StartupError};
