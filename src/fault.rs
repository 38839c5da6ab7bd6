//! Build-time fault hooks, so tests can drive the plugin's own failure paths (a panic in a
//! stream task, a panic inside a delivery pass) through the C ABI. Compiled in only with the
//! `fault-hooks` feature, which only the test build `tests/plugin-next` enables: a shipped
//! plugin refuses the request field `faultHook` like any unknown field.

/// Which fault a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The stream's task panics after its first events were handed over.
    PanicInTask,
    /// The delivery pass panics before calling the host with its first batch.
    PanicInDelivery,
}

/// The request's top-level fields this build accepts besides the documented ones.
pub const REQUEST_FIELDS: &[&str] = if cfg!(feature = "fault-hooks") { &["faultHook"] } else { &[] };

impl Fault {
    pub fn parse(name: Option<&str>) -> Result<Fault, String> {
        match name {
            None => Ok(Fault::None),
            Some("panicInTask") => Ok(Fault::PanicInTask),
            Some("panicInDelivery") => Ok(Fault::PanicInDelivery),
            Some(other) => Err(format!("must be panicInTask or panicInDelivery; got \"{other}\"")),
        }
    }

    /// Panics when this is the fault asked for (never in a build without the feature, where
    /// every request has `Fault::None`).
    #[inline]
    pub fn hit(self, at: Fault) {
        if cfg!(feature = "fault-hooks") && self != Fault::None && self == at {
            panic!("fault hook: {at:?}");
        }
    }
}
