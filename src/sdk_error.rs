//! AWS SDK errors → the plugin's typed `Error`, shared by every Bedrock operation. Classification
//! goes by the AWS error type, then the HTTP status; errors raised before any answer (no identity,
//! no connection, timeouts) are told apart by the SDK's error variant. Messages are worded as
//! pi-ai words them, because gateways classify failures by matching `errorMessage`: Bedrock
//! exceptions get pi-ai's prefixes, and the plugin's own retryable failures name what pi's retry
//! logic looks for (network error, connection lost, timed out, ended without).

use crate::error::{Error, Kind};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};

pub type HttpResponse = aws_smithy_runtime_api::http::Response;

/// Kind and retryability of a Bedrock error type.
pub fn classify(aws_type: &str, status: Option<u16>) -> (Kind, bool) {
    match aws_type {
        "ThrottlingException" | "TooManyRequestsException" => (Kind::Throttled, true),
        "ServiceQuotaExceededException" => (Kind::Throttled, false),
        "ModelNotReadyException" => (Kind::Unavailable, true),
        "ServiceUnavailableException" | "InternalServerException" | "InternalFailure" => (Kind::Unavailable, true),
        "ValidationException" | "ConflictException" | "SerializationException" => (Kind::InvalidRequest, false),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => (Kind::Auth, false),
        "ResourceNotFoundException" => (Kind::NotFound, false),
        "ModelErrorException" => (Kind::ModelError, false),
        "ModelStreamErrorException" => (Kind::ModelError, true),
        "ModelTimeoutException" => (Kind::Timeout, true),
        _ => match status {
            Some(401 | 403) => (Kind::Auth, false),
            Some(404) => (Kind::NotFound, false),
            Some(408) => (Kind::Timeout, true),
            Some(429) => (Kind::Throttled, true),
            Some(s) if s >= 500 => (Kind::Unavailable, true),
            Some(s) if s >= 400 => (Kind::InvalidRequest, false),
            _ => (Kind::Internal, false),
        },
    }
}

/// Credentials that were valid once and may be replaced by now (rotated keys, an expired
/// session): worth resolving the identity again and retrying once.
pub fn is_stale_identity(e: &Error) -> bool {
    matches!(e.aws_error_type.as_deref(), Some("ExpiredTokenException" | "ExpiredToken" | "UnrecognizedClientException" | "InvalidClientTokenId"))
}

/// The words pi-ai's Bedrock provider puts before an exception's message; gateways match them
/// (pi's retry logic looks for `server.?error` and `service.?unavailable`, and `isContextOverflow`
/// skips messages that start with `Throttling error:` or `Service unavailable:`). Other exceptions
/// keep their name, as in pi-ai.
fn pi_ai_prefix(aws_type: &str) -> &str {
    match aws_type {
        "InternalServerException" => "Internal server error",
        "ModelStreamErrorException" => "Model stream error",
        "ValidationException" => "Validation error",
        "ThrottlingException" => "Throttling error",
        "ServiceUnavailableException" => "Service unavailable",
        other => other,
    }
}

/// The phrasings Bedrock and its model families use for a prompt beyond the context window
/// (Bedrock's own, Anthropic's, Mistral/OpenAI-style, Nova's, Llama's).
fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "input is too long",
        "prompt is too long",
        "exceeds the context window",
        "exceed context limit",
        "exceeds context limit",
        "model_context_window_exceeded",
        "maximum context length",
        "context length exceeded",
        "too many input tokens",
        "input tokens exceed",
        "exceeds the maximum number of tokens",
        "prompt contains more tokens than",
    ]
    .iter()
    .any(|phrase| m.contains(phrase))
}

pub fn service_error(aws_type: &str, message: Option<&str>, status: Option<u16>, request_id: Option<String>) -> Error {
    let (mut kind, retryable) = classify(aws_type, status);
    if kind == Kind::InvalidRequest && message.is_some_and(is_context_overflow) {
        kind = Kind::ContextOverflow;
    }
    let mut e = Error::new(kind, format!("{}: {}", pi_ai_prefix(aws_type), message.unwrap_or("(no message)"))).retryable(retryable);
    e.http_status = status;
    e.request_id = request_id;
    e.aws_error_type = Some(aws_type.to_string());
    e
}

/// The error and its causes as one line (`DisplayErrorContext` would append a debug dump of the
/// raw response, which is noise in a message meant for operators).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// Errors the SDK raises before any HTTP answer, or when the answer cannot be read.
pub fn transport_error<E: std::error::Error + 'static, R: std::fmt::Debug + 'static>(e: &SdkError<E, R>) -> Error {
    let detail = causes(e);
    let lowered = detail.to_lowercase();
    let about_identity = lowered.contains("credential") || lowered.contains("identity") || lowered.contains("no token") || lowered.contains("bearer");
    match e {
        SdkError::TimeoutError(_) => Error::new(Kind::Timeout, format!("timed out waiting for Bedrock: {detail}")),
        _ if about_identity => Error::new(Kind::Auth, format!("no usable AWS credentials: {detail}")),
        SdkError::DispatchFailure(d) if d.is_timeout() => Error::new(Kind::Timeout, format!("connecting to Bedrock timed out: {detail}")),
        SdkError::DispatchFailure(_) => Error::new(Kind::Network, format!("network error: could not reach Bedrock: {detail}")),
        SdkError::ResponseError(_) => Error::new(Kind::Network, format!("connection lost: the answer from Bedrock broke off: {detail}")),
        SdkError::ConstructionFailure(_) => Error::new(Kind::InvalidArgument, format!("the request could not be built: {detail}")),
        _ => Error::internal(format!("unexpected SDK error: {detail}")),
    }
}

/// Any operation's error; `variant` is the modelled error type when the operation's enum names it.
pub fn from_operation_error<E>(e: &SdkError<E, HttpResponse>, variant: impl Fn(&E) -> Option<&'static str>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let status = Some(ctx.raw().status().as_u16());
            let request_id = ctx.raw().headers().get("x-amzn-requestid").map(str::to_string);
            let err = ctx.err();
            let aws_type = variant(err).or(err.code()).unwrap_or("UnknownError");
            service_error(aws_type, err.message(), status, request_id)
        }
        _ => transport_error(e),
    }
}
