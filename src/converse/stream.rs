//! One ConverseStream call as a task on the provider's runtime: send, read events under the idle
//! timeout, translate, and hand them to the outlet in batches. Events decoded from bytes already
//! received go out together when the task would next wait for the network (or every
//! `BATCH` events), so a burst costs the deliverer one wake-up, not one per event; when the
//! outlet is full the task stops reading the HTTP body (real backpressure).

use super::connecting::Lane;
use super::errors;
use super::outlet::Outlet;
use super::profile_base::ProfileBases;
use super::receiver::{Item, Receiver, Tap};
use super::request::StreamRequest;
use super::translate::Translator;
use crate::clients::Clients;
use crate::error::{Error, Kind, Result};
use crate::events::Event;
use crate::log;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput;
use aws_sdk_bedrockruntime::operation::RequestId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::futures::Notified;

/// Events handed over at once at most, so a stream that never waits still delivers steadily.
const BATCH: usize = 64;

/// Owns what the terminal event is made of; if the task is dropped before it finished (runtime
/// shutdown), `Drop` still leaves an `error/aborted` event with the partial message.
struct Run<O: Outlet> {
    translator: Translator,
    /// Taken by the one terminal event.
    outlet: Option<Arc<O>>,
}

impl<O: Outlet> Run<O> {
    fn finish(&mut self, terminal: Event) {
        if let Some(outlet) = self.outlet.take() {
            outlet.finish(terminal);
        }
    }
}

impl<O: Outlet> Drop for Run<O> {
    fn drop(&mut self) {
        if self.outlet.is_none() {
            return;
        }
        // Unwinding: a bug in the plugin, not the host's cancel; pi-ai must not take it for one.
        let e = if std::thread::panicking() {
            Error::new(Kind::Internal, "internal error: the plugin failed while running this stream")
        } else {
            Error::new(Kind::Cancelled, "the stream was stopped because the provider is shutting down")
        };
        self.finish(Event::failure(self.translator.partial(), &e));
    }
}

pub fn cancelled() -> Error {
    Error::new(Kind::Cancelled, "the stream was cancelled").retryable(false)
}

fn idle_timeout(ms: u128) -> Error {
    Error::new(Kind::Timeout, format!("timed out: no event from Bedrock for {ms} ms (options.idleTimeoutMs)"))
}

/// Runs one stream to its terminal event. `profile_bases` is the provider's cache of
/// application-profile base models (passed down: the clients know nothing of Converse).
/// `request` comes boxed: a task keeps its arguments for its whole life, and the request is needed
/// only until the response starts.
/// `lane`: the client of the thread it runs on, and that client's connection.
pub async fn run<O: Outlet>(clients: Arc<Clients>, profile_bases: Arc<ProfileBases>, lane: Lane, request: Box<StreamRequest>, outlet: Arc<O>) {
    let translator = Translator::new(&request.model.id, request.model.cost, request.tool_names.clone());
    let mut run = Run { translator, outlet: Some(outlet.clone()) };
    let model_id = request.model.id.clone();
    if log::enabled(log::Level::Debug) {
        log::debug("converse", &format!("{model_id}: stream starting"));
    }
    let hold = request.hold_output;
    let outcome = drive(&clients, &profile_bases, &lane, request, &mut run, &outlet).await;
    let terminal = match outcome.and_then(|()| run.translator.finish()) {
        Ok(done) => done,
        Err(e) => {
            if log::enabled(log::Level::Debug) {
                log::debug("converse", &format!("{model_id}: stream failed: {}", e.kind.code()));
            }
            let mut partial = run.translator.partial();
            if hold {
                // Held output was never shown: the failure must not show it either.
                partial.content.clear();
            }
            Event::failure(partial, &e)
        }
    };
    if log::enabled(log::Level::Debug) && matches!(terminal, Event::Done { .. }) {
        log::debug("converse", &format!("{model_id}: stream done"));
    }
    run.finish(terminal);
}

/// Bedrock's answer when a model is offered only through inference profiles.
fn needs_profile(e: &Error) -> bool {
    e.aws_error_type.as_deref() == Some("ValidationException") && e.message.to_ascii_lowercase().contains("on-demand throughput")
}

