//! Writing into a request's JSON body by pointer: where a POST job's
//! cursor (`cursor_in = "body"`) or incremental `since` goes.

use serde_json::Value;

use crate::fetch::decode::tokens;

/// An empty JSON object, the body a value is first put into.
pub(super) fn empty() -> Value {
    Value::Object(Default::default())
}

/// Put `new` at `pointer` in `body`, creating objects along the way (a
/// scalar in the way is replaced: the job's body cannot mean both).
pub(crate) fn set_at(body: &mut Value, pointer: &str, new: Value) -> Result<(), String> {
    let tokens = tokens(pointer).map_err(|e| e.to_string())?;
    let Some((last, path)) = tokens.split_last() else {
        *body = new;
        return Ok(());
    };
    let mut here = body;
    for token in path {
        here = child(here, token);
    }
    match here {
        Value::Array(items) => match token_index(last, items.len()) {
            Some(i) if i < items.len() => items[i] = new,
            _ => items.push(new),
        },
        other => {
            if !other.is_object() {
                *other = empty();
            }
            if let Value::Object(map) = other {
                map.insert(last.clone(), new);
            }
        }
    }
    Ok(())
}

fn child<'a>(here: &'a mut Value, token: &str) -> &'a mut Value {
    let index = match &*here {
        Value::Array(items) => token_index(token, items.len()).filter(|i| *i < items.len()),
        _ => None,
    };
    if index.is_none() && !here.is_object() {
        *here = empty();
    }
    match (here, index) {
        (Value::Array(items), Some(i)) => &mut items[i],
        (Value::Object(map), _) => map.entry(token.to_string()).or_insert_with(empty),
        // Not reachable: `here` was made an object above.
        (other, _) => other,
    }
}

fn token_index(token: &str, len: usize) -> Option<usize> {
    match token {
        "-" => Some(len),
        t => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_at_creates_and_replaces() {
        let mut body = json!({"filter": {"status": "open"}, "list": [1, 2]});
        set_at(&mut body, "/page/cursor", json!("c1")).unwrap();
        set_at(&mut body, "/filter/since", json!("s")).unwrap();
        set_at(&mut body, "/list/1", json!(9)).unwrap();
        set_at(&mut body, "/list/-", json!(3)).unwrap();
        set_at(&mut body, "/a~1b", json!(true)).unwrap();
        assert_eq!(
            body,
            json!({"filter": {"status": "open", "since": "s"}, "page": {"cursor": "c1"}, "list": [1, 9, 3], "a/b": true})
        );
        let mut scalar = json!({"page": 5});
        set_at(&mut scalar, "/page/cursor", json!("x")).unwrap();
        assert_eq!(scalar, json!({"page": {"cursor": "x"}}));
    }
}
