//! Embeddings over Bedrock `InvokeModel` (`bp_embed`): the request is read and checked on the
//! calling thread, the calls run on the provider's runtime with bounded concurrency (Cohere
//! models take up to 96 texts per call, the others one), and every vector is checked and
//! L2-normalized before it is answered, in input order.

pub mod family;

use crate::clients::Clients;
use crate::error::{Error, Kind, Result};
use crate::json::{describe, Obj};
use crate::sdk_error::{from_operation_error, HttpResponse};
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::primitives::Blob;
use family::{Family, Purpose};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const DEFAULT_MODEL: &str = "amazon.titan-embed-text-v2:0";
/// Calls in flight at once per `bp_embed`, unless the config says otherwise.
pub use crate::config::DEFAULT_EMBED_CONCURRENCY as DEFAULT_CONCURRENCY;
/// Texts one `bp_embed` takes.
pub const MAX_TEXTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct EmbedRequest {
    /// The id sent to Bedrock (profile prefix and throughput suffix kept).
    pub model: String,
    pub family: Family,
    pub texts: Vec<String>,
    pub purpose: Purpose,
    pub dimensions: u32,
    /// Calls in flight at once (the provider's `embeddings.concurrency`).
    pub concurrency: usize,
}

/// Reads `{"model"?, "texts", "purpose"?, "dimensions"?}`.
pub fn parse(text: &str) -> Result<EmbedRequest> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::invalid(format!("request is not valid JSON: {e}")))?;
    let top = Obj::new(&value, "", Kind::InvalidArgument)?;
    top.only(&["model", "texts", "purpose", "dimensions"])?;
    let raw = top.str("model")?.unwrap_or(DEFAULT_MODEL).trim();
    let model = raw.strip_prefix("amazon-bedrock/").or_else(|| raw.strip_prefix("bedrock/")).unwrap_or(raw).to_string();
    if model.is_empty() || model.chars().any(char::is_control) {
        return Err(top.err("model", "must be a Bedrock model id"));
    }
    let family = Family::of(&model).ok_or_else(|| {
        Error::new(
            Kind::NotFound,
            format!("model: \"{model}\" is not an embedding model this plugin knows (Titan Text Embeddings G1/V2, Cohere Embed v3/v4, Nova Multimodal Embeddings, TwelveLabs Marengo)"),
        )
    })?;
    let items = top.array("texts")?.ok_or_else(|| top.err("texts", "is required"))?;
    if items.len() > MAX_TEXTS {
        return Err(Error::new(Kind::TooLarge, format!("texts: {} texts, at most {MAX_TEXTS} per call", items.len())));
    }
    let texts = items
        .iter()
        .enumerate()
        .map(|(i, t)| t.as_str().map(str::to_string).ok_or_else(|| top.err(&format!("texts[{i}]"), format!("expected a string, got {}", describe(t)))))
        .collect::<Result<Vec<_>>>()?;
    let purpose = match top.str("purpose")? {
        None | Some("document") => Purpose::Document,
        Some("query") => Purpose::Query,
        Some(other) => return Err(top.err("purpose", format!("must be \"query\" or \"document\", got \"{other}\""))),
    };
    let offered = family.dimensions();
    let dimensions = match top.uint("dimensions", u64::from(u32::MAX))? {
        None => offered[0],
        Some(d) if offered.contains(&(d as u32)) => d as u32,
        Some(d) => {
            let list: Vec<String> = offered.iter().map(u32::to_string).collect();
            return Err(top.err("dimensions", format!("{d} is not offered by {model} ({}): valid values are {}", family.name(), list.join(", "))));
        }
    };
    Ok(EmbedRequest { model, family, texts, purpose, dimensions, concurrency: DEFAULT_CONCURRENCY })
}

fn invoke_error(e: SdkError<InvokeModelError, HttpResponse>) -> Error {
    let mut err = from_operation_error(&e, |e| {
        Some(match e {
            InvokeModelError::AccessDeniedException(_) => "AccessDeniedException",
            InvokeModelError::InternalServerException(_) => "InternalServerException",
            InvokeModelError::ModelErrorException(_) => "ModelErrorException",
            InvokeModelError::ModelNotReadyException(_) => "ModelNotReadyException",
            InvokeModelError::ModelTimeoutException(_) => "ModelTimeoutException",
            InvokeModelError::ResourceNotFoundException(_) => "ResourceNotFoundException",
            InvokeModelError::ServiceQuotaExceededException(_) => "ServiceQuotaExceededException",
            InvokeModelError::ServiceUnavailableException(_) => "ServiceUnavailableException",
            InvokeModelError::ThrottlingException(_) => "ThrottlingException",
            InvokeModelError::ValidationException(_) => "ValidationException",
            _ => return None,
        })
    });
    if err.aws_error_type.as_deref() == Some("AccessDeniedException") {
        err.message.push_str(" (check that the IAM policy allows bedrock:InvokeModel on this model, and that model access is enabled)");
    }
    err
}

