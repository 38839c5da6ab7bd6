//! One ConverseStream call as a task on the provider's runtime: send, read events under the idle
//! timeout, translate, and hand them to the delivery thread through a bounded channel (when it is
//! full the task stops reading the HTTP body: real backpressure).

use super::errors;
use super::request::StreamRequest;
use super::translate::Translator;
use crate::error::{Error, Kind, Result};
use crate::events::Event;
use crate::clients::Clients;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput;
use aws_sdk_bedrockruntime::operation::RequestId;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Where the terminal event waits for the delivery thread. It never goes through the bounded
/// channel, so a full queue or a dropped task can never lose or duplicate it.
#[derive(Default)]
pub struct TerminalSlot(Mutex<Option<Event>>);

impl TerminalSlot {
    fn put_if_empty(&self, event: Event) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(event);
        }
    }

    pub fn take(&self) -> Option<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Owns what the terminal event is made of; if the task is dropped before it finished (runtime
/// shutdown), `Drop` still leaves an `error/aborted` event with the partial message.
struct Run {
    translator: Translator,
    slot: Arc<TerminalSlot>,
    tx: Option<mpsc::Sender<Event>>,
}

impl Run {
    fn finish(&mut self, terminal: Event) {
        self.slot.put_if_empty(terminal);
        // Closing the channel after the slot is filled is what tells the delivery thread to look.
        self.tx = None;
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let e = Error::new(Kind::Cancelled, "the stream was stopped because the provider is shutting down");
            self.finish(Event::failure(self.translator.partial(), &e));
        }
    }
}

pub fn cancelled() -> Error {
    Error::new(Kind::Cancelled, "the stream was cancelled").retryable(false)
}

fn idle_timeout(ms: u128) -> Error {
    Error::new(Kind::Timeout, format!("timed out: no event from Bedrock for {ms} ms (options.idleTimeoutMs)"))
}

pub async fn run(
    clients: Arc<Clients>,
    request: StreamRequest,
    tx: mpsc::Sender<Event>,
    slot: Arc<TerminalSlot>,
    cancel: Arc<Notify>,
) {
    let translator = Translator::new(&request.model.id, request.model.cost);
    let mut run = Run { translator, slot, tx: Some(tx) };
    let outcome = drive(&clients, request, &mut run, &cancel).await;
    let terminal = match outcome.and_then(|()| run.translator.finish()) {
        Ok(done) => done,
        Err(e) => Event::failure(run.translator.partial(), &e),
    };
    run.finish(terminal);
}

/// Bedrock's answer when a model is offered only through inference profiles.
fn needs_profile(e: &Error) -> bool {
    e.aws_error_type.as_deref() == Some("ValidationException") && e.message.to_ascii_lowercase().contains("on-demand throughput")
}

/// Sends the request, retrying once with fresh credentials when Bedrock calls them expired or
/// unknown, and once with the inference profile when the model is not offered on demand.
async fn open(clients: &Clients, request: &StreamRequest, run: &mut Run) -> Result<ConverseStreamOutput> {
    let mut built = clients.current();
    let mut model_id = request.model.id.clone();
    let mut fallback = request.fallback_model_id.clone();
    let mut refreshed = false;
    loop {
        let sent = built
            .runtime
            .converse_stream()
            .model_id(model_id.as_str())
            .set_messages(Some(request.messages.clone()))
            .set_system(Some(request.system.clone()).filter(|s| !s.is_empty()))
            .set_tool_config(request.tool_config.clone())
            .inference_config(request.inference.clone())
            .set_additional_model_request_fields(request.additional_fields.clone())
            .send()
            .await;
        let e = match sent {
            Ok(output) => {
                if model_id != request.model.id {
                    run.translator.served_by(&model_id);
                }
                return Ok(output);
            }
            Err(e) => clients.explain(errors::from_send_error(e)),
        };
        if !refreshed && clients.worth_refreshing(&e) {
            refreshed = true;
            built = clients.refresh(built.generation).await;
        } else if let Some(profile) = fallback.take().filter(|_| needs_profile(&e)) {
            crate::log::info(&format!("{model_id} is not offered on demand here; retrying with inference profile {profile}"));
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

async fn drive(clients: &Clients, request: StreamRequest, run: &mut Run, cancel: &Notify) -> Result<()> {
    let idle = request.idle_timeout;
    let output = tokio::select! {
        biased;
        _ = cancel.notified() => return Err(cancelled()),
        r = tokio::time::timeout(idle, open(clients, &request, run)) => match r {
            Err(_) => return Err(idle_timeout(idle.as_millis())),
            Ok(r) => r?,
        },
    };
    let request_id = output.request_id().map(str::to_string);
    let mut stream = output.stream;
    let tx = run.tx.clone().ok_or_else(cancelled)?;
    let mut batch = Vec::with_capacity(8);
    loop {
        let item = tokio::select! {
            biased;
            _ = cancel.notified() => return Err(cancelled()),
            r = tokio::time::timeout(idle, stream.recv()) => r,
        };
        let event = match item {
            Err(_) => return Err(idle_timeout(idle.as_millis())),
            Ok(Err(e)) => return Err(errors::from_stream_error(e, request_id.as_deref())),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(event))) => event,
        };
        run.translator.on(event, &mut batch);
        for e in batch.drain(..) {
            tokio::select! {
                biased;
                _ = cancel.notified() => return Err(cancelled()),
                sent = tx.send(e) => sent.map_err(|_| cancelled())?,
            }
        }
    }
}
