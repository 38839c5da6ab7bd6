//! bedrock-plugin: the Amazon Bedrock model provider for LLM gateways, loaded at run time over a
//! stable C ABI (`include/bedrock_plugin.h`). Read it from the edge inward: `ffi` (the boundary)
//! → `provider` (lifecycle, runtime) → `converse` (Bedrock mapping) → `config` / `auth`.

pub mod ffi;

mod auth;
pub mod config;
mod converse;
pub mod error;
pub mod events;
mod json;
pub mod model;
mod provider;
