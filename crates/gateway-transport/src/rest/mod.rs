//! The REST face of the gateway, assembled by [`build_app`].

mod app;
mod audit;
pub mod auth;
mod body;
mod dto;
pub mod ip_limit;
mod middleware;
mod openapi;
mod problem;
mod routes;

pub use app::{ApiState, HttpSettings, ServiceInfo, build_app};
pub use problem::{ApiError, ProblemKind};