/// Sends the request, retrying once with fresh credentials when Bedrock calls them expired or
/// unknown, and once with the inference profile when the model is not offered on demand. The
/// `Tap` holds the successful response's body (`receiver.rs`).
async fn open<O: Outlet>(clients: &Clients, lane: &Lane, request: &StreamRequest, run: &mut Run<O>) -> Result<(ConverseStreamOutput, Tap)> {
    let mut built = clients.current();
    let mut model_id = request.model.id.clone();
    let mut fallback = request.fallback_model_id.clone();
    let mut refreshed = false;
    loop {
        let client = built.stream_client(lane.client);
        let call = client
            .converse_stream()
            .model_id(model_id.as_str())
            .set_messages(Some(request.messages.clone()))
            .set_system(Some(request.system.clone()).filter(|s| !s.is_empty()))
            .set_tool_config(request.tool_config.clone())
            .inference_config(request.inference.clone())
            .set_additional_model_request_fields(request.additional_fields.clone())
            .set_service_tier(request.service_tier.clone())
            .set_output_config(request.output_config.clone())
            .set_guardrail_config(request.guardrail.clone())
            .set_performance_config(request.performance.clone())
            .set_request_metadata(request.request_metadata.clone())
            .set_additional_model_response_field_paths(request.response_field_paths.clone());
        let opener = lane.connecting.enter().await;
        let tap = Tap::default();
        let sent = call.customize().config_override(request.retry.config(client.config().retry_config()).interceptor(tap.clone())).send().await;
        // A response, an error response too, came over a connection the next requests can share.
        let responded = match &sent {
            Ok(_) => true,
            Err(e) => matches!(e, SdkError::ServiceError(_) | SdkError::ResponseError(_)),
        };
        match (opener, responded) {
            (Some(opener), true) => opener.opened(),
            (opener, false) => {
                drop(opener);
                lane.connecting.cooled();
            }
            (None, true) => {}
        }
        let e = match sent {
            Ok(output) => {
                if model_id != request.model.id {
                    run.translator.served_by(&model_id);
                }
                return Ok((output, tap));
            }
            Err(e) => clients.explain(errors::from_send_error(e, &request.retry)),
        };
        if !refreshed && clients.worth_refreshing(&e) {
            refreshed = true;
            built = clients.refresh(built.generation).await;
        } else if let Some(profile) = fallback.take().filter(|_| needs_profile(&e)) {
            crate::log::info("converse", &format!("{model_id} is not offered on demand here; retrying with inference profile {profile}"));
            model_id = profile;
        } else if model_id != request.model.id {
            let mut e = e;
            e.message = format!("{} (after retrying {} with inference profile {model_id})", e.message, request.model.id);
            return Err(e);
        } else {
            return Err(e);
        }
    }
}

/// The request mapped for its application profile's base model, once Bedrock has named it.
async fn with_profile_base(clients: &Clients, profile_bases: &ProfileBases, mut request: StreamRequest) -> Result<StreamRequest> {
    let Some(text) = request.unresolved_profile.take() else {
        return Ok(request);
    };
    match profile_bases.base_of(clients, &request.model.id).await {
        Some(base) => {
            let fallback = request.fallback_model_id.take();
            let mut resolved = super::request::with_base_model(&text, &request.model, &base)?;
            resolved.fallback_model_id = fallback;
            // The provider's guardrail, when the request named none, was added after parsing.
            if resolved.guardrail.is_none() {
                resolved.guardrail = request.guardrail;
            }
            Ok(resolved)
        }
        None => Ok(request),
    }
}

/// Sends the request (once its application profile is resolved, when it names one), under the
/// idle timeout and the stream's cancel.
async fn connect<O: Outlet>(clients: &Clients, profile_bases: &ProfileBases, lane: &Lane, request: Box<StreamRequest>, run: &mut Run<O>, outlet: &Arc<O>) -> Result<(ConverseStreamOutput, Tap)> {
    let idle = request.idle_timeout;
    // Only an application profile not yet resolved waits here; every other stream goes straight on.
    let request = if request.unresolved_profile.is_some() {
        tokio::select! {
            biased;
            _ = outlet.cancelled().notified() => return Err(cancelled()),
            r = with_profile_base(clients, profile_bases, *request) => r?,
        }
    } else {
        *request
    };
    tokio::select! {
        biased;
        _ = outlet.cancelled().notified() => Err(cancelled()),
        r = tokio::time::timeout(idle, open(clients, lane, &request, run)) => match r {
            Err(_) => Err(idle_timeout(idle.as_millis())),
            Ok(r) => r,
        },
    }
}

