//! The foundation model behind an application inference profile ARN that discovery did not list
//! (discovery off, not run yet, or the profile created since). Its capabilities (prompt caching,
//! thinking, images) are the base model's, and the ARN does not say which model that is, so
//! `GetInferenceProfile` is asked once per ARN and the answer kept for the provider's life.
//! Without the permission, or when the call fails, the model entry as given is used, with a warning.

use crate::clients::Clients;
use crate::error::Result;
use crate::sdk_error;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub fn is_application_profile(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":application-inference-profile/")
}

pub struct ProfileBases {
    /// Per ARN: the base model id, or `None` when the caller may not ask (no retry for those).
    known: Mutex<HashMap<String, Option<String>>>,
    deadline: Duration,
}

impl ProfileBases {
    pub fn new(deadline: Duration) -> ProfileBases {
        ProfileBases { known: Mutex::new(HashMap::new()), deadline }
    }

    /// The base model's id, asking Bedrock the first time.
    pub async fn base_of(&self, clients: &Clients, arn: &str) -> Option<String> {
        if let Some(known) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(arn) {
            return known.clone();
        }
        match ask(clients, arn, self.deadline).await {
            Ok(base) => {
                if base.is_none() {
                    crate::log::warn("converse", &format!("{arn}: GetInferenceProfile names no foundation model; its capabilities are taken from the model entry as given"));
                }
                self.remember(arn, base.clone());
                base
            }
            Err(e) => {
                let denied = e.aws_error_type.as_deref() == Some("AccessDeniedException");
                crate::log::warn("converse", &format!(
                    "{arn}: an application inference profile discovery did not list, and asking Bedrock for its model failed ({}{}); its capabilities are taken from the model entry as given",
                    if denied { "grant bedrock:GetInferenceProfile to fix this: " } else { "" },
                    e.message
                ));
                if denied {
                    self.remember(arn, None);
                }
                None
            }
        }
    }

    fn remember(&self, arn: &str, base: Option<String>) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(arn.to_string(), base);
    }
}

async fn ask(clients: &Clients, arn: &str, deadline: Duration) -> Result<Option<String>> {
    let built = clients.current();
    let mut call = built.control.get_inference_profile().inference_profile_identifier(arn).customize();
    // The profile lives in the region its ARN names, which need not be discovery's.
    if let Some(region) = arn.split(':').nth(3).filter(|r| !r.is_empty()) {
        call = call.config_override(aws_sdk_bedrock::config::Builder::default().region(aws_sdk_bedrock::config::Region::new(region.to_string())));
    }
    let answer = tokio::time::timeout(deadline, call.send())
        .await
        .map_err(|_| crate::error::Error::new(crate::error::Kind::Timeout, format!("GetInferenceProfile did not answer within {} s", deadline.as_secs())))?
        .map_err(|e| clients.explain(sdk_error::from_operation_error(&e, |_| None)))?;
    // Every model of a profile is the same foundation model in different regions.
    Ok(answer.models().iter().find_map(|m| m.model_arn()).and_then(foundation_model_id))
}

/// `arn:aws:bedrock:<region>::foundation-model/<id>` → `<id>`.
fn foundation_model_id(arn: &str) -> Option<String> {
    arn.split_once(":foundation-model/").map(|(_, id)| id.to_string()).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foundation_model_ids_come_out_of_their_arns() {
        assert_eq!(foundation_model_id("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0").as_deref(), Some("anthropic.claude-sonnet-4-5-20250929-v1:0"));
        assert_eq!(foundation_model_id("arn:aws:bedrock:us-east-1:1:inference-profile/us.x"), None);
        assert!(is_application_profile("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc"));
        assert!(!is_application_profile("us.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    }
}
