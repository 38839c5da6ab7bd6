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
    /// The block the last text or thinking deltas went to, and their bytes not yet added to it:
    /// at a model's pace each delta is delivered alone, and `blocks` has gone cold since the
    /// last one.
    deltas: Option<(usize, usize)>,
}

impl Shown {
    fn block(&mut self, index: usize) -> &mut Block {
        if self.blocks.len() <= index {
            self.blocks.resize_with(index + 1, Block::default);
        }
        &mut self.blocks[index]
    }

    fn flush(&mut self) {
        if let Some((index, bytes)) = self.deltas.take() {
            self.block(index).bytes += bytes;
        }
    }

    /// Records events the host was handed.
    pub fn note(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::TextStart { content_index } | Event::ThinkingStart { content_index } | Event::ToolcallStart { content_index, .. } => {
                    self.block(*content_index).started = true;
                }
                Event::TextDelta { content_index, delta } | Event::ThinkingDelta { content_index, delta } => match &mut self.deltas {
                    Some((index, bytes)) if index == content_index => *bytes += delta.len(),
                    _ => {
                        self.flush();
                        self.deltas = Some((*content_index, delta.len()));
                    }
                },
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
    pub fn trim(&mut self, message: &mut AssistantMessage) {
        self.flush();
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

#[cfg(test)]
mod tests {
    use super::Shown;
    use crate::events::{AssistantMessage, Content, Event};

    /// Delta bytes are counted apart while they go to one block (`deltas`): whichever order the
    /// blocks' deltas were shown in, a trimmed block keeps exactly the bytes shown of it.
    #[test]
    fn a_trimmed_message_keeps_each_blocks_shown_bytes_in_any_delta_order() {
        let mut message = AssistantMessage::new("m");
        message.content = vec![
            Content::Thinking { thinking: "Let me think more".into(), thinking_signature: None, redacted: false },
            Content::Text { text: "Hello, world".into() },
            Content::Text { text: "never shown".into() },
        ];
        let delta = |i, d: &str| if i == 0 { Event::ThinkingDelta { content_index: i, delta: d.into() } } else { Event::TextDelta { content_index: i, delta: d.into() } };
        let mut shown = Shown::default();
        shown.note(&[Event::ThinkingStart { content_index: 0 }, delta(0, "Let "), Event::TextStart { content_index: 1 }, delta(1, "Hel")]);
        shown.note(&[delta(0, "me"), delta(0, " think"), delta(1, "lo")]);
        shown.trim(&mut message);
        let texts: Vec<&str> = message.content.iter().map(|c| match c {
            Content::Text { text } | Content::Thinking { thinking: text, .. } => text.as_str(),
            Content::ToolCall { .. } => "tool",
        }).collect();
        assert_eq!(texts, ["Let me think", "Hello"]);
    }
}