async fn drive<O: Outlet>(clients: &Clients, profile_bases: &ProfileBases, lane: &Lane, request: Box<StreamRequest>, run: &mut Run<O>, outlet: &Arc<O>) -> Result<()> {
    let idle = request.idle_timeout;
    // Refusal-safe: events wait in `pending` until the stream ended well; on any failure they
    // are dropped with it. Only `start` goes out at once: hosts time the first event (OpenClaw's
    // first-event timeout), and it carries nothing of the answer.
    let hold = request.hold_output;
    // Boxed: sending (the SDK's future, ~12 KB) is needed only until the response starts; inline,
    // it would size this task for the whole stream. The request goes with it.
    let (output, tap) = Box::pin(connect(clients, profile_bases, lane, request, run, outlet)).await?;
    let request_id = output.request_id().map(str::to_string);
    let mut stream = Receiver::new(output.stream, &tap);
    // One registration each for the stream's life, touched only when the task is about to wait
    // (`Wait`): the per-event path touches no timer and no waiter list.
    let mut cancel = std::pin::pin!(outlet.cancelled().notified());
    cancel.as_mut().enable();
    let idle_timer = std::pin::pin!(tokio::time::sleep(idle));
    // Grown as needed: at a model's pace a stream queues an event or two at a time, and this
    // buffer circulates with the outbox's two (swapped, not copied), so a preallocated batch
    // would sit in every open stream.
    let mut pending = Vec::new();
    let mut wait = Wait { cancel_armed: false, idle, idle_timer };
    let request_id = request_id.as_deref();
    loop {
        if outlet.cancel_requested() {
            return Err(cancelled());
        }
        let step = {
            let mut next = std::pin::pin!(stream.recv());
            let first = poll_once(next.as_mut(), |item| intake(item, &mut run.translator, &mut pending, request_id)).await;
            match first {
                Some(step) => step,
                None => {
                    // Nothing more without waiting for the network: deliver what we have first.
                    let waited = !hold && hand_over(outlet, &mut pending, cancel.as_mut()).await?;
                    // `next` has just been polled with this task's waker and said it would wait;
                    // unless the hand-over waited too (a wake-up from `next` may have come and
                    // gone meanwhile), polling it again before that wake-up finds nothing.
                    let take = Take { translator: &mut run.translator, pending: &mut pending, request_id };
                    wait.next(next.as_mut(), !waited, outlet.as_ref(), cancel.as_mut(), take).await?
                }
            }
        };
        match step {
            Step::Event => {}
            // Held output goes out once the answer is known to be whole and not refused.
            Step::End if hold && !run.translator.ends_well() => return Ok(()),
            Step::End => return hand_over(outlet, &mut pending, cancel.as_mut()).await.map(drop),
            Step::Failed(e) => {
                if !hold {
                    hand_over(outlet, &mut pending, cancel.as_mut()).await?;
                }
                return Err(e);
            }
        }
        // `start` is the first event of a stream and comes once: at the head of `pending` only then.
        if hold && matches!(pending.first(), Some(Event::Start { .. })) {
            let mut start = vec![pending.remove(0)];
            hand_over(outlet, &mut start, cancel.as_mut()).await?;
        }
        // Compiled out of a shipped build: nothing on the per-event path.
        if cfg!(feature = "fault-hooks") && !pending.is_empty() && outlet.fault() == crate::fault::Fault::PanicInTask {
            hand_over(outlet, &mut pending, cancel.as_mut()).await?;
            outlet.fault().hit(crate::fault::Fault::PanicInTask);
        }
        if pending.len() >= BATCH && !hold {
            hand_over(outlet, &mut pending, cancel.as_mut()).await?;
        }
    }
}

/// One item of the SDK's event stream, as `drive` goes on from it.
enum Step {
    /// Translated into `pending`.
    Event,
    /// The stream ended.
    End,
    Failed(Error),
}

