//! The plugin's one error type. Everything inside returns `Error`; the ABI edge maps its `Kind`
//! to a status code and the `{"code", "message", ...}` JSON exactly once (see `ffi::status`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    Config,
    Auth,
    NotFound,
    Throttled,
    Unavailable,
    Cancelled,
    ShuttingDown,
    Internal,
    Timeout,
    /// Bedrock refused the request as invalid (`ValidationException`).
    InvalidRequest,
    /// The prompt does not fit the model's context window (a `ValidationException` that says so):
    /// a gateway compacts and retries.
    ContextOverflow,
    /// The model failed while producing its answer.
    ModelError,
    /// The connection failed or broke off.
    Network,
    /// The stream ended before the model finished its answer (no `messageStop`).
    Truncated,
    /// A guardrail or content filter stopped the answer.
    ContentFiltered,
    TooLarge,
    /// Plugin threads could not be stopped (a host callback never returned).
    Busy,
}

impl Kind {
    /// The stable string code used in error JSON and `error` events.
    pub fn code(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "invalid_argument",
            Kind::Config => "config",
            Kind::Auth => "auth",
            Kind::NotFound => "not_found",
            Kind::Throttled => "throttled",
            Kind::Unavailable => "unavailable",
            Kind::Cancelled => "cancelled",
            Kind::ShuttingDown => "shutting_down",
            Kind::Internal => "internal",
            Kind::Timeout => "timeout",
            Kind::InvalidRequest => "invalid_request",
            Kind::ContextOverflow => "context_overflow",
            Kind::ModelError => "model_error",
            Kind::Network => "network",
            Kind::Truncated => "truncated",
            Kind::ContentFiltered => "content_filtered",
            Kind::TooLarge => "too_large",
            Kind::Busy => "busy",
        }
    }

    /// Whether the same request may succeed if sent again later.
    pub fn default_retryable(self) -> bool {
        matches!(self, Kind::Throttled | Kind::Unavailable | Kind::Timeout | Kind::Network | Kind::Truncated)
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub retryable: bool,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    /// The AWS error type when the error came from Bedrock (`ThrottlingException`, …).
    pub aws_error_type: Option<String>,
    /// The wait Bedrock asked for before a retry, when it named one.
    pub retry_after_ms: Option<u64>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            retryable: kind.default_retryable(),
            http_status: None,
            request_id: None,
            aws_error_type: None,
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Kind::InvalidArgument, message)
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Kind::Internal, message)
    }

    pub fn retryable(mut self, retryable: bool) -> Error {
        self.retryable = retryable;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
