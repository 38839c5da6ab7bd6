//! bedrock-plugin: the Amazon Bedrock model provider for LLM gateways, loaded at run time over a
//! stable C ABI (`include/bedrock_plugin.h`). Read it from the edge inward: `ffi` (the boundary)
//! → `provider` (lifecycle, runtime) → `discovery` / `converse` (Bedrock mapping) → `config` /
//! `auth` / `region`.

pub mod ffi;

mod auth;
pub mod config;
mod converse;
mod discovery;
pub mod error;
pub mod events;
mod json;
mod log;
pub mod model;
mod provider;
mod region;
mod sdk_error;