/// Uses up the SDK's item where it was polled. An item returned out of the poll would be kept in
/// the task's state across the loop's awaits, written there and copied back out for every token.
fn intake(item: Item, translator: &mut Translator, pending: &mut Vec<Event>, request_id: Option<&str>) -> Step {
    match item {
        Ok(Some(event)) => {
            translator.on(event, pending);
            Step::Event
        }
        Ok(None) => Step::End,
        Err(e) => Step::Failed(errors::from_stream_error(e, request_id)),
    }
}

/// What a wait hands the item it got to, and warms as it wakes.
struct Take<'a> {
    translator: &'a mut Translator,
    pending: &'a mut Vec<Event>,
    request_id: Option<&'a str>,
}

impl Take<'_> {
    fn warm(&self) {
        self.translator.warm();
        crate::prefetch::span(self.pending.as_ptr().cast(), std::mem::size_of::<Event>());
    }

    fn take(&mut self, item: Item) -> Step {
        intake(item, self.translator, self.pending, self.request_id)
    }
}

/// Polls `future` once: what `take` made of its output if it is ready now, None if it would wait
/// (its waker is then registered, so it can be awaited next).
async fn poll_once<F: Future, T>(mut future: Pin<&mut F>, mut take: impl FnMut(F::Output) -> T) -> Option<T> {
    std::future::poll_fn(|cx| Poll::Ready(match future.as_mut().poll(cx) {
        Poll::Ready(v) => Some(take(v)),
        Poll::Pending => None,
    }))
    .await
}

/// Sends `pending` to the outlet and, when its queue is full, waits for room (or a cancel).
/// True when it waited.
async fn hand_over<O: Outlet>(outlet: &Arc<O>, pending: &mut Vec<Event>, mut cancel: Pin<&mut Notified<'_>>) -> Result<bool> {
    if pending.is_empty() || outlet.send(pending) {
        return Ok(false);
    }
    while !outlet.has_room() {
        tokio::select! {
            biased;
            _ = cancel.as_mut() => return Err(cancelled()),
            _ = outlet.room().notified() => {}
        }
    }
    Ok(true)
}

/// A stream's waits for the network, under its cancel and idle timeout. At a model's pace a
/// stream waits once per token, so a wait touches as little as it can: the cancel signal is
/// polled once for the stream's life (its waker stays registered, and a cancel sets the flag
/// before it notifies), and the idle timer is not moved at every wait (a trip through the timer
/// wheel per token): when it fires, it is moved on to this wait's own deadline, and only a wait
/// that reached it times out.
struct Wait<'a> {
    cancel_armed: bool,
    idle: std::time::Duration,
    idle_timer: Pin<&'a mut tokio::time::Sleep>,
}

impl Wait<'_> {
    /// The next item of `next`, as `take` made it a step; `just_polled`: `next` was polled with
    /// this task's waker since it last woke the task, so the first look leaves it alone.
    async fn next<F: Future<Output = Item>, O: Outlet>(&mut self, mut next: Pin<&mut F>, just_polled: bool, outlet: &O, mut cancel: Pin<&mut Notified<'_>>, mut take: Take<'_>) -> Result<Step> {
        let mut skip = just_polled;
        let due = tokio::time::Instant::now() + self.idle;
        std::future::poll_fn(|cx| {
            // Woken, most likely for a token: what handling it touches is asked for first, and
            // comes in while the SDK decodes it. An event that is there ends the wait before the
            // cancel flag and the timer are looked at (the loop reads the flag before handing
            // it over; a stream that got an event was not idle).
            if !std::mem::take(&mut skip) {
                outlet.warm();
                take.warm();
                if let Poll::Ready(item) = next.as_mut().poll(cx) {
                    return Poll::Ready(Ok(take.take(item)));
                }
            }
            if !self.cancel_armed {
                if cancel.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(cancelled()));
                }
                self.cancel_armed = true;
            } else if outlet.cancel_requested() {
                return Poll::Ready(Err(cancelled()));
            }
            while self.idle_timer.as_mut().poll(cx).is_ready() {
                if tokio::time::Instant::now() >= due {
                    return Poll::Ready(Err(idle_timeout(self.idle.as_millis())));
                }
                self.idle_timer.as_mut().reset(due);
            }
            Poll::Pending
        })
        .await
    }
}
