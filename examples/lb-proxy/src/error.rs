//! The proxy's error type.

use health_monitor::MonitorError;

/// A proxy or one of its upstreams could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// An upstream's origin is not one the proxy can forward to.
    #[error("invalid upstream {url:?}: {reason}")]
    Upstream {
        /// The origin as given.
        url: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A proxy needs at least one upstream.
    #[error("no upstreams")]
    NoUpstreams,
    /// [`Proxy::try_new`](crate::Proxy::try_new) outside a tokio runtime.
    #[error("the proxy must be created inside a tokio runtime")]
    NoRuntime,
    /// An upstream's monitor could not be built or started (the binary's use).
    #[error("cannot set up the monitor of {upstream:?}")]
    Monitor {
        /// The upstream's origin.
        upstream: String,
        /// Why.
        #[source]
        source: MonitorError,
    },
}
