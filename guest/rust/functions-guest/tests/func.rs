//! `#[func]` expanded on the host: the generated entry binds events to arguments and results to
//! JSON as a WebAssembly build of the same source does (the end-to-end tests run those).

use functions_guest::__private::Outcome;
use functions_guest::Value;

mod hello {
    use functions_guest::func;

    #[func]
    pub fn hello(name: String) -> String {
        format!("Hello, {name}!")
    }
}

mod add {
    #[functions_guest::func]
    fn add(a: i64, mut b: i64, scale: Option<f64>) -> Result<f64, String> {
        b += 0;
        let sum = (a + b) as f64 * scale.unwrap_or(1.0);
        if sum < 0.0 {
            Err(format!("{sum} is negative"))
        } else {
            Ok(sum)
        }
    }
}

mod describe {
    use std::collections::BTreeMap;

    use functions_guest::Value;

    /// Any JSON in, a map of vectors out; `r#type` is called `type` in the event.
    #[functions_guest::func]
    pub fn describe(r#type: Option<String>, tags: Vec<String>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        out.insert("type".to_owned(), Value::String(r#type.unwrap_or_default()));
        out.insert(
            "tags".to_owned(),
            Value::Array(tags.into_iter().map(Value::String).collect()),
        );
        out
    }
}

fn returned(outcome: Outcome) -> String {
    match outcome {
        Outcome::Returned(value) => value.to_string(),
        other => panic!("expected a result, got {other:?}"),
    }
}

fn bad_event(outcome: Outcome) -> String {
    match outcome {
        Outcome::BadEvent(message) => message,
        other => panic!("expected a bad event, got {other:?}"),
    }
}

#[test]
fn one_parameter_binds_by_name_position_bare_value_or_text() {
    for event in [
        r#"{"name":"Ada"}"#,
        r#"["Ada"]"#,
        r#""Ada""#,
        "Ada",
        "Ada\n",
        r#"{"other":1,"name":"Ada"}"#,
    ] {
        assert_eq!(
            returned(hello::__func_hello(event.as_bytes())),
            r#""Hello, Ada!""#,
            "{event}"
        );
    }
}

#[test]
fn a_missing_or_mistyped_argument_is_a_bad_event() {
    assert_eq!(
        bad_event(hello::__func_hello(b"")),
        "missing argument `name`"
    );
    assert_eq!(
        bad_event(hello::__func_hello(br#"{"name":7}"#)),
        "`name`: expected a string, got a number"
    );
    assert_eq!(
        bad_event(hello::__func_hello(br#"{"nmae":"Ada"}"#)),
        "missing argument `name`"
    );
    assert_eq!(
        bad_event(hello::__func_hello(b"7")),
        "`name`: expected a string, got a number"
    );
    assert_eq!(
        bad_event(hello::__func_hello(&[0xff])),
        "the event is not UTF-8"
    );
}

#[test]
fn several_parameters_bind_by_name_or_position_and_options_may_be_left_out() {
    assert_eq!(returned(add::__func_add(br#"{"a":2,"b":3}"#)), "5");
    assert_eq!(
        returned(add::__func_add(br#"{"b":3,"a":2,"scale":0.5}"#)),
        "2.5"
    );
    assert_eq!(returned(add::__func_add(b"[2, 3, 2]")), "10");
    assert_eq!(returned(add::__func_add(b"[2, 3]")), "5");
    assert_eq!(
        bad_event(add::__func_add(br#"{"a":2}"#)),
        "missing argument `b`"
    );
    assert_eq!(
        bad_event(add::__func_add(b"[1,2,3,4]")),
        "4 arguments for 3 parameters"
    );
    assert_eq!(
        bad_event(add::__func_add(b"3")),
        "expected an object with a, b, scale or an array of them, got a number"
    );
    assert!(bad_event(add::__func_add(b"{oops")).starts_with("the event is not JSON: "));
    assert_eq!(
        bad_event(add::__func_add(br#"{"a":1.5,"b":1}"#)),
        "`a`: expected an integer (i64), got a number"
    );
}

#[test]
fn an_err_fails_the_call_with_its_message() {
    assert_eq!(
        add::__func_add(b"[-5, 1]"),
        Outcome::Failed("-4 is negative".to_owned())
    );
}

#[test]
fn raw_identifiers_vectors_and_maps() {
    let out = returned(describe::__func_describe(
        br#"{"type":"t","tags":["a","b"]}"#,
    ));
    assert_eq!(out, r#"{"tags":["a","b"],"type":"t"}"#);
    assert_eq!(
        bad_event(describe::__func_describe(br#"{"type":"t"}"#)),
        "missing argument `tags`"
    );
    let parsed = Value::parse(&out).unwrap();
    assert_eq!(parsed.get("type").and_then(Value::as_str), Some("t"));
}
