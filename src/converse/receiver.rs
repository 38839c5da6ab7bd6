//! A ConverseStream response's events, read with the SDK's receiver but for the one message that
//! comes per token. The SDK's receiver decodes every message into headers and a payload it copies
//! out, then parses the payload with a token-by-token JSON reader into typed shapes: about a third
//! of the CPU a stream costs at a model's pace (`docs/performance.md`). A text delta is read here
//! in one pass over the bytes (`frame.rs`) and built as the SDK's own event, so the translation
//! behind it is the same.
//!
//! How: `Tap`, an interceptor on each request, takes a successful response's body before the SDK
//! deserializes it and gives the SDK a `Feed` instead. `Receiver::recv` reads the real body; a
//! text delta is returned at once, and every other message (a block's start or end, usage, an
//! exception, a delta of another kind, a damaged message) is handed to the SDK through the feed,
//! and its receiver's answer returned, so errors and shapes stay the SDK's. The end of the body,
//! a transport error and bytes that never made a message reach the SDK's receiver the same way.

use super::frame::{self, Split};
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ContentBlockDeltaEvent, ConverseStreamOutput};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The SDK's item for one event.
pub type Item = Result<Option<ConverseStreamOutput>, aws_sdk_bedrockruntime::error::SdkError<ConverseStreamOutputError, aws_smithy_types::event_stream::RawMessage>>;

/// A request's interceptor: where the successful response's body goes.
#[derive(Clone, Default)]
pub struct Tap(Arc<Mutex<Option<Tapped>>>);

struct Tapped {
    body: SdkBody,
    feed: Arc<Mutex<FeedState>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

impl Intercept for Tap {
    fn name(&self) -> &'static str {
        "bedrock-plugin text deltas"
    }

    fn modify_before_deserialization(&self, context: &mut BeforeDeserializationInterceptorContextMut<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        let response = context.response_mut();
        // An error response is the SDK's to read whole.
        if !response.status().is_success() {
            return Ok(());
        }
        let feed = Arc::new(Mutex::new(FeedState::default()));
        let body = std::mem::replace(response.body_mut(), SdkBody::from_body_1_x(Feed(feed.clone())));
        *lock(&self.0) = Some(Tapped { body, feed });
        Ok(())
    }
}

/// The stream's events: the SDK's receiver, and the tapped body when the request had one.
pub struct Receiver {
    sdk: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
    own: Option<Own>,
    /// Text deltas read here, not by the SDK's receiver.
    #[cfg(test)]
    read_here: usize,
}

struct Own {
    body: SdkBody,
    /// Received and not yet a whole message: the body's own chunk while messages come whole in
    /// one (nothing copied), ...
    pending: Bytes,
    /// ... or the bytes of a message that spans chunks, gathered here (each byte copied once).
    spanning: BytesMut,
    feed: Arc<Mutex<FeedState>>,
    /// Handed to the SDK and not yet answered by its receiver: asked first, so a `recv` dropped
    /// part-way keeps the order.
    sdk_owes: bool,
    /// Everything received went to the SDK, the end too.
    closed: bool,
}

enum Next {
    Delta(ConverseStreamOutput),
    /// What was read is the SDK's to answer.
    Sdk,
}

impl Receiver {
    pub fn new(sdk: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>, tap: &Tap) -> Receiver {
        let own = lock(&tap.0).take().map(|t| Own { body: t.body, pending: Bytes::new(), spanning: BytesMut::new(), feed: t.feed, sdk_owes: false, closed: false });
        Receiver {
            sdk,
            own,
            #[cfg(test)]
            read_here: 0,
        }
    }

    pub async fn recv(&mut self) -> Item {
        if let Some(own) = &mut self.own {
            if let Next::Delta(event) = std::future::poll_fn(|cx| own.poll_next(cx)).await {
                #[cfg(test)]
                {
                    self.read_here += 1;
                }
                return Ok(Some(event));
            }
        }
        let item = self.sdk.recv().await;
        if let Some(own) = &mut self.own {
            own.sdk_owes = false;
        }
        item
    }
}

