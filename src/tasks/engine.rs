//! One task's evaluation, pure: events are recorded into the windows of each reduction, and
//! [`TaskEngine::advance`] closes the windows the clock has passed, combines their values along
//! each sink's flow, and returns the alerts and derived events they give. Time is an argument.
//!
//! Invariants:
//! - a window `[end - period, end)` closes once `now >= end + grace`, whether or not events
//!   come after it (the runner wakes at [`TaskEngine::next_due`]);
//! - an event for a window already closed is counted late and left out (it is still archived);
//! - each reduction holds at most `max_groups` groups per window; events of further groups are
//!   counted and left out, so memory is bounded;
//! - points are stamped with their window's start, like strata's buckets, so that an emitted
//!   series lands in the buckets of the data it summarises.

use std::collections::{BTreeMap, BTreeSet, HashMap};

// hashbrown's default hasher: the group maps are hashed once or twice per event.
use hashbrown::HashMap as FastMap;
use std::sync::Arc;

use crate::clock::EpochMillis;
use crate::event::{Event, Sample, SeriesKey};
use crate::script::{Aggregate, Field, Flow, Level, Matcher, Program, Reduction, Sink};
use crate::sketch::Sketch;

use super::alert::{AlertMachine, Change, GroupLevel};

/// Separates the values of a packed group key (control characters never occur in names).
const GROUP_SEP: char = '\u{1f}';

/// An alert a task raised or cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub task: Arc<str>,
    /// The task, then the group's `key=value` pairs: what the level belongs to.
    pub id: String,
    pub group: Vec<(String, String)>,
    pub level: Level,
    pub previous: Level,
    /// The value that decided the level (`None` for a deadman).
    pub value: Option<f64>,
    /// The start of the window the value summarises (a deadman: when the silence began).
    pub time: EpochMillis,
    pub message: String,
}

/// A derived event to write back into ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub name: String,
    pub group: Vec<(Field, String)>,
    pub time: EpochMillis,
    pub value: f64,
}

/// What one advance produced.
#[derive(Debug, Default, PartialEq)]
pub struct TaskOutput {
    pub alerts: Vec<AlertEvent>,
    pub emitted: Vec<Emitted>,
}

/// What the engine left out, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Events for a window already closed.
    pub late: u64,
    /// Events of a group past `max_groups`.
    pub over_groups: u64,
}

/// The values of one group in one window.
#[derive(Debug, Clone)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_time: EpochMillis,
    sketch: Option<Box<Sketch>>,
}

impl Acc {
    fn new(percentile: bool) -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: 0.0,
            last_time: EpochMillis::MIN,
            sketch: percentile.then(|| Box::new(Sketch::new())),
        }
    }

    fn add(&mut self, part: &Part, time: EpochMillis) {
        self.count += part.count;
        self.sum += part.sum;
        self.min = self.min.min(part.min);
        self.max = self.max.max(part.max);
        if time >= self.last_time {
            self.last = part.last;
            self.last_time = time;
        }
        if let Some(s) = &mut self.sketch {
            s.add_n(part.sum / part.count as f64, part.count);
        }
    }

    fn value(&self, aggregate: Aggregate, period_ms: i64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let v = match aggregate {
            Aggregate::Mean => self.sum / self.count as f64,
            Aggregate::Sum => self.sum,
            Aggregate::Count => self.count as f64,
            Aggregate::Min => self.min,
            Aggregate::Max => self.max,
            Aggregate::Last => self.last,
            Aggregate::Percentile(p) => self.sketch.as_ref()?.quantile(p / 100.0)?,
            Aggregate::Rate => self.sum / (period_ms as f64 / 1000.0),
        };
        v.is_finite().then_some(v)
    }
}

/// An event's values as a summary (one value, a client's partial, or a set member as 1).
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl Part {
    pub fn of(sample: &Sample) -> Self {
        match sample {
            Sample::Value(v) => Self::one(*v),
            Sample::Member(_) => Self::one(1.0),
            Sample::Partial(p) => Self {
                count: p.count,
                sum: p.sum,
                min: p.min,
                max: p.max,
                last: p.last,
            },
        }
    }

    pub fn one(v: f64) -> Self {
        Self {
            count: 1,
            sum: v,
            min: v,
            max: v,
            last: v,
        }
    }
}

