//! Laying out `sluice ctl`'s replies for a human.
//!
//! The engine owns the schema of the reply data, so this is generic: objects become aligned
//! `key  value` lines, arrays of flat objects become tables with a header, `null` is `-`. It never
//! interprets the data beyond laying it out, so the engine can add fields freely, and it does no
//! I/O.

use super::proto::{Request, RulesRequest};
use serde_json::Value;

/// A successful reply to `req`, laid out for a human.
pub(crate) fn reply(req: &Request, data: &Value) -> String {
    match (req, data) {
        (Request::Shutdown, Value::Null) => "shutdown requested\n".to_string(),
        (Request::Rules(RulesRequest::Add { .. } | RulesRequest::Del { .. }), Value::Null) => {
            format!("{req}: done\n")
        }
        _ => render(data),
    }
}

/// The human form of any reply data.
pub fn render(v: &Value) -> String {
    let mut s = String::new();
    render_into(v, 0, &mut s);
    s
}

fn render_into(v: &Value, indent: usize, s: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if m.is_empty() => {}
        Value::Object(m) => {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in m {
                if is_scalar(val) || is_scalar_array(val) {
                    s.push_str(&format!("{pad}{k:width$}  {}\n", scalar(val)));
                } else {
                    s.push_str(&format!("{pad}{k}:\n"));
                    render_into(val, indent + 1, s);
                }
            }
        }
        Value::Array(a) if a.is_empty() => s.push_str(&format!("{pad}(none)\n")),
        Value::Array(a) if a.iter().all(is_flat_object) => table(a, &pad, s),
        Value::Array(a) => {
            for item in a {
                if is_scalar(item) {
                    s.push_str(&format!("{pad}{}\n", scalar(item)));
                } else {
                    s.push_str(&format!("{pad}-\n"));
                    render_into(item, indent + 1, s);
                }
            }
        }
        other => s.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn is_scalar_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.iter().all(is_scalar))
}

fn is_flat_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.values().all(|x| is_scalar(x) || is_scalar_array(x)))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table with one column per key (in order of first appearance; serde_json sorts object keys,
/// so that is alphabetical) and a header line.
fn table(rows: &[Value], pad: &str, s: &mut String) {
    let mut cols: Vec<&str> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !cols.contains(&k.as_str()) {
                    cols.push(k);
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| scalar(r.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: &[&str], s: &mut String| {
        let mut l = pad.to_string();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:w$}  ", w = widths[i]));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
    line(&header.iter().map(String::as_str).collect::<Vec<_>>(), s);
    for r in &cells {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>(), s);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_output() {
        let status =
            json!({"iface": "veth0", "queues": [0, 1], "uptime_s": 12, "xdp": {"mode": "skb"}});
        assert_eq!(
            render(&status),
            "iface     veth0\nqueues    0,1\nuptime_s  12\nxdp:\n  mode  skb\n"
        );
        let rules =
            json!([{"proto":"udp","port":9100},{"proto":"tcp","port":80,"action":"redirect"}]);
        assert_eq!(
            render(&rules),
            "PORT  PROTO  ACTION\n9100  udp    -\n80    tcp    redirect\n"
        );
        assert_eq!(render(&json!([])), "(none)\n");
    }

    #[test]
    fn changes_without_data_say_done() {
        assert_eq!(
            reply(&Request::Shutdown, &Value::Null),
            "shutdown requested\n"
        );
        assert_eq!(
            reply(&Request::Rules(RulesRequest::List), &json!([])),
            "(none)\n"
        );
    }
}
