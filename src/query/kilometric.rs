//! Kilometric's read API, `GET /read?key=&type=counter|points[&from=][&to=][&period=]`, with its
//! JSON shapes: a counter's sum between the first and last stored point in the range, or one sum
//! per non-empty period. `period` is in seconds, as Kilometric's README says (its code used it on
//! milliseconds).

use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::query::filter::SeriesSelector;
use crate::query::stats::stats_query;

/// A number as Kilometric writes it: whole values without a fraction.
pub(crate) fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// The counter query: the stats query plus the first and last stored point.
pub(crate) fn counter_query(
    config: &Config,
    selector: &SeriesSelector,
    from: EpochMillis,
    to: EpochMillis,
    spans: &[(usize, EpochMillis, EpochMillis)],
) -> Option<Value> {
    let mut q = stats_query(config, selector, from, to, spans)?;
    q["aggs"]["first_point"] = json!({"min": {"field": "@timestamp"}});
    q["aggs"]["last_point"] = json!({"max": {"field": "@timestamp"}});
    Some(q)
}

/// `{"name", "values": [{"from", "to", "value"}]}`, or `"values": []` when nothing is stored.
pub(crate) fn counter_answer(key: &str, response: Option<&Value>) -> Value {
    let aggs = response.map(|r| &r["aggregations"]);
    let values = match aggs {
        Some(a) if a["count"]["value"].as_f64().unwrap_or(0.0) > 0.0 => vec![json!({
            "from": a["first_point"]["value"].as_f64().map(|v| v as i64),
            "to": a["last_point"]["value"].as_f64().map(|v| v as i64),
            "value": number(a["sum"]["value"].as_f64().unwrap_or(0.0)),
        })],
        _ => Vec::new(),
    };
    json!({"name": key, "values": values})
}

/// `{"name", "values": [{"from", "value"}]}` from per-period sums, chronological, empty omitted.
pub(crate) fn points_answer(key: &str, points: &[(EpochMillis, Option<f64>)]) -> Value {
    let values: Vec<Value> = points
        .iter()
        .filter_map(|&(t, v)| v.map(|v| json!({"from": t, "value": number(v)})))
        .collect();
    json!({"name": key, "values": values})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_kilometric() {
        let r = json!({"aggregations": {"count": {"value": 4.0}, "sum": {"value": 10.0}, "first_point": {"value": 60000.0}, "last_point": {"value": 120000.0}}});
        assert_eq!(
            counter_answer("k", Some(&r)),
            json!({"name": "k", "values": [{"from": 60000, "to": 120000, "value": 10}]})
        );
        assert_eq!(
            counter_answer("k", None),
            json!({"name": "k", "values": []})
        );
        assert_eq!(
            points_answer("k", &[(0, Some(2.0)), (60000, None), (120000, Some(1.5))]),
            json!({"name": "k", "values": [{"from": 0, "value": 2}, {"from": 120000, "value": 1.5}]})
        );
    }
}
