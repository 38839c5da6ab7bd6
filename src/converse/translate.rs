//! Bedrock `ConverseStreamOutput` events → pi-ai events, accumulating the final message.

use crate::error::{Error, Kind, Result};
use crate::events::{AssistantMessage, Content, Event, StopReason};
use super::tool_names::ToolNames;
use crate::model::Cost;
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput, ReasoningContentBlockDelta, StopReason as BedrockStop,
};

struct OpenBlock {
    bedrock_index: i32,
    content_index: usize,
    partial_json: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Text,
    Thinking,
}

/// The text or thinking block the last delta went to, and its text so far (its place in the
/// message holds an empty string meanwhile). At a model's pace each delta arrives alone, and the
/// open-block list and the message's content have gone cold since the last one: kept here, in
/// the stream's task beside `started`, a delta to the same block reads neither.
struct Hot {
    bedrock_index: i32,
    content_index: usize,
    kind: TextKind,
    text: String,
}

/// What every event reads, kept together.
struct Current {
    started: bool,
    hot: Option<Hot>,
}

pub struct Translator {
    current: Current,
    message: AssistantMessage,
    tool_names: ToolNames,
    cost: Cost,
    open: Vec<OpenBlock>,
    stop: Option<BedrockStop>,
}

impl Translator {
    pub fn new(model_id: &str, cost: Cost, tool_names: ToolNames) -> Translator {
        Translator {
            current: Current { started: false, hot: None },
            message: AssistantMessage::new(model_id),
            tool_names,
            cost,
            open: Vec::new(),
            stop: None,
        }
    }

    /// Asks for what the next delta touches: what every event reads, and the end of the text
    /// it appends to.
    pub fn warm(&self) {
        crate::prefetch::lines_of(&self.current);
        if let Some(hot) = &self.current.hot {
            // A token is a few bytes: the line where the next one lands, and the next.
            crate::prefetch::span(hot.text.as_ptr().wrapping_add(hot.text.len()), 16);
        }
    }

    /// The message as far as it got, for an `error` event.
    pub fn partial(&self) -> AssistantMessage {
        let mut message = self.message.clone();
        if let Some(hot) = &self.current.hot {
            put_text(&mut message, hot.content_index, hot.text.clone());
        }
        message
    }

    /// Gives the hot block's text back to the message.
    fn settle(&mut self) {
        if let Some(hot) = self.current.hot.take() {
            put_text(&mut self.message, hot.content_index, hot.text);
        }
    }

    /// The text or thinking block for a delta to Bedrock's block `index`, opened (with its
    /// `*_start` event) if it is new; None if that block is of another kind.
    fn hot(&mut self, index: i32, kind: TextKind, out: &mut Vec<Event>) -> Option<&mut Hot> {
        let same = matches!(&self.current.hot, Some(h) if h.bedrock_index == index);
        if !same {
            self.settle();
            let content_index = match self.find(index) {
                Some(pos) => self.open[pos].content_index,
                None => {
                    let (content, start): (Content, fn(usize) -> Event) = match kind {
                        TextKind::Text => (Content::Text { text: String::new() }, |content_index| Event::TextStart { content_index }),
                        TextKind::Thinking => (
                            Content::Thinking { thinking: String::new(), thinking_signature: None, redacted: false },
                            |content_index| Event::ThinkingStart { content_index },
                        ),
                    };
                    let ci = self.open_block(index, content);
                    out.push(start(ci));
                    ci
                }
            };
            let text = match (kind, self.message.content.get_mut(content_index)) {
                (TextKind::Text, Some(Content::Text { text })) | (TextKind::Thinking, Some(Content::Thinking { thinking: text, .. })) => std::mem::take(text),
                _ => return None,
            };
            self.current.hot = Some(Hot { bedrock_index: index, content_index, kind, text });
        }
        self.current.hot.as_mut().filter(|h| h.kind == kind)
    }

    fn open_block(&mut self, bedrock_index: i32, content: Content) -> usize {
        self.message.content.push(content);
        let content_index = self.message.content.len() - 1;
        self.open.push(OpenBlock { bedrock_index, content_index, partial_json: String::new() });
        content_index
    }

