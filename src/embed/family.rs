//! The embedding model families Bedrock serves over `InvokeModel`, each with its request and
//! response shape as the model provider documents it on Bedrock: Amazon Titan Text Embeddings G1
//! and V2, Titan Multimodal Embeddings G1 (text), Cohere Embed v3 and v4, Amazon Nova Multimodal
//! Embeddings, TwelveLabs Marengo Embed 2.7 and 3.0. Default lengths follow OpenClaw's Bedrock
//! memory table where AWS allows them, so an index built by OpenClaw's provider stays valid.

use crate::error::{Error, Kind, Result};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    TitanV1,
    TitanV2,
    /// Titan Multimodal Embeddings G1 (`amazon.titan-embed-image-v1`), text input.
    TitanImage,
    CohereV3,
    CohereV4,
    Nova,
    Marengo,
    /// Marengo Embed 3.0: nested text input, 512-long vectors.
    MarengoV3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Query,
    Document,
}

/// The base model id inside `id`: no ARN path, no inference-profile prefix.
pub fn base_id(id: &str) -> &str {
    let id = if id.starts_with("arn:") { id.rsplit('/').next().unwrap_or(id) } else { id };
    crate::model::without_profile_prefix(id).unwrap_or(id)
}

impl Family {
    /// The family of a model id, by the prefix of its base id (throughput suffixes such as
    /// `:2:8k` and versions do not matter).
    pub fn of(id: &str) -> Option<Family> {
        let base = base_id(id);
        Some(if base.starts_with("amazon.titan-embed-text-v2") {
            Family::TitanV2
        } else if base.starts_with("amazon.titan-embed-text-v1") || base.starts_with("amazon.titan-embed-g1-text") {
            Family::TitanV1
        } else if base.starts_with("amazon.titan-embed-image-v1") {
            Family::TitanImage
        } else if base.starts_with("cohere.embed-v4") {
            Family::CohereV4
        } else if base.starts_with("cohere.embed-") {
            Family::CohereV3
        } else if base.starts_with("amazon.nova") && base.contains("embed") {
            Family::Nova
        } else if base.starts_with("twelvelabs.marengo-embed-3") {
            Family::MarengoV3
        } else if base.starts_with("twelvelabs.marengo-embed") {
            Family::Marengo
        } else {
            return None;
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::TitanV1 => "Titan Text Embeddings G1",
            Family::TitanV2 => "Titan Text Embeddings V2",
            Family::TitanImage => "Titan Multimodal Embeddings G1",
            Family::CohereV3 => "Cohere Embed v3",
            Family::CohereV4 => "Cohere Embed v4",
            Family::Nova => "Nova Multimodal Embeddings",
            Family::Marengo => "TwelveLabs Marengo Embed",
            Family::MarengoV3 => "TwelveLabs Marengo Embed 3.0",
        }
    }

    /// The output lengths the model offers; the first is its default. Nova's default is 1024,
    /// OpenClaw's, not the model's own 3072: an index must not change length under a user who
    /// switches providers.
    pub fn dimensions(self) -> &'static [u32] {
        match self {
            Family::TitanV1 => &[1536],
            Family::TitanV2 => &[1024, 512, 256],
            Family::TitanImage => &[1024, 384, 256],
            Family::CohereV3 => &[1024],
            Family::CohereV4 => &[1536, 1024, 512, 256],
            Family::Nova => &[1024, 3072, 384, 256],
            Family::Marengo => &[1024],
            Family::MarengoV3 => &[512],
        }
    }

    /// Texts one call takes.
    pub fn batch(self) -> usize {
        match self {
            Family::CohereV3 | Family::CohereV4 => 96,
            _ => 1,
        }
    }

