//! What the host has been shown of one stream's content, block by block. A stream cancelled
//! while events were in flight drops what the host had not been handed yet; its final
//! `error`/`aborted` message must then hold exactly what the delivered deltas built (pi-ai's
//! contract), not the text the translator had already accumulated past the cancel.

use crate::events::{AssistantMessage, Content, Event};

#[derive(Default)]
struct Block {
    started: bool,
    ended: bool,
    /// Text or thinking bytes delivered in deltas.
    bytes: usize,
    /// Tool-call argument text delivered in deltas.
    json: String,
}

#[derive(Default)]
pub struct Shown {
    blocks: Vec<Block>,
}

impl Shown {
    fn block(&mut self, index: usize) -> &mut Block {
        if self.blocks.len() <= index {
            self.blocks.resize_with(index + 1, Block::default);
        }
        &mut self.blocks[index]
    }

    /// Records events the host was handed.
    pub fn note(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::TextStart { content_index } | Event::ThinkingStart { content_index } | Event::ToolcallStart { content_index, .. } => {
                    self.block(*content_index).started = true;
                }
                Event::TextDelta { content_index, delta } | Event::ThinkingDelta { content_index, delta } => {
                    self.block(*content_index).bytes += delta.len();
                }
                Event::ToolcallDelta { content_index, delta } => self.block(*content_index).json.push_str(delta),
                Event::TextEnd { content_index, .. } | Event::ThinkingEnd { content_index, .. } | Event::ToolcallEnd { content_index, .. } => {
                    self.block(*content_index).ended = true;
                }
                Event::Start { .. } | Event::Done { .. } | Event::Error { .. } => {}
            }
        }
    }

    /// Cuts `message` down to what was shown: blocks never started go, blocks not ended keep
    /// the text their delivered deltas built; a tool call not ended keeps no arguments, its
    /// delivered argument text as `invalidArguments`.
    pub fn trim(&self, message: &mut AssistantMessage) {
        let started = self.blocks.iter().take_while(|b| b.started).count();
        message.content.truncate(started);
        for (content, block) in message.content.iter_mut().zip(&self.blocks) {
            if block.ended {
                continue;
            }
            match content {
                Content::Text { text } | Content::Thinking { thinking: text, .. } => {
                    if text.is_char_boundary(block.bytes) {
                        text.truncate(block.bytes);
                    }
                }
                Content::ToolCall { arguments, invalid_arguments, .. } => {
                    *arguments = serde_json::json!({});
                    *invalid_arguments = (!block.json.is_empty()).then(|| block.json.clone());
                }
            }
        }
    }
}
