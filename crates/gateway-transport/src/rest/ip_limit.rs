//! Per-client-address limits on HTTP requests (governor's keyed GCRA, one budget per
//! address, in this process): on `/api/v1` and `/oauth/*`, and on requests refused for lack of valid
//! credentials (so guessing tokens or keys is slow). Over the limit: 429 with
//! `Retry-After` and `RateLimit-*` headers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpResponse, ResponseError};
use gateway_domain::Quota;

use super::app::ApiState;
use super::problem::{ApiError, ProblemKind};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

/// Addresses kept before idle ones are forgotten (at most once a second).
const RETAIN_AT: usize = 100_000;

/// One GCRA budget per client address (IPv6 per /64: one host gets a whole /64).
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    quota: Quota,
    /// Addresses whose budget is spent, until when: checked without charging.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    last_prune: Mutex<Instant>,
}

/// The key of an address: itself for IPv4, its /64 network for IPv6.
fn key_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl std::fmt::Debug for IpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("quota", &self.quota)
            .finish()
    }
}

impl IpLimiter {
    /// A limiter giving each address `quota`.
    pub fn new(quota: Quota) -> Self {
        let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
        let governor_quota = governor::Quota::with_period(quota.emission_interval())
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(governor_quota),
            quota,
            blocked: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// How long `address` must still wait, if its budget is spent (charges nothing).
    pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = blocked.get(&key_of(address))?;
        until.checked_duration_since(Instant::now())
    }

    /// The quota each address gets.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// `Ok(())` when `address` may make a request now, or how long it must wait.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.prune();
        let key = key_of(address);
        self.limiter
            .check_key(&key)
            .map_err(|refused| refused.wait_time_from(DefaultClock::default().now()))
    }

    /// Charges a refused request of `address`; returns the wait if its budget is now
    /// spent (and remembers it, for [`IpLimiter::blocked_for`]).
    pub fn charge_refusal(&self, address: IpAddr) -> Option<Duration> {
        let wait = self.check(address).err()?;
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key_of(address), Instant::now() + wait);
        Some(wait)
    }

    /// Forgets idle addresses, at most once a second and only when there are many.
    fn prune(&self) {
        if self.limiter.len() <= RETAIN_AT {
            return;
        }
        let mut last = self
            .last_prune
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        self.limiter.retain_recent();
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }
}

/// The per-address limits of the HTTP face.
#[derive(Debug, Default)]
pub struct IpLimits {
    /// Every `/api/v1` request.
    pub api: Option<IpLimiter>,
    /// Requests refused for missing or invalid credentials (with authentication on).
    pub unauthenticated: Option<IpLimiter>,
    /// Take the client address from `Forwarded` / `X-Forwarded-For` (only behind a
    /// proxy that sets them; otherwise clients could pick any address).
    pub trust_forwarded_for: bool,
}

impl IpLimits {
    /// The client's address.
    pub(crate) fn client_of(&self, request: &ServiceRequest) -> Option<IpAddr> {
        client_address(request.request(), self.trust_forwarded_for)
    }

    /// The 429 for `limiter` when `request`'s address is over it.
    pub(crate) fn refusal(
        &self,
        limiter: &IpLimiter,
        request: &ServiceRequest,
        what: &str,
    ) -> Option<HttpResponse> {
        let address = self.client_of(request)?;
        let wait = limiter.check(address).err()?;
        Some(too_many(limiter.quota(), wait, what))
    }
}

/// The client's address: the TCP peer, or with `trust_forwarded_for` the right-most
/// `X-Forwarded-For` entry — the one the proxy in front added; entries to its left
/// were written by the client and prove nothing.
pub fn client_address(
    request: &actix_web::HttpRequest,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(address) = request
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .last()
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok())
    {
        return Some(address);
    }
    request.peer_addr().map(|addr| addr.ip())
}

/// 429 problem+json with `Retry-After` (whole seconds, rounded up) and the
/// `RateLimit-*` fields of the IETF draft.
pub(crate) fn too_many(quota: Quota, wait: Duration, what: &str) -> HttpResponse {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        ProblemKind::RateLimited,
        format!(
            "too many {what} from this address: {} per {} s (bursts of {}); retry in {seconds} s",
            quota.rate, quota.period_secs, quota.burst
        ),
    )
    .error_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
            headers.insert(
                actix_web::http::header::HeaderName::from_static(name),
                value,
            );
        }
    };
    set("retry-after", seconds.to_string());
    set("ratelimit-limit", quota.burst.to_string());
    set("ratelimit-remaining", "0".into());
    set("ratelimit-reset", seconds.to_string());
    set(
        "ratelimit-policy",
        format!("{};w={}", quota.rate, quota.period_secs),
    );
    debug_assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    response
}

/// Limits `/api/v1` and `/v0.1` requests per client address (before authentication,
/// so the limit also shields it).
pub(crate) async fn api_ip_limit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // The registry API, and the OAuth façade (registration and token requests cost
    // the store a write each).
    let path = request.match_info().as_str();
    let api = crate::rest::audit::is_api(path) || path.starts_with("/oauth/");
    let refusal = request
        .app_data::<Data<ApiState>>()
        .filter(|_| api)
        .and_then(|state| {
            let limits = &state.ip_limits;
            let limiter = limits.api.as_ref()?;
            let refusal = limits.refusal(limiter, &request, "requests")?;
            state.metrics.rate_limited.with_label_values(&["ip"]).inc();
            Some(refusal)
        });
    match refusal {
        Some(response) => Ok(request.into_response(response).map_into_right_body()),
        None => next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_peer_or_the_proxy_s_entry() {
        let request = actix_web::test::TestRequest::default()
            .peer_addr("10.1.1.1:5000".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "6.6.6.6, 203.0.113.7"))
            .to_http_request();
        let peer: IpAddr = "10.1.1.1".parse().expect("ip");
        assert_eq!(client_address(&request, false), Some(peer));
        // The right-most entry is the one the proxy added; the client wrote 6.6.6.6.
        let proxied: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(client_address(&request, true), Some(proxied));
        let garbage = actix_web::test::TestRequest::default()
            .peer_addr("10.1.1.1:5000".parse().expect("addr"))
            .insert_header(("x-forwarded-for", "not-an-address"))
            .to_http_request();
        assert_eq!(client_address(&garbage, true), Some(peer));
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let limiter = IpLimiter::new(Quota::new(1, 60, 1).expect("quota"));
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(b).is_err(), "same /64");
        assert!(limiter.check(other).is_ok());
        assert!(limiter.charge_refusal(a).is_some());
        assert!(limiter.blocked_for(b).is_some());
        assert!(limiter.blocked_for(other).is_none());
    }

    #[test]
    fn each_address_gets_its_burst() {
        let limiter = IpLimiter::new(Quota::new(1, 60, 3).expect("quota"));
        let (a, b) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).expect_err("over the burst");
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(limiter.check(b).is_ok());
    }
}
