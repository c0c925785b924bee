//! The connection pool and the one retry loop every call goes through.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::batcher::Batcher;
use crate::config::{normalize_endpoint, ClientConfig, ENDPOINTS_MAX};
use crate::error::ClientError;
use crate::proto::ErrorCode;
use crate::retry::{decide, outcome_unknown, Backoff, Step};
use crate::route::Topology;

/// Bound on attempts per call, on top of the deadline: with a zero backoff and nodes that
/// refuse instantly, the deadline alone would allow a busy loop of thousands of attempts.
pub const ATTEMPTS_MAX: u32 = 200;

/// A retry is not started with less time than this left before the deadline: an attempt
/// cut off by the deadline turns a known failure (nothing applied) into an unknown outcome,
/// so one that could hardly get an answer is not worth that.
pub const ATTEMPT_MS_MIN: u64 = 50;

/// A handle to the cluster. Cheap to clone (one `Arc`); clones share the connections and the
/// knowledge of which endpoint answered last, so share one per process.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// Configured endpoints first, then ones learnt from leader hints (at most ENDPOINTS_MAX).
    /// A std lock: it is held for a lookup or a push, never across an await.
    nodes: RwLock<Vec<Node>>,
    /// Index in `nodes` of the last endpoint that answered: where the next call starts, so a
    /// client that found the leader keeps talking to it.
    preferred: AtomicUsize,
    /// Present when `config.batch` is set: mutating calls then share SubmitStream frames.
    batcher: Option<Batcher>,
    routing: RoutingState,
}

/// Shard-aware routing's knowledge (`route.rs`).
#[derive(Debug, Default)]
pub(crate) struct RoutingState {
    /// A std lock: held to read or swap the Arc, never across an await.
    pub(crate) topology: RwLock<Option<Arc<Topology>>>,
    /// A refresh is under way (at most one per client).
    pub(crate) refreshing: AtomicBool,
}

/// One endpoint: its normalized URI and its (shared, multiplexed) channel.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) uri: String,
    pub(crate) channel: Channel,
}

/// A failed attempt: the error, and whether the command may have been applied anyway.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) err: ClientError,
    /// True if the outcome is unknown (see `retry::outcome_unknown`).
    pub(crate) unknown: bool,
}

impl Failure {
    /// A status answered by (or made by the transport for) the endpoint `uri`.
    pub(crate) fn from_status(status: &Status, uri: &str) -> Failure {
        let err = ClientError::from_status(status, Some(uri));
        let unknown = outcome_unknown(status, &err);
        Failure { err, unknown }
    }

    /// No answer within `limit`: the request may have landed.
    pub(crate) fn unanswered(uri: &str, limit: Duration) -> Failure {
        Failure {
            err: attempt_timeout(uri, limit),
            unknown: true,
        }
    }
}

