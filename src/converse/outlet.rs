//! What a ConverseStream task needs from whoever delivers its events to the host. The provider
//! implements it; the task never sees threads, callbacks or the host.

use crate::events::Event;
use std::sync::Arc;
use tokio::sync::Notify;

pub trait Outlet: Send + Sync + 'static {
    /// Queues `events` (draining the vector) for delivery, in order. False when the queue is
    /// full: the task then stops reading the network until `room` is notified.
    fn send(self: &Arc<Self>, events: &mut Vec<Event>) -> bool;

    /// Whether the queue has room again.
    fn has_room(&self) -> bool;

    /// Notified when the deliverer has taken events out of a full queue.
    fn room(&self) -> &Notify;

    /// Whether the host asked to stop (cheap: read once per event).
    fn cancel_requested(&self) -> bool;

    /// Notified when the host asks to stop.
    fn cancelled(&self) -> &Notify;

    /// The stream's one terminal event; what was sent before it is delivered first.
    fn finish(self: &Arc<Self>, terminal: Event);

    /// Asks for the lines this stream's delivery will touch (a hint, see `prefetch.rs`): called
    /// as the task wakes for a token, before the SDK decodes it.
    fn warm(&self) {}

    /// A test build's fault hook for this stream.
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::None
    }
}
