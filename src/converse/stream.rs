//! One ConverseStream call as a task on the provider's runtime: send, read events under the idle
//! timeout, translate, and hand them to the delivery thread through a bounded channel (when it is
//! full the task stops reading the HTTP body: real backpressure).

use super::errors;
use super::request::StreamRequest;
use super::translate::Translator;
use crate::error::{Error, Kind, Result};
use crate::events::Event;
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
    Error::new(Kind::Timeout, format!("no event from Bedrock for {ms} ms (options.idleTimeoutMs)"))
}

pub async fn run(
    client: aws_sdk_bedrockruntime::Client,
    request: StreamRequest,
    tx: mpsc::Sender<Event>,
    slot: Arc<TerminalSlot>,
    cancel: Arc<Notify>,
) {
    let translator = Translator::new(&request.model.id, request.model.cost);
    let mut run = Run { translator, slot, tx: Some(tx) };
    let outcome = drive(&client, request, &mut run, &cancel).await;
    let terminal = match outcome.and_then(|()| run.translator.finish()) {
        Ok(done) => done,
        Err(e) => Event::failure(run.translator.partial(), &e),
    };
    run.finish(terminal);
}

async fn drive(client: &aws_sdk_bedrockruntime::Client, request: StreamRequest, run: &mut Run, cancel: &Notify) -> Result<()> {
    let idle = request.idle_timeout;
    let send = client
        .converse_stream()
        .model_id(request.model.id.as_str())
        .set_messages(Some(request.messages))
        .set_system(Some(request.system).filter(|s| !s.is_empty()))
        .set_tool_config(request.tool_config)
        .inference_config(request.inference)
        .set_additional_model_request_fields(request.additional_fields)
        .send();
    let output = tokio::select! {
        biased;
        _ = cancel.notified() => return Err(cancelled()),
        r = tokio::time::timeout(idle, send) => match r {
            Err(_) => return Err(idle_timeout(idle.as_millis())),
            Ok(r) => r.map_err(errors::from_send_error)?,
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
