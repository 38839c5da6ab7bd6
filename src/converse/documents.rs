//! Documents in user messages (`{"type": "document", "data": <base64>, "mimeType"?, "format"?,
//! "name"?}`) as Bedrock document blocks. Bedrock takes nine formats and names made of letters,
//! digits, single spaces, hyphens, parentheses and square brackets, unique within a request:
//! names are cleaned to that and numbered when they repeat; other formats are refused before
//! anything is sent.

use crate::error::Result;
use crate::json::Obj;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{ContentBlock, DocumentBlock, DocumentFormat, DocumentSource, Message};

const FORMATS: [&str; 9] = ["pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"];

fn format_of_mime(mime: &str) -> Option<&'static str> {
    Some(match mime.split(';').next().unwrap_or("").trim() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" | "text/x-markdown" => "md",
        _ => return None,
    })
}

/// What Bedrock accepts as a document name: `[a-zA-Z0-9 \-()\[\]]`, no two spaces in a row.
pub fn clean_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') { c } else { ' ' };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    let out = out.trim_end().chars().take(200).collect::<String>();
    if out.is_empty() { "document".into() } else { out }
}

pub fn block(o: &Obj<'_>) -> Result<ContentBlock> {
    let format = match (o.str("format")?, o.str("mimeType")?) {
        (Some(f), _) => FORMATS.iter().find(|k| k.eq_ignore_ascii_case(f)).copied().ok_or_else(|| o.err("format", format!("\"{f}\" is not a document format Bedrock takes ({})", FORMATS.join(", "))))?,
        (None, Some(m)) => format_of_mime(m).ok_or_else(|| o.err("mimeType", format!("\"{m}\" is not a document type Bedrock takes ({})", FORMATS.join(", "))))?,
        (None, None) => return Err(o.err("format", "is required (or mimeType)")),
    };
    let bytes = aws_smithy_types::base64::decode(o.req_str("data")?).map_err(|e| o.err("data", format!("not valid base64: {e}")))?;
    let block = DocumentBlock::builder()
        .format(DocumentFormat::from(format))
        .name(clean_name(o.str("name")?.unwrap_or("document")))
        .source(DocumentSource::Bytes(Blob::new(bytes)))
        .build()
        .map_err(|e| o.err("data", e))?;
    Ok(ContentBlock::Document(block))
}

/// Numbers repeated document names (`report`, `report (2)`, …): Bedrock refuses duplicates.
pub fn unique_names(messages: &mut [Message]) {
    let mut seen: Vec<String> = Vec::new();
    for block in messages.iter_mut().flat_map(|m| m.content.iter_mut()) {
        let ContentBlock::Document(doc) = block else { continue };
        let mut name = doc.name().to_string();
        let mut n = 2;
        while seen.contains(&name) {
            name = format!("{} ({n})", doc.name());
            n += 1;
        }
        if name != doc.name() {
            if let Ok(renamed) = DocumentBlock::builder().format(doc.format().clone()).name(&name).set_source(doc.source().cloned()).build() {
                *doc = renamed;
            }
        }
        seen.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::clean_name;

    #[test]
    fn names_are_cleaned_to_what_bedrock_takes() {
        assert_eq!(clean_name("Q3 report.v2/final.pdf"), "Q3 report v2 final pdf");
        assert_eq!(clean_name("  a   b  "), "a b");
        assert_eq!(clean_name("(draft) [1]-x"), "(draft) [1]-x");
        assert_eq!(clean_name("日本語"), "document");
    }
}