/// One `InvokeModel` call: the response body as JSON. Throttling and server errors are retried
/// by the SDK's retry policy, as for ConverseStream; stale credentials are resolved again once.
async fn invoke(clients: &Clients, model: &str, body: &Value) -> Result<Value> {
    let bytes = serde_json::to_vec(body).map_err(|e| Error::internal(format!("could not encode the request: {e}")))?;
    let mut built = clients.current();
    let mut refreshed = false;
    loop {
        let sent = built
            .runtime
            .invoke_model()
            .model_id(model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(bytes.clone()))
            .send()
            .await;
        match sent {
            Ok(output) => {
                return serde_json::from_slice(output.body().as_ref())
                    .map_err(|e| Error::new(Kind::ModelError, format!("{model} returned a malformed embedding response: not JSON ({e})")).retryable(false));
            }
            Err(e) => {
                let e = clients.explain(invoke_error(e));
                if refreshed || !clients.worth_refreshing(&e) {
                    return Err(e);
                }
                refreshed = true;
                built = clients.refresh(built.generation).await;
            }
        }
    }
}

/// A vector as the host receives it: finite numbers, unit length.
fn unit_vector(raw: &Value, model: &str, dimensions: u32) -> Result<Vec<f32>> {
    let malformed = |what: String| Error::new(Kind::ModelError, format!("{model} returned a malformed embedding: {what}")).retryable(false);
    let items = raw.as_array().ok_or_else(|| malformed(format!("expected a list of numbers, got {}", describe(raw))))?;
    let mut v = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        match x.as_f64() {
            Some(f) if f.is_finite() => v.push(f),
            _ => return Err(malformed(format!("value {i} is {x}, not a finite number"))),
        }
    }
    if v.len() != dimensions as usize {
        return Err(malformed(format!("{} values where {dimensions} were asked for", v.len())));
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(malformed("a zero vector cannot be normalized".into()));
    }
    Ok(v.into_iter().map(|x| (x / norm) as f32).collect())
}

/// Embeds every non-blank text (a blank one gets `[]` without a call) and answers
/// `{"model", "dimensions", "embeddings"}` in input order.
pub async fn run(clients: Arc<Clients>, request: EmbedRequest) -> Result<Value> {
    let EmbedRequest { model, family, texts, purpose, dimensions, concurrency } = request;
    let wanted: Vec<usize> = (0..texts.len()).filter(|&i| !texts[i].trim().is_empty()).collect();
    let mut embeddings: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let texts = Arc::new(texts);
    let model = Arc::new(model);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut calls = tokio::task::JoinSet::new();
    for chunk in wanted.chunks(family.batch()) {
        let (chunk, texts, model, clients, permits) = (chunk.to_vec(), texts.clone(), model.clone(), clients.clone(), permits.clone());
        calls.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|_| Error::internal("the embedding calls were stopped"))?;
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            let answer = invoke(&clients, &model, &family.body(&batch, purpose, dimensions)).await?;
            let vectors = family.vectors(&answer, &model)?;
            if vectors.len() != chunk.len() {
                return Err(Error::new(Kind::ModelError, format!("{model} returned {} embeddings for {} texts", vectors.len(), chunk.len())).retryable(false));
            }
            let vectors = vectors.iter().map(|v| unit_vector(v, &model, dimensions)).collect::<Result<Vec<_>>>()?;
            Ok::<_, Error>(chunk.into_iter().zip(vectors).collect::<Vec<_>>())
        });
    }
    while let Some(joined) = calls.join_next().await {
        let placed = joined.map_err(|e| Error::internal(format!("an embedding call failed: {e}")))?;
        // The first failure ends the request; the remaining calls are aborted with the set.
        for (i, v) in placed? {
            embeddings[i] = v;
        }
    }
    Ok(json!({"model": *model, "dimensions": dimensions, "embeddings": embeddings}))
}