    /// The `InvokeModel` body for `texts` (as many as `batch` allows).
    pub fn body(self, texts: &[&str], purpose: Purpose, dimensions: u32) -> Value {
        let cohere_type = match purpose {
            Purpose::Query => "search_query",
            Purpose::Document => "search_document",
        };
        match self {
            Family::TitanV1 => json!({"inputText": texts[0]}),
            Family::TitanV2 => json!({"inputText": texts[0], "dimensions": dimensions, "normalize": true}),
            Family::TitanImage => json!({"inputText": texts[0], "embeddingConfig": {"outputEmbeddingLength": dimensions}}),
            Family::CohereV3 => json!({"texts": texts, "input_type": cohere_type, "truncate": "END"}),
            Family::CohereV4 => json!({
                "texts": texts, "input_type": cohere_type, "truncate": "RIGHT",
                "embedding_types": ["float"], "output_dimension": dimensions,
            }),
            Family::Nova => json!({
                "taskType": "SINGLE_EMBEDDING",
                "singleEmbeddingParams": {
                    // Text memory: documents are indexed generically, queries retrieve text.
                    "embeddingPurpose": if purpose == Purpose::Query { "TEXT_RETRIEVAL" } else { "GENERIC_INDEX" },
                    "embeddingDimension": dimensions,
                    "text": {"truncationMode": "END", "value": texts[0]},
                },
            }),
            Family::Marengo => json!({"inputType": "text", "inputText": texts[0], "textTruncate": "end"}),
            Family::MarengoV3 => json!({"inputType": "text", "text": {"inputText": texts[0]}}),
        }
    }

    /// The vectors of a response, as raw JSON arrays, one per text sent.
    pub fn vectors(self, body: &Value, model: &str) -> Result<Vec<Value>> {
        let malformed = |what: &str| Error::new(Kind::ModelError, format!("{model} returned a malformed embedding response: {what}")).retryable(false);
        let vectors: Vec<Value> = match self {
            Family::TitanV1 | Family::TitanV2 | Family::TitanImage => {
                let v = body.get("embedding").or_else(|| body.pointer("/embeddingsByType/float")).ok_or_else(|| malformed("no \"embedding\""))?;
                vec![v.clone()]
            }
            Family::CohereV3 | Family::CohereV4 => {
                let e = body.get("embeddings").ok_or_else(|| malformed("no \"embeddings\""))?;
                let list = e.get("float").unwrap_or(e);
                list.as_array().ok_or_else(|| malformed("\"embeddings\" is not a list of vectors"))?.clone()
            }
            Family::Nova => {
                let first = body.pointer("/embeddings/0/embedding").ok_or_else(|| malformed("no \"embeddings[0].embedding\""))?;
                vec![first.clone()]
            }
            Family::Marengo | Family::MarengoV3 => {
                let v = body
                    .pointer("/data/0/embedding")
                    .or_else(|| body.pointer("/data/embedding"))
                    .or_else(|| body.get("embedding"))
                    .ok_or_else(|| malformed("no \"data[0].embedding\""))?;
                vec![v.clone()]
            }
        };
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_found_by_prefix_whatever_the_profile_or_suffix() {
        assert_eq!(Family::of("amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
        assert_eq!(Family::of("us.amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
        assert_eq!(Family::of("amazon.titan-embed-text-v1:2:8k"), Some(Family::TitanV1));
        assert_eq!(Family::of("amazon.titan-embed-g1-text-02"), Some(Family::TitanV1));
        assert_eq!(Family::of("global.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(Family::of("cohere.embed-multilingual-v3"), Some(Family::CohereV3));
        assert_eq!(Family::of("apac.amazon.nova-2-multimodal-embeddings-v1:0"), Some(Family::Nova));
        assert_eq!(Family::of("twelvelabs.marengo-embed-2-7-v1:0"), Some(Family::Marengo));
        assert_eq!(Family::of("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(Family::of("anthropic.claude-3-haiku"), None);
        assert_eq!(base_id("eu.twelvelabs.marengo-embed-2-7-v1:0"), "twelvelabs.marengo-embed-2-7-v1:0");
    }
}
