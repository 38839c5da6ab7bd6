//! SDK errors → the plugin's typed `Error`. Classification goes by the modelled error variant
//! (mid-stream exceptions carry no error code string), then the AWS error code, then HTTP status.

use crate::error::{Error, Kind};
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;

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

fn op_error_type(e: &ConverseStreamError) -> Option<&'static str> {
    Some(match e {
        ConverseStreamError::AccessDeniedException(_) => "AccessDeniedException",
        ConverseStreamError::InternalServerException(_) => "InternalServerException",
        ConverseStreamError::ModelErrorException(_) => "ModelErrorException",
        ConverseStreamError::ModelNotReadyException(_) => "ModelNotReadyException",
        ConverseStreamError::ModelTimeoutException(_) => "ModelTimeoutException",
        ConverseStreamError::ResourceNotFoundException(_) => "ResourceNotFoundException",
        ConverseStreamError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        ConverseStreamError::ThrottlingException(_) => "ThrottlingException",
        ConverseStreamError::ValidationException(_) => "ValidationException",
        ConverseStreamError::ModelStreamErrorException(_) => "ModelStreamErrorException",
        _ => return None,
    })
}

fn stream_error_type(e: &ConverseStreamOutputError) -> Option<&'static str> {
    Some(match e {
        ConverseStreamOutputError::InternalServerException(_) => "InternalServerException",
        ConverseStreamOutputError::ModelStreamErrorException(_) => "ModelStreamErrorException",
        ConverseStreamOutputError::ValidationException(_) => "ValidationException",
        ConverseStreamOutputError::ThrottlingException(_) => "ThrottlingException",
        ConverseStreamOutputError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        _ => return None,
    })
}

fn service_error(aws_type: &str, message: Option<&str>, status: Option<u16>, request_id: Option<String>) -> Error {
    let (kind, retryable) = classify(aws_type, status);
    let mut text = format!("{aws_type}: {}", message.unwrap_or("(no message)"));
    if aws_type == "AccessDeniedException" {
        text.push_str(" (check that the IAM policy allows bedrock:InvokeModelWithResponseStream on this model, and that model access is enabled)");
    }
    let mut e = Error::new(kind, text).retryable(retryable);
    e.http_status = status;
    e.request_id = request_id;
    e.aws_error_type = Some(aws_type.to_string());
    e
}

/// Errors the SDK raises before any HTTP answer, or when the answer cannot be read.
fn transport_error<E: std::error::Error + 'static, R: std::fmt::Debug>(e: &SdkError<E, R>) -> Error {
    let detail = DisplayErrorContext(e).to_string();
    let lowered = detail.to_lowercase();
    let about_identity = lowered.contains("credential") || lowered.contains("identity") || lowered.contains("no token") || lowered.contains("bearer");
    match e {
        SdkError::TimeoutError(_) => Error::new(Kind::Timeout, format!("Bedrock did not answer in time: {detail}")),
        _ if about_identity => Error::new(Kind::Auth, format!("no usable AWS credentials: {detail}")),
        SdkError::DispatchFailure(d) if d.is_timeout() => Error::new(Kind::Timeout, format!("connecting to Bedrock timed out: {detail}")),
        SdkError::DispatchFailure(_) => Error::new(Kind::Network, format!("could not reach Bedrock: {detail}")),
        SdkError::ResponseError(_) => Error::new(Kind::Network, format!("the connection to Bedrock broke off: {detail}")),
        SdkError::ConstructionFailure(_) => Error::new(Kind::InvalidArgument, format!("the request could not be built: {detail}")),
        _ => Error::internal(format!("unexpected SDK error: {detail}")),
    }
}

pub fn from_send_error(e: SdkError<ConverseStreamError, aws_sdk_bedrockruntime::config::http::HttpResponse>) -> Error {
    match &e {
        SdkError::ServiceError(ctx) => {
            let status = Some(ctx.raw().status().as_u16());
            let request_id = ctx.raw().headers().get("x-amzn-requestid").map(str::to_string);
            let err = ctx.err();
            let aws_type = op_error_type(err).or(err.code()).unwrap_or("UnknownError");
            service_error(aws_type, err.message(), status, request_id)
        }
        _ => transport_error(&e),
    }
}

pub fn from_stream_error(e: SdkError<ConverseStreamOutputError, aws_smithy_types::event_stream::RawMessage>, request_id: Option<&str>) -> Error {
    match &e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let aws_type = stream_error_type(err).or(err.code()).unwrap_or("UnknownError");
            service_error(aws_type, err.message(), None, request_id.map(str::to_string))
        }
        _ => {
            let mut err = transport_error(&e);
            err.request_id = request_id.map(str::to_string);
            err
        }
    }
}
