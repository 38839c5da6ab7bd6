//! ConverseStream's errors: the modelled variants (mid-stream exceptions carry no error code
//! string) named for `sdk_error`, which does the rest of the mapping.

use crate::error::Error;
use crate::sdk_error::{from_operation_error, service_error, transport_error, HttpResponse};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;

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

pub fn from_send_error(e: SdkError<ConverseStreamError, HttpResponse>, retry: &super::retry::Policy) -> Error {
    let mut err = from_operation_error(&e, op_error_type);
    if err.aws_error_type.as_deref() == Some("AccessDeniedException") {
        err.message.push_str(" (check that the IAM policy allows bedrock:InvokeModelWithResponseStream on this model, and that model access is enabled)");
    }
    if let SdkError::ServiceError(ctx) = &e {
        let wait = super::retry::requested_wait(ctx.raw().headers());
        err.retry_after_ms = wait.map(|w| w.as_millis() as u64);
        if let Some(wait) = wait.filter(|w| *w > retry.max_delay) {
            err.message.push_str(&format!(
                " (Bedrock asked to wait {} ms before retrying, longer than maxRetryDelayMs {}; not retried)",
                wait.as_millis(),
                retry.max_delay.as_millis()
            ));
        }
    }
    err
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
