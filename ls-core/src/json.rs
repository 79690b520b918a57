//! A minimal JSON value and writer, for `inspect` and machine-readable output through the C ABI.

use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Add a member to an object (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Json {
        if let Json::Obj(m) = &mut self {
            m.push((key.to_string(), value.into()));
        }
        self
    }

    pub fn set(&mut self, key: &str, value: impl Into<Json>) {
        if let Json::Obj(m) = self {
            m.retain(|(k, _)| k != key);
            m.push((key.to_string(), value.into()));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }

    fn write(&self, s: &mut String, indent: usize) {
        match self {
            Json::Null => s.push_str("null"),
            Json::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => {
                let _ = write!(s, "{n}");
            }
            Json::Str(v) => escape(s, v),
            Json::Arr(a) if a.is_empty() => s.push_str("[]"),
            Json::Obj(m) if m.is_empty() => s.push_str("{}"),
            Json::Arr(a) => {
                s.push_str("[\n");
                for (i, v) in a.iter().enumerate() {
                    pad(s, indent + 1);
                    v.write(s, indent + 1);
                    s.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                pad(s, indent);
                s.push(']');
            }
            Json::Obj(m) => {
                s.push_str("{\n");
                for (i, (k, v)) in m.iter().enumerate() {
                    pad(s, indent + 1);
                    escape(s, k);
                    s.push_str(": ");
                    v.write(s, indent + 1);
                    s.push_str(if i + 1 < m.len() { ",\n" } else { "\n" });
                }
                pad(s, indent);
                s.push('}');
            }
        }
    }
}

impl crate::error::Error {
    /// `{code, name, message}`, as `inspect` and machine output report an error.
    pub fn to_json(&self) -> Json {
        Json::obj()
            .with("code", self.code().as_i32() as i64)
            .with("name", format!("LS_{}", self.code().name()))
            .with("message", self.to_string())
    }
}

fn pad(s: &mut String, n: usize) {
    for _ in 0..n {
        s.push_str("  ");
    }
}

fn escape(s: &mut String, v: &str) {
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

impl From<&str> for Json {
    fn from(v: &str) -> Json {
        Json::Str(v.to_string())
    }
}
impl From<String> for Json {
    fn from(v: String) -> Json {
        Json::Str(v)
    }
}
impl From<bool> for Json {
    fn from(v: bool) -> Json {
        Json::Bool(v)
    }
}
impl From<i64> for Json {
    fn from(v: i64) -> Json {
        Json::Num(v)
    }
}
impl From<usize> for Json {
    fn from(v: usize) -> Json {
        Json::Num(v as i64)
    }
}
impl From<Vec<Json>> for Json {
    fn from(v: Vec<Json>) -> Json {
        Json::Arr(v)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map(Into::into).unwrap_or(Json::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn escapes() {
        let j = Json::obj()
            .with("a\"", "x\ny\u{1}")
            .with("n", 3i64)
            .with("z", Json::Arr(vec![]));
        assert_eq!(
            j.to_pretty(),
            "{\n  \"a\\\"\": \"x\\ny\\u0001\",\n  \"n\": 3,\n  \"z\": []\n}"
        );
    }
}
