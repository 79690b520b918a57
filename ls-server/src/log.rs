//! Structured logs: one JSON object per line on standard error. Callers pass message ids,
//! parties, sizes and error codes — never payloads, keys or passwords.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            _ => return None,
        })
    }
}

static MIN: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(l: Level) {
    MIN.store(l as u8, Ordering::Relaxed);
}

/// A field value.
pub enum V<'a> {
    S(&'a str),
    N(u64),
    F(f64),
}

impl<'a> From<&'a str> for V<'a> {
    fn from(s: &'a str) -> Self {
        V::S(s)
    }
}
impl<'a> From<&'a String> for V<'a> {
    fn from(s: &'a String) -> Self {
        V::S(s)
    }
}
impl From<u64> for V<'_> {
    fn from(n: u64) -> Self {
        V::N(n)
    }
}
impl From<usize> for V<'_> {
    fn from(n: usize) -> Self {
        V::N(n as u64)
    }
}
impl From<f64> for V<'_> {
    fn from(n: f64) -> Self {
        V::F(n)
    }
}

/// Log `event` with fields.
pub fn event(level: Level, event: &str, fields: &[(&str, V)]) {
    if (level as u8) < MIN.load(Ordering::Relaxed) {
        return;
    }
    write(level, event, fields)
}

/// An info line written whatever the level (start-up: where the service listens).
pub fn always(ev: &str, fields: &[(&str, V)]) {
    write(Level::Info, ev, fields)
}

fn write(level: Level, event: &str, fields: &[(&str, V)]) {
    let mut m = serde_json::Map::new();
    m.insert(
        "ts".into(),
        ls_core::time::iso8601(ls_core::time::now_unix()).into(),
    );
    m.insert("level".into(), level.as_str().into());
    m.insert("event".into(), event.into());
    for (k, v) in fields {
        let v: serde_json::Value = match v {
            V::S(s) => (*s).into(),
            V::N(n) => (*n).into(),
            V::F(f) => ((f * 1000.0).round() / 1000.0).into(),
        };
        m.insert((*k).into(), v);
    }
    let line = serde_json::Value::Object(m).to_string();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

pub fn debug(ev: &str, fields: &[(&str, V)]) {
    event(Level::Debug, ev, fields)
}
pub fn info(ev: &str, fields: &[(&str, V)]) {
    event(Level::Info, ev, fields)
}
pub fn warn(ev: &str, fields: &[(&str, V)]) {
    event(Level::Warn, ev, fields)
}
pub fn error(ev: &str, fields: &[(&str, V)]) {
    event(Level::Error, ev, fields)
}