impl Client {
    /// Validates `config` and prepares one lazily connected channel per endpoint: nothing is
    /// dialled until the first call, so a client can be built while nodes are still down.
    ///
    /// # Panics
    /// If called outside a Tokio runtime (tonic spawns each channel's worker task).
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let mut nodes = Vec::with_capacity(config.endpoints.len());
        for raw in &config.endpoints {
            let uri = normalize_endpoint(raw)?;
            if !nodes.iter().any(|n: &Node| n.uri == uri) {
                nodes.push(new_node(uri, &config)?);
            }
        }
        let inner = Inner {
            nodes: RwLock::new(nodes),
            preferred: AtomicUsize::new(0),
            batcher: config.batch.map(Batcher::new),
            routing: RoutingState::default(),
            config,
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The endpoints known now (configured ones, then learnt ones), normalized to URIs.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.uri.clone()).collect()
    }

    /// A fresh request id (24 chars of [0-9A-Za-z]: the time in ms, then 16 random ones). Choose it yourself when you need
    /// to know it, e.g. to log it or retry the call later after a TIMEOUT.
    pub fn new_request_id() -> String {
        crate::request_id::new_request_id()
    }

    /// Sends `req` until a definite answer, following leader hints and rotating over the
    /// endpoints with backoff (the table in `retry.rs`). Every attempt sends the same request,
    /// so the same request id. Stops at the deadline with the last error, turned into TIMEOUT
    /// if some attempt may have been applied. The first attempt goes to endpoint `start` (the
    /// home shard's leader, from `route`), or where calls usually start if None.
    pub(crate) async fn call_at<Req, Rep, F, Fut>(&self, start: Option<usize>, req: Req, rpc: F) -> Result<Rep, ClientError>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Rep>, Status>>,
    {
        self.call_with(start, req, |node, req, limit| {
            let mut request = tonic::Request::new(req);
            request.set_timeout(limit);
            let reply = rpc(node.channel, request);
            async move {
                match tokio::time::timeout(limit, reply).await {
                    Ok(Ok(reply)) => Ok(reply.into_inner()),
                    Ok(Err(status)) => Err(Failure::from_status(&status, &node.uri)),
                    Err(_elapsed) => Err(Failure::unanswered(&node.uri, limit)),
                }
            }
        })
        .await
    }

    /// The retry loop of [`Client::call_at`] over any way of making one attempt: a direct RPC,
    /// or a seat in the endpoint's batch (`batcher.rs`). `attempt` gets the endpoint, the
    /// request (always the same one) and the time the attempt may take. The first attempt
    /// goes to `start` if given (the home shard's leader), else to the endpoint that
    /// answered last; a routed call that succeeds leaves that choice alone.
    pub(crate) async fn call_with<Req, Rep, F, Fut>(
        &self,
        start: Option<usize>,
        req: Req,
        attempt: F,
    ) -> Result<Rep, ClientError>
    where
        Req: Clone,
        F: Fn(Node, Req, Duration) -> Fut,
        Fut: Future<Output = Result<Rep, Failure>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + ms(config.deadline_ms);
        let mut backoff = Backoff::new(config.backoff_ms_initial, config.backoff_ms_max);
        let routed = start.is_some();
        let mut index = start.unwrap_or_else(|| self.inner.preferred.load(Ordering::Relaxed));
        let mut unknown = false;
        let mut followed_hint = false;
        for _ in 0..ATTEMPTS_MAX {
            let node = self.node(index);
            let limit = deadline
                .saturating_duration_since(Instant::now())
                .min(ms(config.attempt_timeout_ms));
            let err = match attempt(node, req.clone(), limit).await {
                Ok(reply) => {
                    if !routed {
                        self.inner.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok(reply);
                }
                Err(failure) => {
                    unknown |= failure.unknown;
                    failure.err
                }
            };
            let pause = match decide(&err) {
                Step::Stop => {
                    self.inner.preferred.store(index, Ordering::Relaxed);
                    return Err(err);
                }
                Step::Leader(hint) => match self.index_of_or_add(&hint) {
                    // The first hint is followed at once; a chain of hints (stale leaders
                    // pointing at each other during an election) backs off like any retry.
                    Some(i) => {
                        index = i;
                        let pause = if followed_hint {
                            backoff.next_pause()
                        } else {
                            Duration::ZERO
                        };
                        followed_hint = true;
                        pause
                    }
                    None => {
                        index = self.next_index(index);
                        backoff.next_pause()
                    }
                },
                Step::Rotate => {
                    followed_hint = false;
                    index = self.next_index(index);
                    backoff.next_pause()
                }
            };
            if Instant::now() + pause + ms(ATTEMPT_MS_MIN) >= deadline {
                return Err(final_error(err, unknown));
            }
            tokio::time::sleep(pause).await;
        }
        Err(final_error(
            ClientError::local(
                ErrorCode::Unavailable,
                format!("no answer in {ATTEMPTS_MAX} attempts"),
            ),
            unknown,
        ))
    }

    /// The endpoint the next call starts at (the last one that answered).
    pub(crate) fn preferred_uri(&self) -> String {
        self.node(self.inner.preferred.load(Ordering::Relaxed)).uri
    }

    /// Index of the endpoint an unrouted call starts at.
    pub(crate) fn preferred_index(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed)
    }

    pub(crate) fn routing_state(&self) -> &RoutingState {
        &self.inner.routing
    }

    /// The automatic batcher, if the configuration asked for one.
    pub(crate) fn batcher(&self) -> Option<&Batcher> {
        self.inner.batcher.as_ref()
    }

    fn nodes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Node>> {
        self.inner
            .nodes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The endpoint at `index` (modulo the number of endpoints).
    pub(crate) fn node(&self, index: usize) -> Node {
        let nodes = self.nodes();
        nodes[index % nodes.len()].clone()
    }

    fn next_index(&self, index: usize) -> usize {
        (index + 1) % self.nodes().len()
    }

    /// Index of the hinted endpoint (or a member's address), added if new. None if it is not
    /// a valid endpoint or the bound is reached: the caller then rotates instead.
    pub(crate) fn index_of_or_add(&self, hint: &str) -> Option<usize> {
        let uri = normalize_endpoint(hint).ok()?;
        if let Some(i) = self.nodes().iter().position(|n| n.uri == uri) {
            return Some(i);
        }
        let mut nodes = self
            .inner
            .nodes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(i) = nodes.iter().position(|n| n.uri == uri) {
            return Some(i);
        }
        if nodes.len() >= ENDPOINTS_MAX {
            return None;
        }
        nodes.push(new_node(uri, &self.inner.config).ok()?);
        Some(nodes.len() - 1)
    }
}

