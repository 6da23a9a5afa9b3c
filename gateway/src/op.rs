//! Client operations on a WebSocket (`subscribe`, `unsubscribe`, `ping`, `auth`), parsed from
//! one JSON text message.
//!
//! Parsing is tolerant where the contract is silent (unknown fields are ignored) and strict
//! where it speaks (field types, the symbol grammar), and it recovers the `id` before judging
//! anything else so that every error can echo it.

use feed_engine::Selector;
use serde::Deserialize;
use serde_json::Value;

use crate::{auth::Token, reply::WireError};

/// One parsed client op with the `id` to echo.
#[derive(Debug)]
pub(crate) struct Request {
    /// A number or a string, echoed in the reply.
    pub(crate) id: Option<Value>,
    /// What the client asked for.
    pub(crate) op: Op,
}

/// The ops of the contract.
#[derive(Debug)]
pub(crate) enum Op {
    /// Add selectors; with `resume`, continue from per-symbol seqs instead of snapshots.
    Subscribe {
        /// The symbols exactly as requested (echoed in `subscribed`).
        symbols: Vec<String>,
        /// The same, parsed.
        selectors: Vec<Selector>,
        /// `since` and `epoch`, when given.
        resume: Option<SeqResume>,
    },
    /// Remove selectors.
    Unsubscribe {
        /// The symbols exactly as requested (echoed in `unsubscribed`).
        symbols: Vec<String>,
        /// The same, parsed.
        selectors: Vec<Selector>,
    },
    /// Answer with `pong`.
    Ping,
    /// Replace the connection's token (and so its entitlements).
    Auth {
        /// The new token; its `Debug` hides it.
        token: Token,
    },
}

/// A WebSocket resume: the last `seq` the client saw per symbol, and their epoch.
#[derive(Debug, Default)]
pub(crate) struct SeqResume {
    /// The epoch the seqs belong to (`None`: the current one).
    pub(crate) epoch: Option<String>,
    /// `(symbol, last seq seen)`.
    pub(crate) since: Vec<(String, u64)>,
}

/// A message that is not a valid op, with the `id` recovered from it if any.
#[derive(Debug)]
pub(crate) struct Rejected {
    /// The op's `id`, when it could be read.
    pub(crate) id: Option<Value>,
    /// What was wrong.
    pub(crate) error: WireError,
}

/// The fields the gateway looks at; everything else is ignored.
#[derive(Deserialize)]
struct Fields {
    op: Option<Value>,
    id: Option<Value>,
    symbols: Option<Value>,
    since: Option<Value>,
    epoch: Option<Value>,
    token: Option<Value>,
}

/// Parses one text message.
///
/// # Errors
/// [`Rejected`] with a `bad_request` or `bad_symbol` wire error.
pub(crate) fn parse(text: &[u8]) -> Result<Request, Rejected> {
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Rejected { id: None, error: WireError::bad_request(format!("not JSON: {e}")) })?;
    if !value.is_object() {
        return Err(Rejected {
            id: None,
            error: WireError::bad_request("expected a JSON object with an \"op\" field"),
        });
    }
    // Every field is an optional Value, so an object always fits.
    let mut fields = Fields::deserialize(value)
        .map_err(|e| Rejected { id: None, error: WireError::bad_request(format!("bad op: {e}")) })?;
    let id = match fields.id.take() {
        None | Some(Value::Null) => None,
        Some(id @ (Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => return Err(Rejected { id: None, error: WireError::bad_request("id must be a number or a string") }),
    };
    match parse_op(&fields) {
        Ok(op) => Ok(Request { id, op }),
        Err(error) => Err(Rejected { id, error }),
    }
}

fn parse_op(fields: &Fields) -> Result<Op, WireError> {
    let name = match &fields.op {
        None => return Err(WireError::bad_request("missing field \"op\"")),
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(WireError::bad_request("field \"op\" must be a string")),
    };
    match name {
        "subscribe" => {
            let (symbols, selectors) = symbols(fields)?;
            let resume = seq_resume(fields)?;
            Ok(Op::Subscribe { symbols, selectors, resume })
        }
        "unsubscribe" => {
            let (symbols, selectors) = symbols(fields)?;
            Ok(Op::Unsubscribe { symbols, selectors })
        }
        "ping" => Ok(Op::Ping),
        "auth" => match &fields.token {
            Some(Value::String(token)) => Ok(Op::Auth { token: Token::new(token.clone()) }),
            None => Err(WireError::bad_request("missing field \"token\"")),
            Some(_) => Err(WireError::bad_request("field \"token\" must be a string")),
        },
        other => {
            let shown: String = other.chars().take(40).collect();
            Err(WireError::bad_request(format!("unknown op {shown:?}")))
        }
    }
}

fn symbols(fields: &Fields) -> Result<(Vec<String>, Vec<Selector>), WireError> {
    let Some(value) = &fields.symbols else {
        return Err(WireError::bad_request("missing field \"symbols\""));
    };
    let Value::Array(items) = value else {
        return Err(WireError::bad_request("field \"symbols\" must be an array of strings"));
    };
    if items.is_empty() {
        return Err(WireError::bad_request("field \"symbols\" must not be empty"));
    }
    let mut symbols = Vec::with_capacity(items.len());
    let mut selectors = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(text) = item else {
            return Err(WireError::bad_request("field \"symbols\" must be an array of strings"));
        };
        selectors.push(Selector::parse(text).map_err(|e| WireError::bad_symbol(&e))?);
        symbols.push(text.clone());
    }
    Ok((symbols, selectors))
}