impl Own {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if self.sdk_owes || self.closed {
            return Poll::Ready(Next::Sdk);
        }
        loop {
            match frame::split(if self.spanning.is_empty() { &self.pending } else { &self.spanning }) {
                Split::Whole(n) => {
                    let message = if self.spanning.is_empty() { self.pending.split_to(n) } else { self.spanning.split_to(n).freeze() };
                    if let Some((index, text)) = frame::text_delta(&message) {
                        return Poll::Ready(Next::Delta(delta_event(index, text)));
                    }
                    self.to_sdk(message);
                    return Poll::Ready(Next::Sdk);
                }
                Split::Unframable => {
                    let rest = self.take_rest();
                    self.to_sdk(rest);
                    self.close(None);
                    return Poll::Ready(Next::Sdk);
                }
                Split::Partial => {}
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        self.received(data);
                    }
                }
                Poll::Ready(end) => {
                    // The end, or a transport error: after what is left, the SDK's to report.
                    let rest = self.take_rest();
                    if !rest.is_empty() {
                        self.to_sdk(rest);
                    }
                    self.close(end.and_then(Result::err));
                    return Poll::Ready(Next::Sdk);
                }
            }
        }
    }

    fn received(&mut self, data: Bytes) {
        if self.pending.is_empty() && self.spanning.is_empty() {
            self.pending = data;
            return;
        }
        if !self.pending.is_empty() {
            self.spanning.extend_from_slice(&std::mem::take(&mut self.pending));
        }
        self.spanning.extend_from_slice(&data);
    }

    /// Whatever was received and not yet handed on.
    fn take_rest(&mut self) -> Bytes {
        if self.spanning.is_empty() {
            std::mem::take(&mut self.pending)
        } else {
            self.spanning.split().freeze()
        }
    }

    fn to_sdk(&mut self, bytes: Bytes) {
        self.sdk_owes = true;
        let mut feed = lock(&self.feed);
        feed.chunks.push_back(bytes);
        if let Some(w) = feed.waker.take() {
            w.wake();
        }
    }

    fn close(&mut self, error: Option<BoxError>) {
        self.sdk_owes = true;
        self.closed = true;
        let mut feed = lock(&self.feed);
        feed.end = Some(error);
        if let Some(w) = feed.waker.take() {
            w.wake();
        }
    }
}

fn delta_event(index: i32, text: String) -> ConverseStreamOutput {
    let event = ContentBlockDeltaEvent::builder().content_block_index(index).delta(ContentBlockDelta::Text(text)).build();
    // Both required members are set: `build` cannot fail here.
    ConverseStreamOutput::ContentBlockDelta(event.expect("a content block delta with its index and delta"))
}

/// What the SDK's receiver reads in place of the response body.
#[derive(Default)]
struct FeedState {
    chunks: VecDeque<Bytes>,
    /// Set at the end: `Some(None)` a clean end, `Some(Some(e))` a transport error.
    end: Option<Option<BoxError>>,
    waker: Option<Waker>,
}

struct Feed(Arc<Mutex<FeedState>>);