/// Each reduction's value per packed group in one window (`None`: the reduction has no window
/// ending there).
type WindowValues = Option<FastMap<Box<str>, f64>>;

/// Window end → packed group → values.
#[derive(Debug, Default)]
struct ReductionState {
    windows: BTreeMap<EpochMillis, FastMap<Box<str>, Acc>>,
    /// Windows ending at or before this are closed.
    closed_through: EpochMillis,
}

/// One deadman's groups: when each last sent an event (by the clock).
#[derive(Debug, Default)]
struct DeadmanState {
    last_seen: FastMap<Box<str>, EpochMillis>,
    /// Groups that sent again while raised: cleared at the next advance.
    back: BTreeSet<Box<str>>,
    machine: AlertMachine,
}

/// Bounds of one engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// How long after a window's end it waits for events still on their way.
    pub grace_ms: i64,
    pub max_groups: usize,
}

impl EngineLimits {
    /// The limits of `task`'s engine: the grace of `config`, plus how late the tasks feeding
    /// it emit (see [`crate::config::TaskConfig::fed_late`]).
    pub fn of(config: &crate::config::TasksConfig, task: &crate::config::TaskConfig) -> Self {
        Self {
            grace_ms: (config.grace + task.fed_late).as_millis() as i64,
            max_groups: config.max_groups,
        }
    }
}

/// One task's state.
pub struct TaskEngine {
    name: Arc<str>,
    program: Arc<Program>,
    limits: EngineLimits,
    reductions: Vec<ReductionState>,
    /// One machine per sink (used by alert sinks).
    alerts: Vec<AlertMachine>,
    deadmen: Vec<DeadmanState>,
    dropped: Dropped,
    key: String,
}