fn seq_resume(fields: &Fields) -> Result<Option<SeqResume>, WireError> {
    let epoch = match &fields.epoch {
        None | Some(Value::Null) => None,
        Some(Value::String(epoch)) => Some(epoch.clone()),
        Some(_) => return Err(WireError::bad_request("field \"epoch\" must be a string")),
    };
    let since = match &fields.since {
        None | Some(Value::Null) => return Ok(epoch.map(|epoch| SeqResume { epoch: Some(epoch), since: Vec::new() })),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(WireError::bad_request("field \"since\" must map symbols to seqs")),
    };
    let mut seqs = Vec::with_capacity(since.len());
    for (symbol, seq) in since {
        if !feed_engine::symbol::is_valid_symbol(symbol) {
            return Err(WireError::bad_symbol(&feed_engine::Error::BadSymbol(symbol.clone())));
        }
        let Some(seq) = seq.as_u64() else {
            return Err(WireError::bad_request(format!("since[{symbol:?}] must be a non-negative integer seq")));
        };
        seqs.push((symbol.clone(), seq));
    }
    Ok(Some(SeqResume { epoch, since: seqs }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reply::Code;

    fn rejected(text: &str) -> Rejected {
        match parse(text.as_bytes()) {
            Ok(request) => panic!("{text} was accepted as {request:?}"),
            Err(rejected) => rejected,
        }
    }

    #[test]
    fn subscribe_with_resume_is_parsed() {
        let request = parse(br#"{"op":"subscribe","symbols":["NASDAQ:AAPL","FX:*"],"since":{"NASDAQ:AAPL":1040},"epoch":"e1","id":1,"extra":true}"#)
            .expect("valid");
        assert_eq!(request.id, Some(json!(1)));
        let Op::Subscribe { symbols, selectors, resume } = request.op else { panic!("not a subscribe") };
        assert_eq!(symbols, ["NASDAQ:AAPL", "FX:*"]);
        assert_eq!(selectors.len(), 2);
        let resume = resume.expect("resume");
        assert_eq!(resume.epoch.as_deref(), Some("e1"));
        assert_eq!(resume.since, [("NASDAQ:AAPL".to_owned(), 1040)]);
    }

    #[test]
    fn errors_keep_the_id_and_say_what_is_wrong() {
        let r = rejected(r#"{"op":"fly","id":"x"}"#);
        assert_eq!((r.id, r.error.code), (Some(json!("x")), Code::BadRequest));
        assert!(r.error.message.contains("fly"));

        let r = rejected(r#"{"op":"subscribe","symbols":["ok","b d"],"id":2}"#);
        assert_eq!((r.id, r.error.code), (Some(json!(2)), Code::BadSymbol));
        assert!(r.error.message.contains("b d"));

        for (text, needle) in [
            ("not json", "not JSON"),
            ("[1,2]", "JSON object"),
            (r#"{"id":1}"#, "\"op\""),
            (r#"{"op":"subscribe"}"#, "\"symbols\""),
            (r#"{"op":"subscribe","symbols":"A"}"#, "array"),
            (r#"{"op":"subscribe","symbols":[]}"#, "empty"),
            (r#"{"op":"subscribe","symbols":["A"],"since":{"A":-1}}"#, "since"),
            (r#"{"op":"ping","id":{"a":1}}"#, "id"),
            (r#"{"op":"auth","id":4}"#, "\"token\""),
            (r#"{"op":"auth","token":7}"#, "\"token\""),
        ] {
            let r = rejected(text);
            assert_eq!(r.error.code, Code::BadRequest, "{text}");
            assert!(r.error.message.contains(needle), "{text}: {}", r.error.message);
        }
    }

    #[test]
    fn auth_carries_its_token_without_showing_it() {
        let request = parse(br#"{"op":"auth","token":"a.b.c","id":4}"#).expect("valid");
        assert_eq!(request.id, Some(json!(4)));
        assert!(matches!(request.op, Op::Auth { .. }));
        assert!(!format!("{request:?}").contains("a.b.c"));
    }

    #[test]
    fn null_id_is_no_id() {
        assert_eq!(parse(br#"{"op":"ping","id":null}"#).expect("valid").id, None);
    }

    /// Regression, found by the `op_parse` fuzz target: serde_json's default float parser may
    /// be one ulp off, so a 96-digit id came back as `9.999999999999999e95` when the client
    /// had sent (and would read its own id as) `1e96`, and it could not match the reply.
    #[test]
    fn numeric_id_is_echoed_as_the_number_the_client_sent() {
        let long = format!("{}5", "9".repeat(95));
        for sent in [long.as_str(), "0.1", "123456789.12345679", "1.7976931348623157e308", "5e-324", "-0.5"] {
            let request = parse(format!(r#"{{"op":"ping","id":{sent}}}"#).as_bytes()).expect("valid");
            let reply: Value = serde_json::from_slice(&crate::reply::pong(request.id.as_ref())).expect("JSON");
            let expected: f64 = sent.parse().expect("a number");
            // Parsed back with the standard library, which always rounds correctly.
            let echoed: f64 = reply["id"].to_string().parse().expect("a number");
            assert_eq!(echoed.to_bits(), expected.to_bits(), "sent {sent}, echoed {}", reply["id"]);
        }
    }
}
