//! The REST face of the gateway, assembled by [`build_app`].

mod app;
mod audit;
pub mod auth;
mod body;
pub mod cors;
pub(crate) mod dto;
pub mod ip_limit;
mod middleware;
pub mod oauth;
mod openapi;
mod problem;
pub(crate) mod routes;

pub use app::{ApiState, HttpSettings, ServiceInfo, build_app};
pub use problem::{ApiError, ProblemKind};
