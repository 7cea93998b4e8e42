//! Conversions between JSON and the Rust types a `#[func]` takes and returns.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt::Display;

use crate::Value;

/// A type a `#[func]` parameter can have: built from the JSON event.
pub trait FromJson: Sized {
    /// The value from JSON, or why it does not fit (`expected a string, got a number`).
    fn from_json(value: Value) -> Result<Self, String>;

    /// The value of an argument the event leaves out: `None` for `Option`, otherwise none at
    /// all (the argument is required).
    fn absent() -> Option<Self> {
        None
    }
}

/// A type a `#[func]` can return (or return inside `Result<_, E>`): written as JSON.
pub trait ToJson {
    fn to_json(self) -> Value;
}

/// What a `#[func]` returns: a value, or a `Result` whose `Err` fails the call with its message.
pub trait IntoOutput {
    fn into_output(self) -> Result<Value, String>;
}

impl<T: ToJson> IntoOutput for T {
    fn into_output(self) -> Result<Value, String> {
        Ok(self.to_json())
    }
}

impl<T: ToJson, E: Display> IntoOutput for Result<T, E> {
    fn into_output(self) -> Result<Value, String> {
        self.map(ToJson::to_json).map_err(|err| err.to_string())
    }
}

fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, got {}", value.kind())
}

impl FromJson for Value {
    fn from_json(value: Value) -> Result<Self, String> {
        Ok(value)
    }
}

impl ToJson for Value {
    fn to_json(self) -> Value {
        self
    }
}

impl FromJson for String {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(expected("a string", &other)),
        }
    }
}

impl ToJson for String {
    fn to_json(self) -> Value {
        Value::String(self)
    }
}

impl ToJson for &str {
    fn to_json(self) -> Value {
        Value::String(self.to_owned())
    }
}

impl FromJson for bool {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(expected("a boolean", &other)),
        }
    }
}

impl ToJson for bool {
    fn to_json(self) -> Value {
        Value::Bool(self)
    }
}

impl ToJson for () {
    fn to_json(self) -> Value {
        Value::Null
    }
}

/// Integers: from a JSON integer in range, or a float with no fraction (`2.0`).
macro_rules! integers {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(value: Value) -> Result<Self, String> {
                let out_of_range = || format!("{value} is out of range for {}", stringify!($t));
                match value {
                    Value::Integer(i) => <$t>::try_from(i).map_err(|_| out_of_range()),
                    Value::Float(f) if f.fract() == 0.0 && f.abs() < 2f64.powi(64) => {
                        <$t>::try_from(f as i128).map_err(|_| out_of_range())
                    }
                    other => Err(expected(concat!("an integer (", stringify!($t), ")"), &other)),
                }
            }
        }

        impl ToJson for $t {
            fn to_json(self) -> Value {
                match i64::try_from(self) {
                    Ok(i) => Value::Integer(i),
                    Err(_) => Value::Float(self as f64),
                }
            }
        }
    )*};
}

integers!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(value: Value) -> Result<Self, String> {
                value.as_f64().map(|f| f as $t).ok_or_else(|| expected("a number", &value))
            }
        }

        impl ToJson for $t {
            fn to_json(self) -> Value {
                Value::Float(f64::from(self))
            }
        }
    )*};
}

floats!(f32, f64);

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_json(other).map(Some),
        }
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(self) -> Value {
        self.map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item).map_err(|err| format!("[{i}]: {err}")))
                .collect(),
            other => Err(expected("an array", &other)),
        }
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(self) -> Value {
        Value::Array(self.into_iter().map(ToJson::to_json).collect())
    }
}

/// The members of a JSON object, each converted.
fn members<T: FromJson, M: FromIterator<(String, T)>>(value: Value) -> Result<M, String> {
    match value {
        Value::Object(members) => members
            .into_iter()
            .map(|(key, value)| match T::from_json(value) {
                Ok(value) => Ok((key, value)),
                Err(err) => Err(format!("{key}: {err}")),
            })
            .collect(),
        other => Err(expected("an object", &other)),
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(value: Value) -> Result<Self, String> {
        members(value)
    }
}

impl<T: FromJson> FromJson for HashMap<String, T> {
    fn from_json(value: Value) -> Result<Self, String> {
        members(value)
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(self) -> Value {
        Value::object(self.into_iter().map(|(k, v)| (k, v.to_json())))
    }
}

/// Keys sorted, so the output does not depend on the hasher.
impl<T: ToJson> ToJson for HashMap<String, T> {
    fn to_json(self) -> Value {
        let sorted: BTreeMap<String, T> = self.into_iter().collect();
        sorted.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_convert_within_range() {
        assert_eq!(u8::from_json(Value::Integer(255)), Ok(255));
        assert_eq!(i32::from_json(Value::Float(3.0)), Ok(3));
        assert!(u8::from_json(Value::Integer(256))
            .unwrap_err()
            .contains("out of range for u8"));
        assert!(u32::from_json(Value::Integer(-1))
            .unwrap_err()
            .contains("out of range"));
        assert!(i64::from_json(Value::Float(1.5))
            .unwrap_err()
            .contains("expected an integer (i64), got a number"));
        assert_eq!(f64::from_json(Value::Integer(2)), Ok(2.0));
        assert_eq!(u64::MAX.to_json(), Value::Float(u64::MAX as f64));
        assert_eq!((-3i8).to_json(), Value::Integer(-3));
    }

    #[test]
    fn containers_convert_each_item_and_name_where_one_fails() {
        let value = Value::parse(r#"{"a":[1,2],"b":[3]}"#).unwrap();
        let map = BTreeMap::<String, Vec<u8>>::from_json(value.clone()).unwrap();
        assert_eq!(map["a"], vec![1, 2]);
        assert_eq!(map.to_json(), value);
        let err = BTreeMap::<String, Vec<String>>::from_json(value).unwrap_err();
        assert_eq!(err, "a: [0]: expected a string, got a number");
        assert_eq!(Option::<String>::from_json(Value::Null), Ok(None));
        assert_eq!(Option::<String>::absent(), Some(None));
        assert_eq!(String::absent(), None);
    }

    #[test]
    fn results_fail_with_their_error() {
        let ok: Result<&str, String> = Ok("yes");
        assert_eq!(ok.into_output(), Ok(Value::String("yes".into())));
        let err: Result<u8, &str> = Err("no");
        assert_eq!(err.into_output(), Err("no".to_owned()));
        assert_eq!(().into_output(), Ok(Value::Null));
    }
}