    fn find(&self, bedrock_index: i32) -> Option<usize> {
        self.open.iter().position(|b| b.bedrock_index == bedrock_index)
    }

    fn ensure_started(&mut self, out: &mut Vec<Event>) {
        if !self.current.started {
            self.current.started = true;
            out.push(Event::Start { partial: Box::new(self.message.clone()) });
        }
    }

    /// Translates one Bedrock event, appending what the host should see to `out`.
    pub fn on(&mut self, event: ConverseStreamOutput, out: &mut Vec<Event>) {
        match event {
            ConverseStreamOutput::MessageStart(_) => self.ensure_started(out),
            ConverseStreamOutput::ContentBlockStart(e) => {
                self.ensure_started(out);
                if let Some(ContentBlockStart::ToolUse(t)) = e.start {
                    let (id, name) = (t.tool_use_id, self.tool_names.to_host(&t.name));
                    let content = Content::ToolCall { id: id.clone(), name: name.clone(), arguments: serde_json::json!({}), invalid_arguments: None };
                    let content_index = self.open_block(e.content_block_index, content);
                    out.push(Event::ToolcallStart { content_index, id, name });
                }
            }
            ConverseStreamOutput::ContentBlockDelta(e) => {
                self.ensure_started(out);
                if let Some(delta) = e.delta {
                    self.on_delta(e.content_block_index, delta, out);
                }
            }
            ConverseStreamOutput::ContentBlockStop(e) => {
                if let Some(pos) = self.find(e.content_block_index) {
                    let block = self.open.swap_remove(pos);
                    self.close(block, out);
                }
            }
            ConverseStreamOutput::MessageStop(e) => {
                self.message.additional_model_response_fields = e.additional_model_response_fields.as_ref().map(super::document::from_document);
                self.stop = Some(e.stop_reason);
            }
            ConverseStreamOutput::Metadata(e) => {
                if let Some(trace) = &e.trace {
                    self.message.trace = Some(super::trace::to_json(trace));
                }
                if let Some(u) = e.usage {
                    let usage = &mut self.message.usage;
                    usage.input = u.input_tokens.max(0) as u64;
                    usage.output = u.output_tokens.max(0) as u64;
                    usage.cache_read = u.cache_read_input_tokens.unwrap_or(0).max(0) as u64;
                    usage.cache_write = u.cache_write_input_tokens.unwrap_or(0).max(0) as u64;
                    usage.total_tokens = if u.total_tokens > 0 {
                        u.total_tokens as u64
                    } else {
                        usage.input + usage.output + usage.cache_read + usage.cache_write
                    };
                    let per_token = |price: f64, tokens: u64| price * tokens as f64 / 1_000_000.0;
                    let c = &mut usage.cost;
                    c.input = per_token(self.cost.input, usage.input);
                    c.output = per_token(self.cost.output, usage.output);
                    c.cache_read = per_token(self.cost.cache_read, usage.cache_read);
                    c.cache_write = per_token(self.cost.cache_write, usage.cache_write);
                    c.total = c.input + c.output + c.cache_read + c.cache_write;
                }
            }
            _ => {}
        }
    }

