//! What the sink knows of the client and the cluster: fatal errors, client errors, whether
//! the brokers answer and every routed topic exists.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::Producer;

use super::Sink;

impl Sink {
    /// Test hook (feature `testkit`): makes librdkafka raise a fatal error on this producer
    /// through its own `rd_kafka_test_fatal_error`, which exists because real fatal errors of
    /// the idempotent producer cannot be provoked on demand. Everything after (the error event,
    /// our callback, health, exit) is the production path.
    #[cfg(feature = "testkit")]
    #[allow(unsafe_code, reason = "FFI call into librdkafka's test hook")]
    pub fn inject_fatal_error(&self, reason: &str) {
        let reason = std::ffi::CString::new(reason).unwrap_or_default();
        let code = rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
        // SAFETY: the client pointer is valid while `self` holds the producer, and `reason` is a
        // NUL-terminated string that outlives the call (librdkafka copies it).
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.inner.producer.client().native_ptr(),
                code,
                reason.as_ptr(),
            );
        }
    }

    /// If librdkafka is in a fatal state (the producer is unusable: fenced, out-of-order
    /// sequence, …), records it in health, fires the fatal token (the runtime exits 1) and
    /// returns the error.
    pub fn check_fatal(&self) -> Option<String> {
        let (code, reason) = self.inner.producer.client().fatal_error()?;
        let message = format!("fatal Kafka error ({code:?}): {reason}");
        if !self.ctx().fatal.is_cancelled() {
            tracing::error!(error = %message, "the Kafka producer is unusable; stopping");
        }
        self.ctx().health.set_fatal(message.clone());
        self.ctx().fatal.cancel();
        Some(message)
    }

    /// Resolves at the next client error reported by librdkafka (or at once if one came since
    /// the last call).
    pub async fn client_error(&self) {
        self.ctx().errors.notified().await;
    }

    /// True once any broker answered one of [`Sink::check_kafka`]'s metadata requests.
    pub fn broker_answered(&self) -> bool {
        self.ctx().answered.load(Ordering::Acquire)
    }

    /// Asks the brokers for metadata and checks that every routed topic exists. Updates health
    /// and returns the outcome.
    pub async fn check_kafka(&self, timeout: Duration) -> Result<String, String> {
        let sink = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let md = sink
                .inner
                .producer
                .client()
                .fetch_metadata(None, timeout)
                .map_err(|e| format!("metadata request failed: {e}"))?;
            sink.ctx().answered.store(true, Ordering::Release);
            let wanted: Vec<String> = {
                let routes = sink.ctx().routes.read().unwrap_or_else(PoisonError::into_inner);
                let mut t: Vec<String> = routes.iter().map(|r| r.topic.clone()).collect();
                t.sort();
                t.dedup();
                t
            };
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !md.topics().iter().any(|t| t.name() == w.as_str() && t.error().is_none()))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                Ok(format!("{} broker(s), {} topic(s) present", md.brokers().len(), wanted.len()))
            } else {
                Err(format!("missing topics: {}", missing.join(", ")))
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("check panicked: {e}")));
        let (Ok(detail) | Err(detail)) = &outcome;
        self.ctx().set_kafka(outcome.is_ok(), detail.clone());
        outcome
    }
}