impl Body for Feed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut feed = lock(&self.0);
        if let Some(chunk) = feed.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match feed.end.take() {
            Some(Some(e)) => {
                feed.end = Some(None);
                Poll::Ready(Some(Err(e)))
            }
            Some(None) => {
                feed.end = Some(None);
                Poll::Ready(None)
            }
            None => {
                feed.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let feed = lock(&self.0);
        feed.chunks.is_empty() && matches!(feed.end, Some(None))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converse::frame::tests::{message, DELTA};

    fn delta(text: &str) -> Vec<u8> {
        message(&DELTA, &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{text}"}},"p":"abc"}}"#))
    }

    fn other(event: &str) -> Vec<u8> {
        message(&[(":event-type", event), (":message-type", "event")], r#"{"contentBlockIndex":0}"#)
    }

    /// A body that gives `chunks` one at a time, then ends.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    /// What `Own` makes of `chunks`: the deltas it read itself, and the bytes it handed the SDK,
    /// in order ("sdk:" marks each hand-over).
    fn read(chunks: Vec<Vec<u8>>) -> Vec<String> {
        let body = SdkBody::from_body_1_x(Chunks(chunks.into_iter().map(Bytes::from).collect()));
        let feed = Arc::new(Mutex::new(FeedState::default()));
        let mut own = Own { body, pending: Bytes::new(), spanning: BytesMut::new(), feed: feed.clone(), sdk_owes: false, closed: false };
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        for _ in 0..1000 {
            match own.poll_next(&mut cx) {
                Poll::Ready(Next::Delta(ConverseStreamOutput::ContentBlockDelta(e))) => seen.push(format!("delta:{}", e.delta.unwrap().as_text().unwrap())),
                Poll::Ready(Next::Delta(other)) => panic!("not a delta: {other:?}"),
                Poll::Ready(Next::Sdk) => {
                    let mut feed = lock(&feed);
                    let handed: Vec<u8> = feed.chunks.drain(..).flat_map(|c| c.to_vec()).collect();
                    seen.push(format!("sdk:{}", handed.len()));
                    if feed.end.is_some() {
                        seen.push("end".into());
                        return seen;
                    }
                    // What the SDK's receiver does next: answers, and `recv` goes on.
                    own.sdk_owes = false;
                }
                Poll::Pending => panic!("a body that never waits made it wait"),
            }
        }
        panic!("no end");
    }

    #[test]
    fn deltas_are_read_here_and_every_other_message_goes_to_the_sdk_in_order() {
        let (start, stop) = (other("contentBlockStart"), other("contentBlockStop"));
        let whole: Vec<u8> = [start.clone(), delta("a"), delta("b"), stop.clone(), delta("c")].concat();
        let expected = vec!["sdk:".to_string() + &start.len().to_string(), "delta:a".into(), "delta:b".into(), format!("sdk:{}", stop.len()), "delta:c".into(), "sdk:0".into(), "end".into()];
        assert_eq!(read(vec![whole.clone()]), expected, "all in one chunk");
        // Cut in two at every byte, and into single bytes: messages across chunks read the same.
        for cut in 1..whole.len() {
            assert_eq!(read(vec![whole[..cut].to_vec(), whole[cut..].to_vec()]), expected, "cut at {cut}");
        }
        assert_eq!(read(whole.iter().map(|b| vec![*b]).collect()), expected, "a byte at a time");
    }

    #[test]
    fn bytes_that_end_part_way_through_a_message_go_to_the_sdk_to_report() {
        let d = delta("a");
        assert_eq!(read(vec![d.clone(), d[..7].to_vec()]), vec!["delta:a".to_string(), "sdk:7".into(), "end".into()]);
        let unframable = vec![0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9];
        assert_eq!(read(vec![d, unframable]), vec!["delta:a".to_string(), "sdk:14".into(), "end".into()]);
    }

    /// Through the SDK's own client against the emulator, for answers of every shape the
    /// emulator scripts (reasoning, a tool call, an exception, a damaged, cut or unframable
    /// message, a dropped connection, a body that ends early): the tapped body gives the same
    /// events and the same error as the SDK's receiver alone, and its text deltas were read here.
    #[test]
    fn a_real_response_reads_as_the_sdk_reads_it() {
        let emulator = bedrock_emulator::Emulator::start(bedrock_emulator::Config::default());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = crate::http_client::build(&[], std::time::Duration::from_secs(5), crate::config::HttpVersion::Http2).unwrap();
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
            .endpoint_url(emulator.endpoint())
            .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(bedrock_emulator::TEST_ACCESS_KEY, bedrock_emulator::TEST_SECRET_KEY, None, None, "test"))
            .http_client(http)
            .build();
        let client = aws_sdk_bedrockruntime::Client::from_conf(config);
        let events = |directive: &str, tapped: bool| {
            rt.block_on(async {
                let message = aws_sdk_bedrockruntime::types::Message::builder()
                    .role(aws_sdk_bedrockruntime::types::ConversationRole::User)
                    .content(aws_sdk_bedrockruntime::types::ContentBlock::Text(format!("emulator: {directive}")))
                    .build()
                    .unwrap();
                let tap = Tap::default();
                let call = client.converse_stream().model_id("anthropic.claude-3-haiku-20240307-v1:0").messages(message);
                let output = if tapped { call.customize().config_override(aws_sdk_bedrockruntime::config::Builder::default().interceptor(tap.clone())).send().await } else { call.send().await }.unwrap();
                let mut receiver = Receiver::new(output.stream, &tap);
                assert_eq!(receiver.own.is_some(), tapped, "the body was tapped only when asked");
                let mut seen = Vec::new();
                let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    loop {
                        match receiver.recv().await {
                            Ok(Some(event)) => seen.push(format!("{event:?}")),
                            Ok(None) => break,
                            Err(e) => {
                                seen.push(format!("error: {}", aws_smithy_types::error::display::DisplayErrorContext(&e)));
                                break;
                            }
                        }
                    }
                })
                .await;
                if read.is_err() {
                    seen.push("still waiting after 10 s".into());
                }
                (seen, receiver.read_here)
            })
        };
        let scenarios = [
            "reasoning=1 tool=get_weather chunks=6",
            "reasoning=redacted chunks=2",
            "chunks=4 error=throttlingException at=mid after=3",
            "chunks=5 corrupt=crc after=3",
            "chunks=5 corrupt=cut after=3",
            "chunks=5 corrupt=json after=3",
            "chunks=5 corrupt=unknown after=3",
            "chunks=5 corrupt=huge after=3",
            "chunks=5 drop=3",
            "chunks=5 end=3",
        ];
        for directive in scenarios {
            let ((sdk, none), (ours, read_here)) = (events(directive, false), events(directive, true));
            assert_eq!(ours, sdk, "{directive}");
            assert_eq!(none, 0);
            let text_deltas = ours.iter().filter(|e| e.contains("delta: Some(Text(")).count();
            assert!(text_deltas >= 2, "{directive}: {ours:#?}");
            assert_eq!(read_here, text_deltas, "{directive}: every text delta was read here");
        }
    }
}
