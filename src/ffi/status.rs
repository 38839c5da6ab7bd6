//! Status codes of the C ABI, and the one place where internal errors become them.

use crate::error::Kind;

/// `bp_status` in `include/bedrock_plugin.h`; values are part of ABI v1 and never change.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Config = 2,
    Auth = 3,
    NotFound = 4,
    Throttled = 5,
    Unavailable = 6,
    Cancelled = 7,
    ShuttingDown = 8,
    Internal = 9,
    Timeout = 10,
    InvalidRequest = 11,
    ModelError = 12,
    Network = 13,
    ContentFiltered = 14,
    TooLarge = 15,
    Busy = 16,
}

/// Every status with its header name, for the header check.
pub const ALL: [(Status, &str); 17] = [
    (Status::Ok, "BP_OK"),
    (Status::InvalidArgument, "BP_ERR_INVALID_ARGUMENT"),
    (Status::Config, "BP_ERR_CONFIG"),
    (Status::Auth, "BP_ERR_AUTH"),
    (Status::NotFound, "BP_ERR_NOT_FOUND"),
    (Status::Throttled, "BP_ERR_THROTTLED"),
    (Status::Unavailable, "BP_ERR_UNAVAILABLE"),
    (Status::Cancelled, "BP_ERR_CANCELLED"),
    (Status::ShuttingDown, "BP_ERR_SHUTTING_DOWN"),
    (Status::Internal, "BP_ERR_INTERNAL"),
    (Status::Timeout, "BP_ERR_TIMEOUT"),
    (Status::InvalidRequest, "BP_ERR_INVALID_REQUEST"),
    (Status::ModelError, "BP_ERR_MODEL"),
    (Status::Network, "BP_ERR_NETWORK"),
    (Status::ContentFiltered, "BP_ERR_CONTENT_FILTERED"),
    (Status::TooLarge, "BP_ERR_TOO_LARGE"),
    (Status::Busy, "BP_ERR_BUSY"),
];

impl From<Kind> for Status {
    fn from(kind: Kind) -> Status {
        match kind {
            Kind::InvalidArgument => Status::InvalidArgument,
            Kind::Config => Status::Config,
            Kind::Auth => Status::Auth,
            Kind::NotFound => Status::NotFound,
            Kind::Throttled => Status::Throttled,
            Kind::Unavailable => Status::Unavailable,
            Kind::Cancelled => Status::Cancelled,
            Kind::ShuttingDown => Status::ShuttingDown,
            Kind::Internal => Status::Internal,
            Kind::Timeout => Status::Timeout,
            // A kind of invalid request; the error JSON's `code` tells them apart.
            Kind::InvalidRequest | Kind::ContextOverflow => Status::InvalidRequest,
            Kind::ModelError => Status::ModelError,
            Kind::Network | Kind::Truncated => Status::Network,
            Kind::ContentFiltered => Status::ContentFiltered,
            Kind::TooLarge => Status::TooLarge,
            Kind::Busy => Status::Busy,
        }
    }
}
