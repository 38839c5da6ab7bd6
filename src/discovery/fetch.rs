//! The list calls of one discovery, run concurrently: `ListFoundationModels` (required) and
//! `ListInferenceProfiles` for system-defined and application profiles, every page (best
//! effort: without that permission discovery still returns the foundation models).

use super::select::{Foundation, Profile};
use crate::error::{Error, Kind, Result};
use std::future::Future;
use std::time::Duration;
use crate::sdk_error;
use aws_sdk_bedrock::types::{FoundationModelLifecycleStatus, InferenceProfileStatus, InferenceProfileType};

pub struct Listing {
    pub foundations: Vec<Foundation>,
    pub profiles: Vec<Profile>,
    /// What was left out and why (a denied or failed profile listing).
    pub warnings: Vec<String>,
}

/// Every call gets `deadline`: an endpoint that accepts the connection and never answers must
/// not hold `bp_discover` (a blocking call on a host thread) for ever.
pub async fn list(client: &aws_sdk_bedrock::Client, deadline: Duration) -> Result<Listing> {
    let (foundations, system, application) = tokio::join!(
        foundations(client, deadline),
        profiles(client, InferenceProfileType::SystemDefined, deadline),
        profiles(client, InferenceProfileType::Application, deadline),
    );
    let foundations = foundations?;
    let mut warnings = Vec::new();
    let mut profiles = Vec::new();
    for (kind, listed) in [("system-defined", system), ("application", application)] {
        match listed {
            Ok(mut p) => profiles.append(&mut p),
            Err(e) => warnings.push(format!("{kind} inference profiles were left out: {}", e.message)),
        }
    }
    Ok(Listing { foundations, profiles, warnings })
}

/// An error of one list call, naming the IAM action when the caller lacks it.
fn list_error(action: &str, e: Error) -> Error {
    let denied = e.aws_error_type.as_deref() == Some("AccessDeniedException");
    let mut e = e;
    e.message = if denied {
        format!("discovery needs the IAM permission bedrock:{action}: {}", e.message)
    } else {
        format!("{action} failed: {}", e.message)
    };
    e
}

async fn within<T>(action: &str, deadline: Duration, call: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(deadline, call).await.map_err(|_| {
        Error::new(Kind::Timeout, format!("{action} did not answer within {} s (discovery.callTimeoutSeconds)", deadline.as_secs()))
    })
}

async fn foundations(client: &aws_sdk_bedrock::Client, deadline: Duration) -> Result<Vec<Foundation>> {
    let out = within("ListFoundationModels", deadline, client.list_foundation_models().send())
        .await?
        .map_err(|e| list_error("ListFoundationModels", sdk_error::from_operation_error(&e, |_| None)))?;
    let modalities = |m: Option<&[aws_sdk_bedrock::types::ModelModality]>| -> Vec<String> {
        m.unwrap_or_default().iter().map(|m| m.as_str().to_string()).collect()
    };
    Ok(out
        .model_summaries()
        .iter()
        .map(|s| Foundation {
            id: s.model_id().to_string(),
            name: s.model_name().map(str::to_string),
            provider: s.provider_name().map(str::to_string),
            input: modalities(s.input_modalities.as_deref()),
            output: modalities(s.output_modalities.as_deref()),
            streaming: s.response_streaming_supported().unwrap_or(false),
            // Bedrock leaves the lifecycle out for models that have only ever been active.
            active: s.model_lifecycle().is_none_or(|l| l.status() == &FoundationModelLifecycleStatus::Active),
        })
        .collect())
}

async fn profiles(client: &aws_sdk_bedrock::Client, kind: InferenceProfileType, deadline: Duration) -> Result<Vec<Profile>> {
    let mut pages = client.list_inference_profiles().type_equals(kind.clone()).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = within("ListInferenceProfiles", deadline, pages.next()).await? {
        let page = page.map_err(|e| list_error("ListInferenceProfiles", sdk_error::from_operation_error(&e, |_| None)))?;
        for p in page.inference_profile_summaries() {
            out.push(Profile {
                id: p.inference_profile_id().to_string(),
                arn: p.inference_profile_arn().to_string(),
                name: p.inference_profile_name().to_string(),
                active: p.status() == &InferenceProfileStatus::Active,
                application: p.r#type() == &InferenceProfileType::Application,
                model_arns: p.models().iter().filter_map(|m| m.model_arn().map(str::to_string)).collect(),
            });
        }
    }
    Ok(out)
}