impl TaskEngine {
    /// A fresh engine whose windows start closing after `now`.
    pub fn new(name: &str, program: Arc<Program>, limits: EngineLimits, now: EpochMillis) -> Self {
        let reductions = program
            .reductions
            .iter()
            .map(|r| ReductionState {
                windows: BTreeMap::new(),
                closed_through: r.window.map_or(EpochMillis::MIN, |w| {
                    aligned_floor(now - limits.grace_ms, w.every_ms)
                }),
            })
            .collect();
        let deadmen = program
            .sinks
            .iter()
            .filter(|s| matches!(s, Sink::Deadman { .. }))
            .map(|_| DeadmanState::default())
            .collect();
        Self {
            name: name.into(),
            alerts: program
                .sinks
                .iter()
                .map(|_| AlertMachine::default())
                .collect(),
            program,
            limits,
            reductions,
            deadmen,
            dropped: Dropped::default(),
            key: String::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes and resets the counts of what was left out.
    pub fn take_dropped(&mut self) -> Dropped {
        std::mem::take(&mut self.dropped)
    }

    /// Records an event that arrived at `now`.
    pub fn record(&mut self, event: &Event, now: EpochMillis) {
        let part = Part::of(&event.sample);
        let program = self.program.clone();
        let mut late = false;
        for (reduction, state) in program.reductions.iter().zip(&mut self.reductions) {
            if !selects(&reduction.filters, &event.series) {
                continue;
            }
            let Some(window) = reduction.window else {
                continue;
            };
            pack_group(&mut self.key, &reduction.group_by, &event.series);
            let t = event.timestamp;
            let mut end = aligned_floor(t, window.every_ms) + window.every_ms;
            while end - window.period_ms <= t {
                if end <= state.closed_through {
                    late = true;
                } else {
                    let groups = state.windows.entry(end).or_default();
                    add_to(
                        groups,
                        &self.key,
                        reduction,
                        &part,
                        t,
                        self.limits.max_groups,
                        &mut self.dropped,
                    );
                }
                end += window.every_ms;
            }
        }
        if late {
            self.dropped.late += 1;
        }
        self.see_deadmen(&event.series, now);
    }

    /// Records a stored point of a batch read into every reduction it matches, in the one window
    /// ending at `end`.
    pub fn record_stored(
        &mut self,
        series: &SeriesKey,
        part: &Part,
        time: EpochMillis,
        end: EpochMillis,
    ) {
        let program = self.program.clone();
        for (reduction, state) in program.reductions.iter().zip(&mut self.reductions) {
            if !selects(&reduction.filters, series) {
                continue;
            }
            pack_group(&mut self.key, &reduction.group_by, series);
            let groups = state.windows.entry(end).or_default();
            add_to(
                groups,
                &self.key,
                reduction,
                part,
                time,
                self.limits.max_groups,
                &mut self.dropped,
            );
        }
    }

    fn see_deadmen(&mut self, series: &SeriesKey, now: EpochMillis) {
        let mut i = 0;
        for sink in &self.program.sinks {
            let Sink::Deadman {
                filters, group_by, ..
            } = sink
            else {
                continue;
            };
            let state = &mut self.deadmen[i];
            i += 1;
            if !selects(filters, series) {
                continue;
            }
            pack_group(&mut self.key, group_by, series);
            match state.last_seen.get_mut(self.key.as_str()) {
                Some(seen) => *seen = (*seen).max(now),
                None => {
                    if state.last_seen.len() >= self.limits.max_groups {
                        self.dropped.over_groups += 1;
                        continue;
                    }
                    state.last_seen.insert(self.key.as_str().into(), now);
                }
            }
            if state.machine.level(&self.key) != Level::Ok {
                state.back.insert(self.key.as_str().into());
            }
        }
    }

    /// When the engine next has something to do: the first window to close, a deadman's
    /// deadline, or a group back from silence (now).
    pub fn next_due(&self) -> Option<EpochMillis> {
        let windows = self
            .reductions
            .iter()
            .filter_map(|r| r.windows.keys().next())
            .map(|end| end + self.limits.grace_ms)
            .min();
        let deadlines = self
            .program
            .sinks
            .iter()
            .filter_map(|s| match s {
                Sink::Deadman { period_ms, .. } => Some(*period_ms),
                _ => None,
            })
            .zip(&self.deadmen)
            .flat_map(|(period, state)| {
                let back = state.back.first().map(|_| EpochMillis::MIN);
                let silent = state
                    .last_seen
                    .iter()
                    .filter(|(g, _)| state.machine.level(g) == Level::Ok)
                    .map(move |(_, seen)| seen + period);
                back.into_iter().chain(silent)
            })
            .min();
        [windows, deadlines].into_iter().flatten().min()
    }

    /// Closes what is due at `now` and returns the alerts and derived events it gives.
    pub fn advance(&mut self, now: EpochMillis) -> TaskOutput {
        let mut results: BTreeMap<EpochMillis, Vec<WindowValues>> = BTreeMap::new();
        let n = self.reductions.len();
        for (i, (reduction, state)) in self
            .program
            .reductions
            .iter()
            .zip(&mut self.reductions)
            .enumerate()
        {
            let Some(window) = reduction.window else {
                continue;
            };
            let through = aligned_floor(now - self.limits.grace_ms, window.every_ms);
            state.closed_through = state.closed_through.max(through);
            while let Some(entry) = state.windows.first_entry() {
                if *entry.key() > state.closed_through {
                    break;
                }
                let (end, groups) = entry.remove_entry();
                let values = values_of(groups, reduction.aggregate, window.period_ms);
                results.entry(end).or_insert_with(|| vec![None; n])[i] = Some(values);
            }
        }
        let mut out = TaskOutput::default();
        for (end, values) in results {
            self.evaluate(end, &values, &mut out);
        }
        self.check_deadmen(now, &mut out);
        out
    }

    /// Closes the batch window ending at `end` (every reduction's values recorded into it) and
    /// evaluates it as covering `[start, end)`.
    pub fn close_stored(&mut self, start: EpochMillis, end: EpochMillis) -> TaskOutput {
        let period = end - start;
        let values: Vec<_> = self
            .program
            .reductions
            .iter()
            .zip(&mut self.reductions)
            .map(|(reduction, state)| {
                let groups = state.windows.remove(&end).unwrap_or_default();
                Some(values_of(groups, reduction.aggregate, period))
            })
            .collect();
        let mut out = TaskOutput::default();
        self.evaluate_at(start, &values, &mut out);
        out
    }

    fn evaluate(&mut self, end: EpochMillis, values: &[WindowValues], out: &mut TaskOutput) {
        let program = self.program.clone();
        for (i, sink) in program.sinks.iter().enumerate() {
            let flow = match sink {
                Sink::Alert { input, .. } | Sink::Emit { input, .. } => input,
                Sink::Deadman { .. } => continue,
            };
            let Some(window) = program.window_of(flow) else {
                continue;
            };
            let points = evaluate_flow(flow, values);
            self.sink_points(i, sink, end - window.period_ms, points, out);
        }
    }

    fn evaluate_at(&mut self, start: EpochMillis, values: &[WindowValues], out: &mut TaskOutput) {
        let program = self.program.clone();
        for (i, sink) in program.sinks.iter().enumerate() {
            if let Sink::Alert { input, .. } | Sink::Emit { input, .. } = sink {
                let points = evaluate_flow(input, values);
                self.sink_points(i, sink, start, points, out);
            }
        }
    }

    fn sink_points(
        &mut self,
        i: usize,
        sink: &Sink,
        time: EpochMillis,
        points: Vec<(Box<str>, f64)>,
        out: &mut TaskOutput,
    ) {
        let fields = match sink {
            Sink::Alert { input, .. } | Sink::Emit { input, .. } => {
                self.program.group_of(input).to_vec()
            }
            Sink::Deadman { .. } => return,
        };
        for (group, value) in points {
            match sink {
                Sink::Alert { spec, .. } => {
                    if let Some(change) = self.alerts[i].observe(spec, &group, time, value) {
                        out.alerts.push(self.alert_event(
                            i,
                            &fields,
                            &group,
                            change,
                            Some(value),
                            time,
                            spec.message.as_deref(),
                        ));
                    }
                }
                Sink::Emit { name, .. } => out.emitted.push(Emitted {
                    name: name.clone(),
                    group: fields.iter().cloned().zip(unpack(&group)).collect(),
                    time,
                    value,
                }),
                Sink::Deadman { .. } => {}
            }
        }
    }

    fn check_deadmen(&mut self, now: EpochMillis, out: &mut TaskOutput) {
        let program = self.program.clone();
        let mut d = 0;
        for (i, sink) in program.sinks.iter().enumerate() {
            let Sink::Deadman {
                group_by,
                period_ms,
                message,
                ..
            } = sink
            else {
                continue;
            };
            let state = &mut self.deadmen[d];
            d += 1;
            let mut changes = Vec::new();
            for group in std::mem::take(&mut state.back) {
                let seen = state.last_seen.get(&group).copied().unwrap_or(now);
                if let Some(change) = state.machine.set(&group, Level::Ok, seen) {
                    changes.push((group, change, seen));
                }
            }
            for (group, seen) in &state.last_seen {
                if seen + period_ms <= now && state.machine.level(group) == Level::Ok {
                    if let Some(change) = state.machine.set(group, Level::Critical, *seen) {
                        changes.push((group.clone(), change, *seen));
                    }
                }
            }
            changes.sort_by(|a, b| a.0.cmp(&b.0));
            for (group, change, seen) in changes {
                out.alerts.push(self.alert_event(
                    i,
                    group_by,
                    &group,
                    change,
                    None,
                    seen,
                    message.as_deref(),
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert_event(
        &self,
        sink: usize,
        fields: &[Field],
        group: &str,
        change: Change,
        value: Option<f64>,
        time: EpochMillis,
        message: Option<&str>,
    ) -> AlertEvent {
        let pairs: Vec<(String, String)> = fields
            .iter()
            .zip(unpack(group))
            .map(|(f, v)| (f.key().to_string(), v))
            .collect();
        let mut id = self.name.to_string();
        if self.alert_sinks() > 1 {
            id.push_str(&format!("#{sink}"));
        }
        for (k, v) in &pairs {
            id.push_str(&format!(",{k}={v}"));
        }
        let group_text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let value_text = value.map_or_else(|| "none".to_string(), |v| v.to_string());
        let message = match message {
            Some(m) => m
                .replace("{task}", &self.name)
                .replace("{group}", &group_text)
                .replace("{level}", change.level.as_str())
                .replace("{value}", &value_text),
            None if value.is_none() => format!(
                "{} {}: {}",
                self.name,
                if group_text.is_empty() {
                    "(all)"
                } else {
                    &group_text
                },
                if change.level == Level::Ok {
                    "sending again"
                } else {
                    "silent"
                }
            ),
            None => format!(
                "{} {} is {} (value {value_text})",
                self.name,
                if group_text.is_empty() {
                    "(all)"
                } else {
                    &group_text
                },
                change.level.as_str()
            ),
        };
        AlertEvent {
            task: self.name.clone(),
            id,
            group: pairs,
            level: change.level,
            previous: change.previous,
            value,
            time,
            message,
        }
    }

    fn alert_sinks(&self) -> usize {
        self.program
            .sinks
            .iter()
            .filter(|s| !matches!(s, Sink::Emit { .. }))
            .count()
    }

    /// The alert id (as in [`AlertEvent::id`]) → level of every group not ok.
    pub fn raised(&self) -> Vec<(String, GroupLevel)> {
        let mut out = Vec::new();
        let mut d = 0;
        for (i, sink) in self.program.sinks.iter().enumerate() {
            let (machine, fields) = match sink {
                Sink::Alert { input, .. } => {
                    (&self.alerts[i], self.program.group_of(input).to_vec())
                }
                Sink::Deadman { group_by, .. } => {
                    d += 1;
                    (&self.deadmen[d - 1].machine, group_by.clone())
                }
                Sink::Emit { .. } => continue,
            };
            for (group, state) in machine.groups() {
                if state.level != Level::Ok {
                    let e = self.alert_event(
                        i,
                        &fields,
                        group,
                        Change {
                            previous: Level::Ok,
                            level: state.level,
                        },
                        None,
                        state.since,
                        None,
                    );
                    out.push((e.id, state));
                }
            }
        }
        out
    }

    /// Puts back the levels raised before a restart (by alert id), so that they are not sent
    /// again; a deadman's group counts as seen at `now`.
    pub fn restore(&mut self, raised: &HashMap<String, GroupLevel>, now: EpochMillis) {
        let program = self.program.clone();
        let mut d = 0;
        for (i, sink) in program.sinks.iter().enumerate() {
            let fields = match sink {
                Sink::Alert { input, .. } => program.group_of(input).to_vec(),
                Sink::Deadman { group_by, .. } => group_by.clone(),
                Sink::Emit { .. } => continue,
            };
            let prefix = if self.alert_sinks() > 1 {
                format!("{}#{i}", self.name)
            } else {
                self.name.to_string()
            };
            for (id, state) in raised {
                let Some(group) = group_of_id(id, &prefix, &fields) else {
                    continue;
                };
                match sink {
                    Sink::Alert { .. } => self.alerts[i].restore(&group, *state),
                    Sink::Deadman { .. } => {
                        let dm = &mut self.deadmen[d];
                        dm.machine.restore(&group, *state);
                        dm.last_seen.insert(group.into(), now);
                    }
                    Sink::Emit { .. } => {}
                }
            }
            if matches!(sink, Sink::Deadman { .. }) {
                d += 1;
            }
        }
    }
}

/// The packed group of an alert id made by [`TaskEngine::alert_event`].
fn group_of_id(id: &str, prefix: &str, fields: &[Field]) -> Option<String> {
    let rest = id.strip_prefix(prefix)?;
    let mut values = Vec::new();
    let mut pairs = if rest.is_empty() {
        Vec::new()
    } else {
        rest.strip_prefix(',')?.split(',').collect()
    };
    if pairs.len() != fields.len() {
        return None;
    }
    for (field, pair) in fields.iter().zip(pairs.drain(..)) {
        let (k, v) = pair.split_once('=')?;
        if k != field.key() {
            return None;
        }
        values.push(v);
    }
    Some(values.join(&GROUP_SEP.to_string()))
}

fn add_to(
    groups: &mut FastMap<Box<str>, Acc>,
    key: &str,
    reduction: &Reduction,
    part: &Part,
    time: EpochMillis,
    max_groups: usize,
    dropped: &mut Dropped,
) {
    let acc = match groups.get_mut(key) {
        Some(acc) => acc,
        None => {
            if groups.len() >= max_groups {
                dropped.over_groups += 1;
                return;
            }
            let percentile = matches!(reduction.aggregate, Aggregate::Percentile(_));
            groups
                .entry(key.into())
                .or_insert_with(|| Acc::new(percentile))
        }
    };
    acc.add(part, time);
}

fn values_of(
    groups: FastMap<Box<str>, Acc>,
    aggregate: Aggregate,
    period_ms: i64,
) -> FastMap<Box<str>, f64> {
    groups
        .into_iter()
        .filter_map(|(g, acc)| acc.value(aggregate, period_ms).map(|v| (g, v)))
        .collect()
}

/// The points of `flow` at one window, sorted by group.
fn evaluate_flow(flow: &Flow, values: &[WindowValues]) -> Vec<(Box<str>, f64)> {
    let mut points: Vec<(Box<str>, f64)> = match flow {
        Flow::Reduced(i) => values
            .get(*i)
            .and_then(Option::as_ref)
            .map(|m| m.iter().map(|(g, v)| (g.clone(), *v)).collect())
            .unwrap_or_default(),
        Flow::Scalar {
            input,
            op,
            number,
            number_first,
        } => evaluate_flow(input, values)
            .into_iter()
            .filter_map(|(g, v)| {
                let (a, b) = if *number_first {
                    (*number, v)
                } else {
                    (v, *number)
                };
                op.apply(a, b).map(|r| (g, r))
            })
            .collect(),
        Flow::Join { op, left, right } => {
            let right: FastMap<Box<str>, f64> = evaluate_flow(right, values).into_iter().collect();
            evaluate_flow(left, values)
                .into_iter()
                .filter_map(|(g, a)| {
                    let b = right.get(&g)?;
                    op.apply(a, *b).map(|r| (g, r))
                })
                .collect()
        }
        Flow::Filter { input, condition } => evaluate_flow(input, values)
            .into_iter()
            .filter(|(_, v)| condition.holds(*v))
            .collect(),
    };
    points.sort_by(|a, b| a.0.cmp(&b.0));
    points
}

/// Whether every matcher holds for `series`.
pub fn selects(filters: &[Matcher], series: &SeriesKey) -> bool {
    filters
        .iter()
        .all(|m| m.glob.matches(field_value(&m.field, series)))
}

fn field_value<'a>(field: &Field, series: &'a SeriesKey) -> &'a str {
    match field {
        Field::Name => series.name(),
        Field::Host => series.host().unwrap_or(""),
        Field::Tag(k) => series.tags().find(|(tk, _)| tk == k).map_or("", |(_, v)| v),
    }
}

/// Packs the group values of `series` into `key` (reused, so a known group allocates nothing).
fn pack_group(key: &mut String, fields: &[Field], series: &SeriesKey) {
    key.clear();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            key.push(GROUP_SEP);
        }
        key.push_str(field_value(f, series));
    }
}

fn unpack(group: &str) -> Vec<String> {
    group.split(GROUP_SEP).map(String::from).collect()
}

/// The greatest multiple of `every` at or below `t`.
fn aligned_floor(t: EpochMillis, every: i64) -> EpochMillis {
    t.div_euclid(every) * every
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MetricKind;
    use crate::script::compile;

    const LIMITS: EngineLimits = EngineLimits {
        grace_ms: 0,
        max_groups: 1000,
    };

    fn engine(script: &str, now: EpochMillis) -> TaskEngine {
        TaskEngine::new("t", Arc::new(compile(script).unwrap()), LIMITS, now)
    }

    fn event(name: &str, host: &str, tags: &[(&str, &str)], v: f64, t: EpochMillis) -> Event {
        let mut tags = tags.to_vec();
        Event::value(
            SeriesKey::new(name, Some(host), &mut tags),
            MetricKind::Gauge,
            v,
            t,
        )
    }

    #[test]
    fn a_window_closes_on_the_clock_with_no_event_after_it() {
        let mut e = engine("stream | window(10s) | groupby(host) | mean | emit(m)", 0);
        e.record(&event("cpu", "a", &[], 10.0, 1_000), 1_000);
        e.record(&event("cpu", "a", &[], 20.0, 9_999), 9_999);
        e.record(&event("cpu", "b", &[], 5.0, 12_000), 12_000);
        assert_eq!(e.next_due(), Some(10_000));
        assert_eq!(e.advance(9_999), TaskOutput::default());
        let out = e.advance(10_000);
        assert_eq!(
            out.emitted,
            vec![Emitted {
                name: "m".into(),
                group: vec![(Field::Host, "a".into())],
                time: 0,
                value: 15.0
            }]
        );
        // Too late for the closed window: counted, not added.
        e.record(&event("cpu", "a", &[], 1000.0, 5_000), 10_001);
        assert_eq!(e.take_dropped().late, 1);
        assert_eq!(e.advance(20_000).emitted[0].value, 5.0);
    }

    #[test]
    fn sliding_windows_hold_an_event_in_each_window_it_falls_in() {
        let mut e = engine("stream | window(period: 10s, every: 5s) | sum | emit(s)", 0);
        for (v, t) in [(1.0, 1_000), (2.0, 6_000), (4.0, 11_000)] {
            e.record(&event("x", "h", &[], v, t), t);
        }
        let out = e.advance(30_000);
        let got: Vec<_> = out.emitted.iter().map(|p| (p.time, p.value)).collect();
        // Windows [-5,5): 1; [0,10): 3; [5,15): 6; [10,20): 4.
        assert_eq!(
            got,
            vec![(-5_000, 1.0), (0, 3.0), (5_000, 6.0), (10_000, 4.0)]
        );
    }

    #[test]
    fn kapacitors_example_raises_once_for_the_host_that_drops_and_clears_once() {
        let mut e = engine(
            "stream | window(period: 10s, every: 10s) | groupby(host) | mean | alert(crit: < 30)",
            0,
        );
        let mut alerts = Vec::new();
        for s in 0..60 {
            let t = s * 1_000;
            let a = if (20..40).contains(&s) { 10.0 } else { 80.0 };
            e.record(&event("cpu_idle", "a", &[], a, t), t);
            e.record(&event("cpu_idle", "b", &[], 70.0, t), t);
            alerts.extend(e.advance(t).alerts);
        }
        alerts.extend(e.advance(70_000).alerts);
        let got: Vec<_> = alerts
            .iter()
            .map(|a| (a.id.as_str(), a.level, a.value, a.time))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t,host=a", Level::Critical, Some(10.0), 20_000),
                ("t,host=a", Level::Ok, Some(80.0), 40_000),
            ]
        );
        assert_eq!(alerts[0].message, "t host=a is critical (value 10)");
    }

    #[test]
    fn a_ratio_joins_the_same_group_and_window_and_skips_a_missing_side() {
        let mut e = engine(
            r#"let w = stream | window(1m) | groupby(dc)
               let errors = w | where(name: "errors") | sum
               let requests = w | where(name: "requests") | sum
               errors / requests * 100 | emit("error_pct")"#,
            0,
        );
        for (name, dc, v) in [
            ("errors", "eu", 5.0),
            ("requests", "eu", 200.0),
            ("requests", "us", 100.0),
            ("errors", "asia", 1.0),
        ] {
            e.record(&event(name, "h", &[("dc", dc)], v, 1_000), 1_000);
        }
        let out = e.advance(60_000);
        assert_eq!(out.emitted.len(), 1, "{:?}", out.emitted);
        assert_eq!(
            out.emitted[0].group,
            vec![(Field::Tag("dc".into()), "eu".into())]
        );
        assert_eq!(out.emitted[0].value, 2.5);
    }

    #[test]
    fn every_aggregate_of_one_window() {
        let cases = [
            ("mean", 2.5),
            ("sum", 10.0),
            ("count", 4.0),
            ("min", 1.0),
            ("max", 4.0),
            ("last", 3.0),
            ("rate", 1.0),
            ("percentile(50)", 2.0),
        ];
        for (agg, want) in cases {
            let mut e = engine(&format!("stream | window(10s) | {agg} | emit(x)"), 0);
            // Arrival order differs from time order: last is by time.
            for (v, t) in [(1.0, 1_000), (2.0, 2_000), (3.0, 9_000), (4.0, 5_000)] {
                e.record(&event("x", "h", &[], v, t), t);
            }
            let got = e.advance(10_000).emitted[0].value;
            assert!((got - want).abs() < want * 0.02, "{agg}: {got} != {want}");
        }
    }

    #[test]
    fn deadman_fires_after_the_silence_and_clears_when_data_comes_back() {
        let mut e = engine("stream | groupby(host) | deadman(period: 30s)", 0);
        e.record(&event("x", "a", &[], 1.0, 0), 0);
        e.record(&event("x", "b", &[], 1.0, 0), 0);
        e.record(&event("x", "b", &[], 1.0, 20_000), 20_000);
        assert_eq!(e.next_due(), Some(30_000));
        assert!(e.advance(29_999).alerts.is_empty());
        let out = e.advance(30_000);
        let got: Vec<_> = out
            .alerts
            .iter()
            .map(|a| (a.id.as_str(), a.level, a.time))
            .collect();
        assert_eq!(got, vec![("t,host=a", Level::Critical, 0)]);
        assert!(e.advance(40_000).alerts.is_empty(), "sent once");
        e.record(&event("x", "a", &[], 1.0, 45_000), 45_000);
        assert_eq!(e.next_due(), Some(EpochMillis::MIN), "at once");
        let got: Vec<_> = e
            .advance(45_000)
            .alerts
            .iter()
            .map(|a| (a.id.clone(), a.level))
            .collect();
        assert_eq!(got, vec![("t,host=a".to_string(), Level::Ok)]);
        assert_eq!(
            e.advance(50_000).alerts[0].id,
            "t,host=b",
            "b silent since 20 s"
        );
    }

    #[test]
    fn a_restored_alert_is_not_raised_again_but_clears() {
        let script = "stream | window(10s) | groupby(host) | mean | alert(crit: < 30)";
        let mut before = engine(script, 0);
        before.record(&event("x", "a", &[], 10.0, 1_000), 1_000);
        assert_eq!(before.advance(10_000).alerts.len(), 1);
        let raised: HashMap<_, _> = before.raised().into_iter().collect();
        assert_eq!(raised.keys().collect::<Vec<_>>(), ["t,host=a"]);
        let mut after = engine(script, 10_000);
        after.restore(&raised, 10_000);
        after.record(&event("x", "a", &[], 10.0, 11_000), 11_000);
        assert!(after.advance(20_000).alerts.is_empty());
        after.record(&event("x", "a", &[], 50.0, 21_000), 21_000);
        assert_eq!(after.advance(30_000).alerts[0].level, Level::Ok);
    }

    #[test]
    fn groups_past_the_bound_are_counted_and_left_out() {
        let mut e = TaskEngine::new(
            "t",
            Arc::new(compile("stream | window(10s) | groupby(host) | count | emit(c)").unwrap()),
            EngineLimits {
                grace_ms: 0,
                max_groups: 2,
            },
            0,
        );
        for h in ["a", "b", "c", "a"] {
            e.record(&event("x", h, &[], 1.0, 1_000), 1_000);
        }
        assert_eq!(e.take_dropped().over_groups, 1);
        assert_eq!(e.advance(10_000).emitted.len(), 2);
    }

    #[test]
    fn a_batch_window_is_the_range_read() {
        let mut e = engine("batch | groupby(host) | mean | alert(crit: >= 10)", 0);
        let series = SeriesKey::new("x", Some("a"), &mut []);
        e.record_stored(
            &series,
            &Part {
                count: 2,
                sum: 30.0,
                min: 10.0,
                max: 20.0,
                last: 20.0,
            },
            0,
            3_600_000,
        );
        e.record_stored(&series, &Part::one(0.0), 600_000, 3_600_000);
        let out = e.close_stored(0, 3_600_000);
        assert_eq!(out.alerts[0].value, Some(10.0));
        assert_eq!(out.alerts.len(), 1);
    }
}
