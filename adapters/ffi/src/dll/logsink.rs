//! The log file of a batteries handle, and what carries the libraries' own diagnostics into it.
//!
//! A handle writes its own lines through its [`LogSink`]. The client driver and the WebRTC
//! adapter log through `tracing`, and the WebRTC stack (webrtc-rs) through the `log` crate, on
//! the background runtime's threads. The first handle that opens a log file installs, once per
//! process, a `tracing` subscriber and a `log` logger that write every record to each live
//! sink whose level lets it through (a record cannot tell which handle it belongs to; a game
//! runs one handle). If the process already has a subscriber or logger (a Rust program linking
//! the static library), those are left alone and only the handle's own lines are written.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use ro_p2p_core::config::LogLevel;
use tracing::field::{Field, Visit};

/// Orders the levels from most to least verbose: a sink writes a line whose rank is at least
/// its own level's.
fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        _ => 4,
    }
}

/// One handle's log file and level.
pub(crate) struct LogSink {
    file: Mutex<File>,
    level: LogLevel,
    epoch: std::time::Instant,
}

impl LogSink {
    /// Writes to `file` the lines at `level` or above, timed from now.
    pub fn new(file: File, level: LogLevel) -> Arc<LogSink> {
        let sink =
            Arc::new(LogSink { file: Mutex::new(file), level, epoch: std::time::Instant::now() });
        register(&sink);
        sink
    }

    /// Whether a line at `level` is written.
    pub fn enabled(&self, level: LogLevel) -> bool {
        rank(level) >= rank(self.level)
    }

    /// Writes `[elapsed] [level] message` (a full disk must not break the game: errors are
    /// ignored).
    pub fn write(&self, level: LogLevel, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let ms = self.epoch.elapsed().as_millis();
        let line = format!("[{}.{:03}s] [{}] {message}\n", ms / 1000, ms % 1000, level.as_str());
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// The live sinks, for the process-wide subscriber and logger.
static SINKS: Mutex<Vec<Weak<LogSink>>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();
/// Whether the process's `log` logger is ours (so its level is ours to set).
static LOGGER_OURS: AtomicBool = AtomicBool::new(false);

fn register(sink: &Arc<LogSink>) {
    let mut most_verbose = sink.level;
    if let Ok(mut sinks) = SINKS.lock() {
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(Arc::downgrade(sink));
        for live in sinks.iter().filter_map(Weak::upgrade) {
            if rank(live.level) < rank(most_verbose) {
                most_verbose = live.level;
            }
        }
    }
    INSTALL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Forward);
        if log::set_logger(&FORWARD_LOG).is_ok() {
            LOGGER_OURS.store(true, Ordering::Relaxed);
        }
    });
    // `log` macros below this level cost nothing (the WebRTC stack logs per packet at debug
    // and trace). Only ever widened: a sink that goes keeps it as it was.
    if LOGGER_OURS.load(Ordering::Relaxed) {
        let filter = log_filter(most_verbose);
        if filter > log::max_level() {
            log::set_max_level(filter);
        }
    }
}

fn log_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        _ => log::LevelFilter::Error,
    }
}

/// Writes one record to every live sink that takes its level (formatting it only then).
fn forward(level: LogLevel, target: &str, message: &dyn std::fmt::Display) {
    let sinks: Vec<Arc<LogSink>> = match SINKS.lock() {
        Ok(sinks) => sinks.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    if sinks.iter().all(|s| !s.enabled(level)) {
        return;
    }
    let line = format!("{target}: {message}");
    for sink in sinks {
        sink.write(level, &line);
    }
}

/// Whether any live sink takes `level`.
fn wanted(level: LogLevel) -> bool {
    SINKS.lock().is_ok_and(|sinks| sinks.iter().filter_map(Weak::upgrade).any(|s| s.enabled(level)))
}

fn from_tracing(level: &tracing::Level) -> LogLevel {
    match *level {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::DEBUG => LogLevel::Debug,
        tracing::Level::TRACE => LogLevel::Trace,
    }
}

fn from_log(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

/// The process-wide `tracing` subscriber: events only (spans are not recorded).
struct Forward;

impl tracing::Subscriber for Forward {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Asked again at every event: which sinks are live changes as handles come and go.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        wanted(from_tracing(metadata.level()))
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = Fields(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        forward(from_tracing(meta.level()), meta.target(), &text.0.trim_start());
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// An event's fields as `message key=value ...`.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// The process-wide `log` logger (webrtc-rs logs through `log`).
struct ForwardLog;

static FORWARD_LOG: ForwardLog = ForwardLog;

impl log::Log for ForwardLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        wanted(from_log(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        // `forward` skips the record (before formatting it) when no sink takes its level.
        forward(from_log(record.level()), record.target(), record.args());
    }

    fn flush(&self) {}
}
