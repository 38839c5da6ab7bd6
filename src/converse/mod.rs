//! Bedrock `ConverseStream`: request building, event translation, error classification and the
//! per-stream task that ties them to the SDK client.

pub mod document;
pub mod errors;
pub mod outlet;
pub mod output_options;
pub mod request;
pub mod stream;
pub mod translate;
