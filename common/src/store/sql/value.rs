//! The small value model both backends speak, so store logic is written once.
//!
//! Parameters go in as `Value`s and rows come back as `Row`s of `Value`s; each backend
//! converts to and from its driver's types. The copy costs nanoseconds against a database
//! round-trip, and only cache misses reach the store.

use std::sync::Arc;

use crate::domain::{ApiKeyId, Dimension, LinkId, Timestamp, UserId};
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// Parameter text the caller shares (a dimension's name, a breakdown value interned for
    /// a whole window): SQLite binds it without a copy. Never in a result row.
    Shared(Arc<str>),
    Static(&'static str),
    Bytes(Vec<u8>),
}

impl Value {
    /// The text of a text value, whichever way it is held.
    fn text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            Self::Shared(s) => Some(s),
            Self::Static(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a text value or of UTF-8 bytes (MySQL returns text, and DECIMAL results
    /// of `SUM()`, as bytes).
    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Bytes(b) => std::str::from_utf8(b).ok(),
            other => other.text(),
        }
    }
}

impl From<Dimension> for Value {
    fn from(d: Dimension) -> Self {
        Self::Static(d.as_str())
    }
}

impl From<&Arc<str>> for Value {
    fn from(v: &Arc<str>) -> Self {
        Self::Shared(Arc::clone(v))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // Counters never approach 2^63; saturate rather than wrap if one ever did.
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

impl<const N: usize> From<[u8; N]> for Value {
    fn from(v: [u8; N]) -> Self {
        Self::Bytes(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Self::Bytes(v.to_vec())
    }
}

impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Self {
        Self::Int(v.as_millis())
    }
}

impl From<UserId> for Value {
    fn from(v: UserId) -> Self {
        Self::Int(v.0)
    }
}

impl From<LinkId> for Value {
    fn from(v: LinkId) -> Self {
        Self::Int(v.0)
    }
}

impl From<ApiKeyId> for Value {
    fn from(v: ApiKeyId) -> Self {
        Self::Int(v.0)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Builds a parameter list: `params![a, b, c]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        vec![$($crate::store::sql::value::Value::from($v)),*]
    };
}
pub(crate) use params;

/// One result row with typed, checked accessors. A type mismatch means the schema and the
/// code disagree: reported as `StoreError::Corrupt`, never a panic.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("row has no column {i}")))
    }

    pub(crate) fn is_null(&self, i: usize) -> Result<bool, StoreError> {
        Ok(matches!(self.at(i)?, Value::Null))
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            v => v
                .as_str()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| mismatch(i, "integer")),
        }
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?
            .ok_or_else(|| mismatch(i, "non-null integer"))
    }

    pub(crate) fn u64(&self, i: usize) -> Result<u64, StoreError> {
        u64::try_from(self.i64(i)?).map_err(|_| mismatch(i, "non-negative integer"))
    }

    pub(crate) fn opt_u64(&self, i: usize) -> Result<Option<u64>, StoreError> {
        self.opt_i64(i)?
            .map(|v| u64::try_from(v).map_err(|_| mismatch(i, "non-negative integer")))
            .transpose()
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.i64(i)? != 0)
    }

    pub(crate) fn opt_str(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(_) | Value::Float(_) => Err(mismatch(i, "text")),
            v => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| mismatch(i, "UTF-8 text")),
        }
    }

    pub(crate) fn str(&self, i: usize) -> Result<String, StoreError> {
        self.opt_str(i)?.ok_or_else(|| mismatch(i, "non-null text"))
    }

    pub(crate) fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(i)? {
            Value::Bytes(b) => Ok(b.clone()),
            v => v
                .text()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| mismatch(i, "bytes")),
        }
    }

    pub(crate) fn array<const N: usize>(&self, i: usize) -> Result<[u8; N], StoreError> {
        <[u8; N]>::try_from(self.bytes(i)?).map_err(|_| mismatch(i, "fixed-size bytes"))
    }

    pub(crate) fn f64(&self, i: usize) -> Result<f64, StoreError> {
        match self.at(i)? {
            Value::Float(v) => Ok(*v),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(v) => Ok(*v as f64),
            Value::Null => Err(mismatch(i, "non-null number")),
            v => v
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| mismatch(i, "number")),
        }
    }

    pub(crate) fn ts(&self, i: usize) -> Result<Timestamp, StoreError> {
        self.i64(i).map(Timestamp::from_millis)
    }

    pub(crate) fn opt_ts(&self, i: usize) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_i64(i)?.map(Timestamp::from_millis))
    }
}

fn mismatch(i: usize, wanted: &str) -> StoreError {
    StoreError::Corrupt(format!("column {i} is not a {wanted}"))
}