fn new_node(uri: String, config: &ClientConfig) -> Result<Node, ClientError> {
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| ClientError::local(ErrorCode::InvalidArgument, format!("{uri}: {e}")))?
        .connect_timeout(ms(config.attempt_timeout_ms));
    if config.keepalive_ms > 0 {
        endpoint = endpoint
            .http2_keep_alive_interval(ms(config.keepalive_ms))
            .keep_alive_timeout(ms(config.attempt_timeout_ms))
            .keep_alive_while_idle(true);
    }
    Ok(Node {
        uri,
        channel: endpoint.connect_lazy(),
    })
}

fn attempt_timeout(uri: &str, limit: Duration) -> ClientError {
    let mut err = ClientError::local(
        ErrorCode::Timeout,
        format!("no answer from {uri} within {} ms", limit.as_millis()),
    );
    err.endpoint = Some(uri.to_string());
    err
}

/// The error a call ends with. If some attempt may have been applied and the last error is
/// itself "try again", the caller must not conclude "not applied": say TIMEOUT.
pub(crate) fn final_error(last: ClientError, unknown: bool) -> ClientError {
    if !(unknown && last.is_retryable()) {
        return last;
    }
    ClientError {
        code: ErrorCode::Timeout,
        code_name: ErrorCode::Timeout.as_str_name().to_string(),
        message: format!("outcome unknown: retry with the same request id (last error: {last})"),
        leader_hint: None,
        grpc_code: Code::DeadlineExceeded,
        endpoint: last.endpoint,
    }
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_error_says_timeout_only_when_unknown_and_retryable() {
        let unavailable = ClientError::local(ErrorCode::Unavailable, "electing");
        assert_eq!(
            final_error(unavailable.clone(), false).code,
            ErrorCode::Unavailable
        );
        let e = final_error(unavailable, true);
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(
            e.message
                .starts_with("outcome unknown: retry with the same request id"),
            "{e}"
        );
        let definite = ClientError::local(ErrorCode::InsufficientCoins, "poor");
        assert_eq!(
            final_error(definite, true).code,
            ErrorCode::InsufficientCoins
        );
    }

    #[tokio::test]
    async fn learns_hinted_endpoints_once() {
        let client = Client::connect(ClientConfig::from_endpoints("127.0.0.1:1").unwrap()).unwrap();
        assert_eq!(client.index_of_or_add("127.0.0.1:1"), Some(0));
        assert_eq!(client.index_of_or_add("10.0.0.2:7002"), Some(1));
        assert_eq!(client.index_of_or_add("http://10.0.0.2:7002"), Some(1));
        assert_eq!(client.index_of_or_add("not a uri"), None);
        assert_eq!(
            client.endpoints(),
            vec!["http://127.0.0.1:1", "http://10.0.0.2:7002"]
        );
    }
}