    fn on_delta(&mut self, index: i32, delta: ContentBlockDelta, out: &mut Vec<Event>) {
        match delta {
            ContentBlockDelta::Text(text) => {
                // Bedrock sends no contentBlockStart for text: the first delta opens the block.
                if let Some(hot) = self.hot(index, TextKind::Text, out) {
                    append(&mut hot.text, &text);
                    out.push(Event::TextDelta { content_index: hot.content_index, delta: text });
                }
            }
            ContentBlockDelta::ToolUse(t) => {
                if let Some(pos) = self.find(index) {
                    let block = &mut self.open[pos];
                    block.partial_json.push_str(&t.input);
                    out.push(Event::ToolcallDelta { content_index: block.content_index, delta: t.input });
                }
            }
            ContentBlockDelta::ReasoningContent(r) => {
                let Some(hot) = self.hot(index, TextKind::Thinking, out) else {
                    return;
                };
                let content_index = hot.content_index;
                if let ReasoningContentBlockDelta::Text(t) = r {
                    append(&mut hot.text, &t);
                    out.push(Event::ThinkingDelta { content_index, delta: t });
                    return;
                }
                let Some(Content::Thinking { thinking_signature, redacted, .. }) = self.message.content.get_mut(content_index) else {
                    return;
                };
                match r {
                    ReasoningContentBlockDelta::Signature(s) => thinking_signature.get_or_insert_with(String::new).push_str(&s),
                    ReasoningContentBlockDelta::RedactedContent(blob) => {
                        *redacted = true;
                        *thinking_signature = Some(aws_smithy_types::base64::encode(blob.as_ref()));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, block: OpenBlock, out: &mut Vec<Event>) {
        self.settle();
        let content_index = block.content_index;
        match self.message.content.get_mut(content_index) {
            Some(Content::Text { text }) => out.push(Event::TextEnd { content_index, content: text.clone() }),
            Some(Content::Thinking { thinking, .. }) => out.push(Event::ThinkingEnd { content_index, content: thinking.clone() }),
            Some(call @ Content::ToolCall { .. }) => {
                if let Content::ToolCall { arguments, invalid_arguments, name, .. } = call {
                    match parse_arguments(&block.partial_json) {
                        Ok(parsed) => *arguments = parsed,
                        Err(e) => {
                            crate::log::warn("converse", &format!("tool call {name}: the model's arguments are not valid JSON ({e}); kept as invalidArguments"));
                            *invalid_arguments = Some(block.partial_json.clone());
                        }
                    }
                }
                out.push(Event::ToolcallEnd { content_index, tool_call: Box::new(call.clone()) });
            }
            None => {}
        }
    }

    /// Whether the answer ended as one `finish` will deliver (not refused, filtered, cut off or
    /// ended with an unknown reason): what refusal-safe streaming may show.
    pub fn ends_well(&self) -> bool {
        matches!(
            self.stop,
            Some(BedrockStop::EndTurn | BedrockStop::StopSequence | BedrockStop::MaxTokens | BedrockStop::ModelContextWindowExceeded | BedrockStop::ToolUse)
        )
    }

    /// Called when Bedrock ends the stream: the `done` event, or why the answer is unusable.
    pub fn finish(&mut self) -> Result<Event> {
        let Some(stop) = self.stop.take() else {
            return Err(Error::new(Kind::Truncated, "the stream ended without the model finishing its answer (no messageStop event)"));
        };
        self.settle();
        let mut rest = Vec::new();
        for block in std::mem::take(&mut self.open) {
            self.close(block, &mut rest);
        }
        let reason = match &stop {
            BedrockStop::EndTurn | BedrockStop::StopSequence => StopReason::Stop,
            BedrockStop::MaxTokens | BedrockStop::ModelContextWindowExceeded => StopReason::Length,
            BedrockStop::ToolUse => StopReason::ToolUse,
            // Newer Claude models decline with stop reason "refusal" (not in this SDK's enum yet).
            other if matches!(other, BedrockStop::GuardrailIntervened | BedrockStop::ContentFiltered) || other.as_str() == "refusal" => {
                return Err(Error::new(Kind::ContentFiltered, format!("the answer was stopped by Bedrock ({})", stop.as_str())).retryable(false));
            }
            other => {
                return Err(Error::new(Kind::ModelError, format!("the model ended with stop reason \"{}\"", other.as_str())).retryable(false));
            }
        };
        self.message.stop_reason = reason;
        let model = self.message.model.clone();
        Ok(Event::Done { reason, message: Box::new(std::mem::replace(&mut self.message, AssistantMessage::new(&model))) })
    }

    /// Records that Bedrock served the request under another id (an inference profile).
    pub fn served_by(&mut self, id: &str) {
        self.message.response_model = Some(id.to_string());
    }
}

/// Appends to an answer kept for the stream's life (for `*_end` and `done`). It grows by a
/// quarter, not double: an open stream holds at most an eighth of its text unused on average
/// instead of a third, and the extra copies cost less than the deltas' own JSON.
fn append(acc: &mut String, delta: &str) {
    if acc.capacity() - acc.len() < delta.len() {
        acc.reserve_exact(delta.len().max(acc.len() / 4 + 64));
    }
    acc.push_str(delta);
}

/// Puts a block's text back in its place in `message`.
fn put_text(message: &mut AssistantMessage, content_index: usize, text: String) {
    match message.content.get_mut(content_index) {
        Some(Content::Text { text: place } | Content::Thinking { thinking: place, .. }) => *place = text,
        Some(Content::ToolCall { .. }) | None => {}
    }
}

/// Tool arguments as the model sent them: an object (`{}` for no arguments at all), or why not.
fn parse_arguments(raw: &str) -> std::result::Result<serde_json::Value, String> {
    if raw.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!("expected an object, got {}", crate::json::describe(&other))),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{append, Translator};
    use crate::events::{Content, Event};
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStopEvent, ConverseStreamOutput as Out, MessageStopEvent,
        ReasoningContentBlockDelta, StopReason,
    };

    fn delta(index: i32, delta: ContentBlockDelta) -> Out {
        Out::ContentBlockDelta(ContentBlockDeltaEvent::builder().content_block_index(index).delta(delta).build().unwrap())
    }

    fn text(index: i32, t: &str) -> Out {
        delta(index, ContentBlockDelta::Text(t.into()))
    }

    fn thinking(index: i32, t: &str) -> Out {
        delta(index, ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(t.into())))
    }

    fn texts(content: &[Content]) -> Vec<String> {
        content
            .iter()
            .map(|c| match c {
                Content::Text { text } => format!("text:{text}"),
                Content::Thinking { thinking, thinking_signature, .. } => format!("thinking:{thinking}:{}", thinking_signature.as_deref().unwrap_or("")),
                Content::ToolCall { name, .. } => format!("tool:{name}"),
            })
            .collect()
    }

    /// The block receiving deltas keeps its text apart from the message (`Hot`): whatever order
    /// the blocks' deltas come in, every view of the message — partial, `*_end`, `done` — must
    /// hold each block's whole text, and each delta must name its own block.
    #[test]
    fn deltas_switching_between_blocks_keep_every_blocks_text() {
        let mut t = Translator::new("m", Default::default(), Default::default());
        let mut out = Vec::new();
        for e in [thinking(0, "Let "), text(1, "Hel"), thinking(0, "me think"), text(1, "lo")] {
            t.on(e, &mut out);
        }
        t.on(delta(0, ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature("sig".into()))), &mut out);
        // A delta of the wrong kind for its block is dropped, as before.
        t.on(text(0, "stray"), &mut out);
        assert_eq!(texts(&t.partial().content), ["thinking:Let me think:sig", "text:Hello"]);
        let targets: Vec<(usize, &str)> = out
            .iter()
            .filter_map(|e| match e {
                Event::TextDelta { content_index, delta } | Event::ThinkingDelta { content_index, delta } => Some((*content_index, delta.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(targets, [(0, "Let "), (1, "Hel"), (0, "me think"), (1, "lo")]);
        out.clear();
        t.on(Out::ContentBlockStop(ContentBlockStopEvent::builder().content_block_index(1).build().unwrap()), &mut out);
        t.on(text(1, "!"), &mut out);
        assert!(matches!(&out[0], Event::TextEnd { content_index: 1, content } if content == "Hello"), "{out:?}");
        // Bedrock's index 1 again after its block ended: a block of its own.
        assert!(matches!(&out[1], Event::TextStart { content_index: 2 }), "{out:?}");
        t.on(Out::MessageStop(MessageStopEvent::builder().stop_reason(StopReason::EndTurn).build().unwrap()), &mut out);
        let Ok(Event::Done { message, .. }) = t.finish() else { panic!("no done") };
        assert_eq!(texts(&message.content), ["thinking:Let me think:sig", "text:Hello", "text:!"]);
    }

    #[test]
    fn a_kept_answer_is_whole_and_holds_little_unused() {
        let (mut kept, mut whole) = (String::new(), String::new());
        for i in 0..5_000 {
            let delta = format!("{i:>width$} ", width = 1 + i % 13);
            append(&mut kept, &delta);
            whole.push_str(&delta);
            // Doubling leaves up to the whole length unused; growing by a quarter, a quarter
            // (and the small first step).
            let unused = kept.capacity() - kept.len();
            assert!(unused <= kept.len() / 4 + 64 + delta.len(), "{unused} bytes unused beside {}", kept.len());
        }
        assert_eq!(kept, whole);
    }
}
