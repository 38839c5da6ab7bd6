//! bedrock-plugin: the Amazon Bedrock model provider for LLM gateways, loaded at run time over a
//! stable C ABI (`include/bedrock_plugin.h`). Read it from the edge inward: `ffi` (the boundary)
//! → `provider` (lifecycle, runtime) → `discovery` / `converse` (Bedrock mapping) → `clients`
//! (the AWS clients both use) → `config` / `auth` / `region` / `sdk_error`.

pub mod ffi;

mod auth;
mod clients;
pub mod config;
mod converse;
mod discovery;
mod embed;
mod fault;
pub mod error;
pub mod events;
mod json;
mod log;
pub mod model;
mod provider;
mod region;
mod sdk_error;
mod tls;
