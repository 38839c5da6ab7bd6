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
mod http_client;
pub mod error;
pub mod events;
mod json;
mod log;
mod prefetch;
pub mod model;
mod provider;
mod region;
mod sdk_error;
mod tls;

/// What building the AWS clients leaves in statics goes to a heap this copy gives back at unload
/// (`provider::copy_heap`); everything else goes straight to the system allocator.
#[global_allocator]
static ALLOCATOR: provider::copy_heap::CopyHeap = provider::copy_heap::CopyHeap;
