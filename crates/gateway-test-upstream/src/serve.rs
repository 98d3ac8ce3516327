//! Serving [`TestUpstream`]: Streamable HTTP at `/mcp` through actix-web and
//! rmcp-actix-web (stateful sessions; 2026-07-28 requests are served statelessly by rmcp),
//! and stdio.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use actix_web::{App, HttpServer, dev::ServerHandle};
use anyhow::Context as _;
use rmcp::{
    ServiceExt as _, transport::streamable_http_server::session::local::LocalSessionManager,
};
use rmcp_actix_web::transport::StreamableHttpService;
use tokio_util::sync::CancellationToken;

use crate::TestUpstream;

/// A running Streamable HTTP test upstream. Stop it with [`HttpUpstream::stop`].
#[derive(Debug)]
pub struct HttpUpstream {
    addr: SocketAddr,
    upstream: TestUpstream,
    handle: ServerHandle,
    sessions: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpUpstream {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp` (or the bound address when it is
    /// neither loopback nor unspecified).
    pub fn url(&self) -> String {
        let ip = self.addr.ip();
        let host = if ip.is_loopback() || ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        };
        format!("http://{}/mcp", SocketAddr::new(host, self.port()))
    }

    /// The served upstream (shares dynamic tools and peers with every session).
    pub fn upstream(&self) -> &TestUpstream {
        &self.upstream
    }

    /// Every `Authorization` header value that reached this upstream.
    pub fn authorizations_seen(&self) -> Vec<String> {
        self.upstream
            .authorizations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Ends every MCP session, stops the HTTP server and waits for it to finish.
    pub async fn stop(self) {
        self.sessions.cancel();
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "test upstream HTTP server failed"),
            Err(error) => tracing::warn!(%error, "test upstream HTTP server task failed"),
        }
    }
}

/// Serves a new [`TestUpstream`] over Streamable HTTP at `http://ADDR/mcp`; port 0 picks
/// a free port (see [`HttpUpstream::port`]).
///
/// # Errors
///
/// Fails when the address cannot be bound.
pub async fn serve_http(addr: SocketAddr) -> anyhow::Result<HttpUpstream> {
    serve_http_with(TestUpstream::new(), addr).await
}

/// Serves `upstream` over Streamable HTTP at `http://ADDR/mcp`, in stateful (session)
/// mode. Each session gets [`TestUpstream::new_session`]. The `Host` header must name the
/// bound port on `127.0.0.1`, `localhost`, `[::1]` or the bound IP; others get 403.
///
/// # Errors
///
/// Fails when the address cannot be bound.
pub async fn serve_http_with(
    upstream: TestUpstream,
    addr: SocketAddr,
) -> anyhow::Result<HttpUpstream> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let sessions = CancellationToken::new();
    let factory = upstream.clone();
    let mcp = StreamableHttpService::builder()
        .service_factory(Arc::new(move || Ok(factory.new_session())))
        .session_manager(Arc::new(LocalSessionManager::default()))
        .stateful_mode(true)
        .allowed_hosts(allowed_hosts(addr))
        .cancellation_token(sessions.clone())
        .build();
    let seen = upstream.authorizations.clone();
    let bearer_check = upstream.bearer_check.clone();
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        let bearer_check = bearer_check.clone();
        App::new()
            // Records every Authorization header that reaches the upstream, so tests
            // can show that a client's token never does; refuses tokens not accepted.
            .wrap_fn(move |request, service| {
                let authorization = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(value) = &authorization {
                    seen.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(value.clone());
                }
                let refused = !bearer_check.admits(authorization.as_deref());
                let response = (!refused).then(|| actix_web::dev::Service::call(service, request));
                async move {
                    match response {
                        Some(response) => response.await,
                        None => Err(actix_web::error::InternalError::from_response(
                            "token refused",
                            actix_web::HttpResponse::Unauthorized()
                                .insert_header((
                                    "WWW-Authenticate",
                                    "Bearer error=\"invalid_token\"",
                                ))
                                .finish(),
                        )
                        .into()),
                    }
                }
            })
            .service(mcp.clone().scope_with_path("/mcp"))
    })
    // No Nagle: a benchmark of the gateway must not measure delayed ACKs.
    .on_connect(|connection, _| {
        if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = stream.set_nodelay(true);
        }
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)
    .with_context(|| format!("cannot serve on {addr}"))?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "test upstream serving Streamable HTTP at /mcp");
    Ok(HttpUpstream {
        addr,
        upstream,
        handle,
        sessions,
        task,
    })
}

/// `Host` values accepted for a server bound to `addr`.
fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        hosts.push(addr.to_string());
    }
    hosts
}

/// Serves a new [`TestUpstream`] on stdin/stdout until the client disconnects.
///
/// # Errors
///
/// Fails when initialization fails or the service task panics.
pub async fn serve_stdio() -> anyhow::Result<()> {
    serve_stdio_with(TestUpstream::new()).await
}

/// Serves `upstream` on stdin/stdout until the client disconnects.
///
/// # Errors
///
/// Fails when initialization fails or the service task panics.
pub async fn serve_stdio_with(upstream: TestUpstream) -> anyhow::Result<()> {
    let running = upstream
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP initialization over stdio failed")?;
    let reason = running.waiting().await.context("MCP service task failed")?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}
