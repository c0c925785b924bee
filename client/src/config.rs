//! Client configuration: where the nodes are and how long to keep trying.

use tonic::transport::Endpoint;

use crate::batcher::BatchConfig;
use crate::error::ClientError;
use crate::proto::ErrorCode;

/// Bound on the endpoint list, given or learnt from leader hints: a cluster is a handful of
/// nodes, so more than this means a hint loop or a misconfiguration.
pub const ENDPOINTS_MAX: usize = 64;

/// How the client reaches the cluster and how long it retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// gRPC endpoints of the nodes, "host:port" or "http://host:port". Any node will do: a node
    /// that does not lead a shard answers NOT_LEADER with a hint and the client follows it.
    pub endpoints: Vec<String>,
    /// Limit for one attempt (and for opening its connection). After it the outcome is
    /// unknown and the next endpoint is tried with the same request id.
    pub attempt_timeout_ms: u64,
    /// HTTP/2 keepalive: a connection silent this long (milliseconds) is pinged, and one
    /// that answers no ping within `attempt_timeout_ms` is closed, so the calls and the
    /// batching stream on a node that stopped answering without a reset (paused, cut off by
    /// a firewall, its host gone) fail at once and the next ones reconnect; without pings
    /// they would wait until TCP gives up, minutes later. 0 turns pings off.
    pub keepalive_ms: u64,
    /// Limit for the whole call, retries included. A leader election takes a few hundred ms,
    /// so the default leaves room for several.
    pub deadline_ms: u64,
    /// First pause between attempts; it doubles per retry (with jitter) up to `backoff_ms_max`.
    pub backoff_ms_initial: u64,
    /// Longest pause between attempts.
    pub backoff_ms_max: u64,
    /// Opt-in automatic batching of mutating calls (`batcher.rs`); None: one RPC per call.
    pub batch: Option<BatchConfig>,
    /// Shard-aware routing (`route.rs`, on by default): each call starts at the node that
    /// leads its home shard, as the Topology RPC last said, which saves the node a forwarding
    /// hop. Off: calls start at the endpoint that answered last, and nodes forward.
    pub routing: bool,
}

impl Default for ClientConfig {
    /// No endpoints (fill them in); the documented default timings.
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            attempt_timeout_ms: 2_000,
            keepalive_ms: 1_000,
            deadline_ms: 15_000,
            backoff_ms_initial: 20,
            backoff_ms_max: 500,
            batch: None,
            routing: true,
        }
    }
}

impl ClientConfig {
    /// Default timings with the endpoints of a comma-separated list such as
    /// "127.0.0.1:7001,127.0.0.1:7002". Blanks around entries are ignored.
    pub fn from_endpoints(list: &str) -> Result<ClientConfig, ClientError> {
        let endpoints = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let config = ClientConfig {
            endpoints,
            ..ClientConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Turns on automatic batching: concurrent purchase, gift, cash_out, post_payout,
    /// void_payout and refund calls share frames of up to `max_batch` commands (1..=8192) on
    /// one SubmitStream per endpoint, each answered as soon as it is done; `linger_us` (at
    /// most 100 ms) waits for more commands before sending a frame, 0 sends what is queued
    /// at once.
    pub fn batching(mut self, max_batch: usize, linger_us: u64) -> ClientConfig {
        self.batch = Some(BatchConfig {
            max_batch,
            linger_us,
        });
        self
    }

    /// Checks the list is non-empty, bounded and every entry is a valid URI, and that the
    /// timings are usable (non-zero limits, initial backoff not above the maximum).
    pub fn validate(&self) -> Result<(), ClientError> {
        let invalid = |m: String| Err(ClientError::local(ErrorCode::InvalidArgument, m));
        if self.endpoints.is_empty() {
            return invalid("no endpoints given".into());
        }
        if self.endpoints.len() > ENDPOINTS_MAX {
            return invalid(format!("more than {ENDPOINTS_MAX} endpoints"));
        }
        for e in &self.endpoints {
            normalize_endpoint(e)?;
        }
        if self.attempt_timeout_ms == 0 || self.deadline_ms == 0 {
            return invalid("attempt_timeout_ms and deadline_ms must be > 0".into());
        }
        if self.backoff_ms_initial > self.backoff_ms_max {
            return invalid("backoff_ms_initial must be <= backoff_ms_max".into());
        }
        if let Some(batch) = &self.batch {
            batch.validate()?;
        }
        Ok(())
    }
}

/// "host:port" → "http://host:port"; an URI with a scheme is kept. Errors on anything tonic
/// cannot parse or that has no host, so a typo fails at startup rather than at the first call.
pub fn normalize_endpoint(raw: &str) -> Result<String, ClientError> {
    let raw = raw.trim();
    let uri = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let bad = || ClientError::local(ErrorCode::InvalidArgument, format!("bad endpoint {raw:?}"));
    let endpoint = Endpoint::from_shared(uri.clone()).map_err(|_| bad())?;
    match endpoint.uri().host() {
        Some(h) if !h.is_empty() => Ok(uri.trim_end_matches('/').to_string()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_comma_separated_list() {
        let c = ClientConfig::from_endpoints(" 127.0.0.1:7001, http://n2:7002 ,,").unwrap();
        assert_eq!(c.endpoints, vec!["127.0.0.1:7001", "http://n2:7002"]);
        assert_eq!(c.attempt_timeout_ms, 2_000);
        assert_eq!(c.deadline_ms, 15_000);
        assert_eq!(c.backoff_ms_initial, 20);
        assert_eq!(c.backoff_ms_max, 500);
    }

    #[test]
    fn rejects_empty_and_bad() {
        assert!(ClientConfig::from_endpoints("").is_err());
        assert!(ClientConfig::from_endpoints(" , ").is_err());
        let e = ClientConfig::from_endpoints("127.0.0.1:7001,not a uri").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("not a uri"), "{e}");
        assert!(ClientConfig::from_endpoints("http://").is_err());
    }

    #[test]
    fn rejects_bad_timings() {
        let mut c = ClientConfig::from_endpoints("a:1").unwrap();
        c.deadline_ms = 0;
        assert!(c.validate().is_err());
        let mut c = ClientConfig::from_endpoints("a:1").unwrap();
        c.backoff_ms_initial = 1_000;
        assert!(c.validate().is_err());
    }

    #[test]
    fn batching_is_opt_in_and_bounded() {
        let c = ClientConfig::from_endpoints("a:1").unwrap();
        assert_eq!(c.batch, None);
        assert!(c.clone().batching(256, 0).validate().is_ok());
        assert!(c.clone().batching(8_192, 100_000).validate().is_ok());
        assert!(c.clone().batching(0, 0).validate().is_err());
        assert!(c.clone().batching(8_193, 0).validate().is_err());
        assert!(c.batching(1, 100_001).validate().is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize_endpoint("n1:7001").unwrap(), "http://n1:7001");
        assert_eq!(
            normalize_endpoint("http://n1:7001/").unwrap(),
            "http://n1:7001"
        );
        assert_eq!(
            normalize_endpoint("https://n1:7001").unwrap(),
            "https://n1:7001"
        );
    }
}
