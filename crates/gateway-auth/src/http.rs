//! The HTTP client behind every call gateway-auth makes to an authorization server
//! (discovery, key sets, token requests): the process's reqwest and TLS stack, a
//! timeout, no redirects (a secret or a key set must not be sent or taken from
//! elsewhere), and answers capped so a broken or hostile server cannot make the
//! gateway buffer without bound.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest answer read from an authorization server.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A reqwest client configured for authorization servers.
#[derive(Clone)]
pub struct AuthHttp {
    client: reqwest::Client,
}

/// A request the oauth2 and openidconnect crates hand to their HTTP client.
type OAuthFuture =
    Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, std::io::Error>> + Send>>;

impl AuthHttp {
    /// A client giving up after `timeout` per request.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                format!("cannot build the HTTP client for the authorization server: {e}")
            })?;
        Ok(Self { client })
    }

    /// The body of a GET answered with a success status, capped.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        read_capped(response).await
    }

    /// The client as the oauth2 / openidconnect crates call it.
    pub fn for_oauth(&self) -> impl Fn(oauth2::HttpRequest) -> OAuthFuture + use<> {
        let client = self.client.clone();
        move |request: oauth2::HttpRequest| {
            let client = client.clone();
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(std::io::Error::other)?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = read_capped(response).await.map_err(std::io::Error::other)?;
                let mut built = http::Response::builder()
                    .status(status)
                    .body(body)
                    .map_err(std::io::Error::other)?;
                *built.headers_mut() = headers;
                Ok(built)
            })
        }
    }
}

/// Reads a response body of at most [`MAX_ANSWER_BYTES`].
async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, String> {
    read_at_most(response, MAX_ANSWER_BYTES).await
}

/// Reads a response body of at most `limit` bytes, refusing a larger one while reading.
pub(crate) async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
