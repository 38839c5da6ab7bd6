//! The retry policy of one stream's opening call: `options.maxRetries` attempts after the first
//! (else what the SDK was configured with, `AWS_MAX_ATTEMPTS`), exponential backoff with jitter
//! (the SDK's standard strategy), and no wait longer than
//! `options.maxRetryDelayMs`. When Bedrock asks for a longer wait (`x-amz-retry-after`, or an HTTP
//! `Retry-After`), the SDK would shorten it to the cap and retry too early, into the same
//! throttle; the call fails at once instead and the error carries the wait it was asked for.

use std::time::Duration;

use aws_sdk_bedrockruntime::config::interceptors::InterceptorContext;
use aws_sdk_bedrockruntime::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_smithy_runtime_api::client::retries::classifiers::{RetryClassifierPriority, RetryReason};
use aws_smithy_runtime_api::http::Headers;

pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
/// The SDK's own default (one try and two retries), for a client built without a retry config.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `None`: the client's configured attempts.
    pub max_retries: Option<u32>,
    pub max_delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_retries: None, max_delay: DEFAULT_MAX_DELAY }
    }
}

impl Policy {
    /// The per-call config override that applies this policy over the client's `configured` one.
    pub fn config(&self, configured: Option<&RetryConfig>) -> aws_sdk_bedrockruntime::config::Builder {
        let attempts = match self.max_retries {
            Some(n) => n + 1,
            None => configured.map_or(DEFAULT_MAX_ATTEMPTS, RetryConfig::max_attempts),
        };
        let retry = RetryConfig::standard()
            .with_max_attempts(attempts)
            .with_initial_backoff(Duration::from_millis(250).min(self.max_delay))
            .with_max_backoff(self.max_delay);
        aws_sdk_bedrockruntime::config::Builder::default().retry_config(retry).retry_classifier(WaitCap { max: self.max_delay })
    }
}

/// The wait a response asks for: `x-amz-retry-after` in milliseconds, else `Retry-After` in
/// seconds (the HTTP-date form is not used by AWS services and is ignored).
pub fn requested_wait(headers: &Headers) -> Option<Duration> {
    let number = |name: &str| headers.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    number("x-amz-retry-after").map(Duration::from_millis).or_else(|| number("retry-after").map(Duration::from_secs))
}

/// Runs after the SDK's own classifiers: a retryable answer that asks for a wait beyond the cap
/// is not retried; a `Retry-After` the SDK does not read becomes the retry's delay.
#[derive(Debug)]
struct WaitCap {
    max: Duration,
}

impl ClassifyRetry for WaitCap {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let RetryAction::RetryIndicated(RetryReason::RetryableError { kind, retry_after }) = previous else {
            return RetryAction::NoActionIndicated;
        };
        let Some(wait) = retry_after.or_else(|| ctx.response().and_then(|r| requested_wait(r.headers()))) else {
            return RetryAction::NoActionIndicated;
        };
        if wait > self.max {
            return RetryAction::RetryForbidden;
        }
        RetryAction::RetryIndicated(RetryReason::RetryableError { kind: *kind, retry_after: Some(wait) })
    }

    fn name(&self) -> &'static str {
        "bedrock-plugin maxRetryDelayMs"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After every classifier the SDK installs (the AWS error-code one runs before the
        // transient-error one), so `previous` is their verdict.
        RetryClassifierPriority::run_after(RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier()))
    }
}
