//! berth's logs go to Python's `logging`, under the logger `berth` (`berth.<crate>` per crate):
//! `logging.basicConfig(level=logging.INFO)` shows what the command line shows with
//! `BERTH_LOG=info`. Which events are produced at all is `BERTH_LOG`'s to say (default `info`
//! for berth's own crates); Python's logger levels and handlers decide what is shown.

use std::sync::Once;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;

/// Installs the bridge as the process's tracing subscriber, once; a subscriber set before (by
/// the embedding program) is kept.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{},berth=info,berth_loader=info", berth_cli::DEFAULT_LOG))
        });
        let subscriber = tracing_subscriber::registry().with(filter).with(PythonLogging);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The layer that hands every event to `logging.getLogger("berth.<crate>").log(level, message)`.
struct PythonLogging;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PythonLogging {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let metadata = event.metadata();
        let mut text = Message::default();
        event.record(&mut text);
        let level = match *metadata.level() {
            tracing::Level::ERROR => 40,
            tracing::Level::WARN => 30,
            tracing::Level::INFO => 20,
            _ => 10,
        };
        let crate_name = metadata.target().split("::").next().unwrap_or("berth");
        let logger = if crate_name == "berth" {
            "berth".to_string()
        } else {
            format!("berth.{}", crate_name.trim_start_matches("berth_"))
        };
        Python::attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", (logger,)))
                .and_then(|logger| logger.call_method1("log", (level, text.0)));
            // A failing handler is Python's to report; it must not stop the load.
            if let Err(e) = logged {
                e.print(py);
            }
        });
    }
}

/// An event's message and fields as one line: `message key=value …`.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        } else {
            self.0.push_str(&format!("{}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}
