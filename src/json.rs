//! Strict reading of host JSON: every accessor knows the path of the field it reads, so an
//! unknown or ill-typed field is reported by name (`provider.models[2].cost.input`).

use crate::error::{Error, Kind, Result};
use serde_json::{Map, Value};

/// A JSON object being read, with its path for messages and the kind of error to report.
pub struct Obj<'a> {
    pub path: String,
    pub map: &'a Map<String, Value>,
    kind: Kind,
}

pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    pub fn new(value: &'a Value, path: &str, kind: Kind) -> Result<Obj<'a>> {
        match value {
            Value::Object(map) => Ok(Obj { path: path.to_string(), map, kind }),
            other => Err(Error::new(kind, format!("{}: expected an object, got {}", display(path), describe(other)))),
        }
    }

    pub fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::new(self.kind, format!("{}: {message}", join(&self.path, key)))
    }

    /// Rejects any key not in `known`, naming it.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(Error::new(
                    self.kind,
                    format!("{}: unknown field (expected one of: {})", join(&self.path, key), known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The value at `key`, treating JSON null as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        self.get(key).map(|v| Obj::new(v, &join(&self.path, key), self.kind)).transpose()
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, format!("expected a string, got {}", describe(other)))),
        }
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str> {
        self.str(key)?.ok_or_else(|| self.err(key, "is required"))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, format!("expected a boolean, got {}", describe(other)))),
        }
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| self.err(key, "expected a finite number")),
            Some(other) => Err(self.err(key, format!("expected a number, got {}", describe(other)))),
        }
    }

    /// A non-negative integer no larger than `max`.
    pub fn uint(&self, key: &str, max: u64) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(self.err(key, format!("expected an integer from 0 to {max}, got {n}"))),
            },
            Some(other) => Err(self.err(key, format!("expected an integer, got {}", describe(other)))),
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.err(key, format!("expected an array, got {}", describe(other)))),
        }
    }

    pub fn str_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(items) = self.array(key)? else { return Ok(None) };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(&format!("{key}[{i}]"), format!("expected a string, got {}", describe(other)))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}
