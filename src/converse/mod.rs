//! Bedrock `ConverseStream`: request building, event translation, error classification and the
//! per-stream task that ties them to the SDK client.

pub mod connecting;
pub mod document;
mod documents;
pub mod errors;
mod frame;
pub mod outlet;
pub mod output_options;
pub mod passthrough;
pub mod profile_base;
mod receiver;
pub mod request;
mod retry;
pub mod stream;
mod surrogates;
mod trace;
pub mod tool_names;
pub mod translate;
