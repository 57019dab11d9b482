//! Keeps panics a test injects on purpose out of the test output.

use std::sync::Once;

/// Every panic a suite injects on purpose starts with this, so the hook
/// below can tell it from a real failure.
pub const SCRIPTED: &str = "scripted panic";

/// Installs (once per test binary) a panic hook that stays silent for
/// scripted panics and reports every other panic as before. Thousands of
/// injected panics would otherwise bury a real failure's message.
pub fn silence_scripted_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|message| message.starts_with(SCRIPTED)) {
                report(info);
            }
        }));
    });
}
