//! Checks a script's syntax tree stage by stage and turns it into a [`Program`]: the reductions
//! (events → one value per group per window) and the sinks fed by arithmetic and filters over
//! them. Every mistake is reported with the line and column of the stage or value at fault.

use std::collections::HashMap;

use super::lexer::ArithOp;
use super::parser::{parse, Arg, Condition, Expr, Stage, Statement, Value};
use super::{Glob, Pos, ScriptError};

/// Where a task's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Events as they arrive.
    Stream,
    /// Stored points read on a schedule.
    Batch,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Stream => "stream",
            SourceKind::Batch => "batch",
        }
    }
}

/// A part of an event a task can select or group by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Name,
    Host,
    Tag(String),
}

impl Field {
    fn parse(word: &str) -> Self {
        match word {
            "name" => Field::Name,
            "host" => Field::Host,
            tag => Field::Tag(tag.strip_prefix("tag.").unwrap_or(tag).to_string()),
        }
    }

    /// The key a group is labelled with: `name`, `host` or the tag's key.
    pub fn key(&self) -> &str {
        match self {
            Field::Name => "name",
            Field::Host => "host",
            Field::Tag(k) => k,
        }
    }
}

/// `where(name: "cpu.*")`: a field's value matched against a glob.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub field: Field,
    pub glob: Glob,
}

/// `window(period, every)`: windows `[end - period, end)` for every `end` that is a multiple
/// of `every` since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period_ms: i64,
    pub every_ms: i64,
}

/// The most windows one event may fall in (`period / every`), so that one event costs a
/// bounded number of updates.
pub const MAX_WINDOWS_PER_EVENT: i64 = 100;

/// How a window's values become one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    Mean,
    Sum,
    Count,
    Min,
    Max,
    /// The value with the latest time.
    Last,
    /// The p-th percentile (0 < p ≤ 100), estimated from a sketch.
    Percentile(f64),
    /// The sum per second of the window's period.
    Rate,
}

impl Aggregate {
    fn parse(stage: &Stage) -> Result<Option<Self>, ScriptError> {
        let simple = match stage.name.as_str() {
            "mean" => Aggregate::Mean,
            "sum" => Aggregate::Sum,
            "count" => Aggregate::Count,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "last" => Aggregate::Last,
            "rate" => Aggregate::Rate,
            "percentile" => {
                let p =
                    match stage.args.as_slice() {
                        [Arg {
                            key: None | Some(_),
                            value: Value::Number(p),
                            ..
                        }] if *p > 0.0 && *p <= 100.0 => *p,
                        _ => return Err(ScriptError::at(
                            stage.pos,
                            "percentile takes one number above 0 and at most 100: percentile(99)",
                        )),
                    };
                return Ok(Some(Aggregate::Percentile(p)));
            }
            _ => return Ok(None),
        };
        if let Some(arg) = stage.args.first() {
            return Err(ScriptError::at(
                arg.pos,
                format!("{} takes no arguments", stage.name),
            ));
        }
        Ok(Some(simple))
    }
}

/// Events selected, windowed, grouped and aggregated: one value per group per window.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduction {
    pub filters: Vec<Matcher>,
    /// `None` in a batch task: the whole range read is one window.
    pub window: Option<Window>,
    pub group_by: Vec<Field>,
    pub aggregate: Aggregate,
}

/// Points flowing to a sink: what reductions give, combined and filtered.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Reduced(usize),
    /// A flow and a number; `number_first` for `100 / flow`.
    Scalar {
        input: Box<Flow>,
        op: ArithOp,
        number: f64,
        number_first: bool,
    },
    /// Two flows' points of the same group and window, combined.
    Join {
        op: ArithOp,
        left: Box<Flow>,
        right: Box<Flow>,
    },
    Filter {
        input: Box<Flow>,
        condition: Condition,
    },
}

impl Flow {
    /// The reductions this flow reads.
    pub fn reductions(&self) -> Vec<usize> {
        match self {
            Flow::Reduced(i) => vec![*i],
            Flow::Scalar { input, .. } | Flow::Filter { input, .. } => input.reductions(),
            Flow::Join { left, right, .. } => {
                let mut r = left.reductions();
                r.extend(right.reductions());
                r
            }
        }
    }
}

/// Alert levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ok" => Level::Ok,
            "info" => Level::Info,
            "warning" => Level::Warning,
            "critical" => Level::Critical,
            _ => return None,
        })
    }
}

/// When a level is entered, and (hysteresis) when it is left.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelRule {
    pub level: Level,
    pub enter: Condition,
    /// While at this level it is kept until this holds (or a higher level's condition does).
    pub leave: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// Highest level first.
    pub rules: Vec<LevelRule>,
    /// Only changes of level are sent (the default), not every point's level.
    pub changes_only: bool,
    /// Text sent with the alert; `{task}`, `{group}`, `{level}`, `{value}` are replaced.
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    Alert {
        input: Flow,
        spec: AlertSpec,
    },
    /// Derived events written back into strata's ingest under `name`.
    Emit {
        input: Flow,
        name: String,
    },
    /// Critical when a group sends nothing for `period_ms`; ok when it sends again.
    Deadman {
        filters: Vec<Matcher>,
        group_by: Vec<Field>,
        period_ms: i64,
        message: Option<String>,
    },
}

/// A checked script.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub source: SourceKind,
    pub reductions: Vec<Reduction>,
    pub sinks: Vec<Sink>,
}

impl Program {
    /// The names `emit` writes.
    pub fn emitted_names(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().filter_map(|s| match s {
            Sink::Emit { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// The window of the reductions a flow reads (they share one, see [`compile`]).
    pub fn window_of(&self, flow: &Flow) -> Option<Window> {
        flow.reductions()
            .first()
            .and_then(|&i| self.reductions[i].window)
    }

    /// The fields a flow's points are grouped by.
    pub fn group_of(&self, flow: &Flow) -> &[Field] {
        flow.reductions()
            .first()
            .map_or(&[], |&i| self.reductions[i].group_by.as_slice())
    }
}

/// Parses and checks `text`.
pub fn compile(text: &str) -> Result<Program, ScriptError> {
    let script = parse(text)?;
    let mut c = Compiler::default();
    for statement in script.statements {
        match statement {
            Statement::Let { name, pos, value } => {
                if c.bindings.contains_key(&name) {
                    return Err(ScriptError::at(pos, format!("{name} is already bound")));
                }
                let shape = c.expr(&value)?;
                if let Shape::Sink(_) = shape {
                    return Err(ScriptError::at(
                        pos,
                        format!("let {name} binds a pipeline that ends in a sink; bind what comes before the sink"),
                    ));
                }
                c.bindings.insert(name, (shape, pos, false));
            }
            Statement::Sink(expr) => match c.expr(&expr)? {
                Shape::Sink(sink) => c.sinks.push(sink),
                _ => return Err(ScriptError::at(
                    expr.pos(),
                    "this pipeline ends without a sink: end it with alert(...), emit(\"name\") or deadman(...), or bind it with let",
                )),
            },
        }
    }
    if let Some((name, (_, pos, _))) = c.bindings.iter().find(|(_, (_, _, used))| !used) {
        return Err(ScriptError::at(
            *pos,
            format!("{name} is bound but never used"),
        ));
    }
    let source = c.source.unwrap_or(SourceKind::Stream);
    Ok(Program {
        source,
        reductions: c.reductions,
        sinks: c.sinks,
    })
}

/// What an expression stands for while it is checked.
#[derive(Debug, Clone)]
enum Shape {
    Raw(Raw),
    Points(Points),
    Number(f64),
    Sink(Sink),
}

/// Events not yet aggregated.
#[derive(Debug, Clone)]
struct Raw {
    filters: Vec<Matcher>,
    window: Option<Window>,
    group_by: Option<Vec<Field>>,
}

#[derive(Debug, Clone)]
struct Points {
    flow: Flow,
    group_by: Vec<Field>,
    window: Option<Window>,
}

#[derive(Default)]
struct Compiler {
    source: Option<SourceKind>,
    bindings: HashMap<String, (Shape, Pos, bool)>,
    reductions: Vec<Reduction>,
    sinks: Vec<Sink>,
}

const STAGES: &str = "where, window, groupby, mean, sum, count, min, max, last, percentile, rate, filter, alert, emit, deadman";

impl Compiler {
    fn expr(&mut self, expr: &Expr) -> Result<Shape, ScriptError> {
        match expr {
            Expr::Source { name, pos } => {
                let kind = if name == "batch" {
                    SourceKind::Batch
                } else {
                    SourceKind::Stream
                };
                match self.source {
                    Some(k) if k != kind => {
                        return Err(ScriptError::at(
                            *pos,
                            format!(
                                "a script reads either stream or batch; this one already reads {}",
                                k.as_str()
                            ),
                        ))
                    }
                    _ => self.source = Some(kind),
                }
                Ok(Shape::Raw(Raw {
                    filters: Vec::new(),
                    window: None,
                    group_by: None,
                }))
            }
            Expr::Var { name, pos } => match self.bindings.get_mut(name) {
                Some((shape, _, used)) => {
                    *used = true;
                    Ok(shape.clone())
                }
                None => Err(ScriptError::at(
                    *pos,
                    format!("{name} is not bound; bind it first with let {name} = ..."),
                )),
            },
            Expr::Number { value, .. } => Ok(Shape::Number(*value)),
            Expr::Binary {
                op,
                pos,
                left,
                right,
            } => {
                let (l, r) = (self.expr(left)?, self.expr(right)?);
                self.binary(*op, *pos, l, r)
            }
            Expr::Pipe { input, stage } => {
                let input = self.expr(input)?;
                self.stage(input, stage)
            }
        }
    }

    fn binary(
        &mut self,
        op: ArithOp,
        pos: Pos,
        left: Shape,
        right: Shape,
    ) -> Result<Shape, ScriptError> {
        match (left, right) {
            (Shape::Number(a), Shape::Number(b)) => op
                .apply(a, b)
                .map(Shape::Number)
                .ok_or_else(|| ScriptError::at(pos, "this arithmetic has no finite result")),
            (Shape::Points(p), Shape::Number(n)) => Ok(scalar(p, op, n, false)),
            (Shape::Number(n), Shape::Points(p)) => Ok(scalar(p, op, n, true)),
            (Shape::Points(a), Shape::Points(b)) => {
                let (mut ga, mut gb) = (a.group_by.clone(), b.group_by.clone());
                ga.sort();
                gb.sort();
                if ga != gb {
                    return Err(ScriptError::at(
                        pos,
                        "both sides of arithmetic must be grouped by the same fields, so that each group meets its own",
                    ));
                }
                if a.window != b.window {
                    return Err(ScriptError::at(
                        pos,
                        "both sides of arithmetic must use the same window(period, every), so that their points meet",
                    ));
                }
                Ok(Shape::Points(Points {
                    flow: Flow::Join {
                        op,
                        left: Box::new(a.flow),
                        right: Box::new(b.flow),
                    },
                    group_by: a.group_by,
                    window: a.window,
                }))
            }
            (Shape::Raw(_), _) | (_, Shape::Raw(_)) => Err(ScriptError::at(
                pos,
                "arithmetic takes aggregated points: aggregate each side first, e.g. | sum()",
            )),
            (Shape::Sink(_), _) | (_, Shape::Sink(_)) => Err(ScriptError::at(
                pos,
                "a sink (alert, emit, deadman) gives nothing to compute with",
            )),
        }
    }

    fn stage(&mut self, input: Shape, stage: &Stage) -> Result<Shape, ScriptError> {
        match input {
            Shape::Raw(raw) => self.raw_stage(raw, stage),
            Shape::Points(points) => points_stage(points, stage),
            Shape::Number(_) => Err(ScriptError::at(
                stage.pos,
                format!(
                    "{} needs a stream or batch before it, not a number",
                    stage.name
                ),
            )),
            Shape::Sink(_) => Err(ScriptError::at(
                stage.pos,
                format!(
                    "{} follows a sink; alert, emit and deadman end a pipeline",
                    stage.name
                ),
            )),
        }
    }

    fn raw_stage(&mut self, mut raw: Raw, stage: &Stage) -> Result<Shape, ScriptError> {
        if let Some(aggregate) = Aggregate::parse(stage)? {
            let batch = self.source == Some(SourceKind::Batch);
            if raw.window.is_none() && !batch {
                return Err(ScriptError::at(
                    stage.pos,
                    format!("{} needs a window first in a stream task: add | window(period: 10s) before it", stage.name),
                ));
            }
            let group_by = raw.group_by.unwrap_or_default();
            self.reductions.push(Reduction {
                filters: raw.filters,
                window: raw.window,
                group_by: group_by.clone(),
                aggregate,
            });
            return Ok(Shape::Points(Points {
                flow: Flow::Reduced(self.reductions.len() - 1),
                group_by,
                window: raw.window,
            }));
        }
        match stage.name.as_str() {
            "where" => {
                for arg in &stage.args {
                    let Some(key) = &arg.key else {
                        return Err(ScriptError::at(
                            arg.pos,
                            "where takes field: \"glob\" pairs, e.g. where(name: \"cpu.*\", dc: \"eu\")",
                        ));
                    };
                    let text = text_of(arg)?;
                    raw.filters.push(Matcher {
                        field: Field::parse(key),
                        glob: Glob::new(&text),
                    });
                }
                if stage.args.is_empty() {
                    return Err(ScriptError::at(
                        stage.pos,
                        "where needs at least one field: \"glob\" pair",
                    ));
                }
                Ok(Shape::Raw(raw))
            }
            "window" => {
                if self.source == Some(SourceKind::Batch) {
                    return Err(ScriptError::at(
                        stage.pos,
                        "a batch task's window is its range (range = \"1h\" in its TOML): remove window",
                    ));
                }
                if raw.window.is_some() {
                    return Err(ScriptError::at(
                        stage.pos,
                        "this pipeline already has a window",
                    ));
                }
                raw.window = Some(window(stage)?);
                Ok(Shape::Raw(raw))
            }
            "groupby" => {
                if raw.group_by.is_some() {
                    return Err(ScriptError::at(
                        stage.pos,
                        "this pipeline is already grouped",
                    ));
                }
                let mut fields = Vec::new();
                for arg in &stage.args {
                    if arg.key.is_some() {
                        return Err(ScriptError::at(
                            arg.pos,
                            "groupby takes field names: groupby(host, dc)",
                        ));
                    }
                    let field = Field::parse(&text_of(arg)?);
                    if fields.contains(&field) {
                        return Err(ScriptError::at(
                            arg.pos,
                            format!("{} is named twice", field.key()),
                        ));
                    }
                    fields.push(field);
                }
                if fields.is_empty() {
                    return Err(ScriptError::at(
                        stage.pos,
                        "groupby needs at least one field: groupby(host)",
                    ));
                }
                raw.group_by = Some(fields);
                Ok(Shape::Raw(raw))
            }
            "deadman" => {
                if self.source == Some(SourceKind::Batch) {
                    return Err(ScriptError::at(
                        stage.pos,
                        "deadman watches events as they arrive: use it in a stream task",
                    ));
                }
                let mut period_ms = None;
                let mut message = None;
                for arg in &stage.args {
                    match (arg.key.as_deref(), &arg.value) {
                        (None | Some("period"), Value::Duration(ms)) => period_ms = Some(*ms),
                        (Some("message"), Value::Str(s)) => message = Some(s.clone()),
                        _ => return Err(ScriptError::at(arg.pos, "deadman takes a period and an optional message: deadman(period: 1m, message: \"...\")")),
                    }
                }
                let period_ms = period_ms.ok_or_else(|| {
                    ScriptError::at(stage.pos, "deadman needs a period: deadman(period: 1m)")
                })?;
                Ok(Shape::Sink(Sink::Deadman {
                    filters: raw.filters,
                    group_by: raw.group_by.unwrap_or_default(),
                    period_ms,
                    message,
                }))
            }
            "filter" | "alert" | "emit" => Err(ScriptError::at(
                stage.pos,
                format!(
                    "{} takes aggregated points: aggregate first, e.g. | mean()",
                    stage.name
                ),
            )),
            other => Err(unknown_stage(other, stage.pos)),
        }
    }
}

/// Points and a number; `number_first` keeps `100 / x` apart from `x / 100`.
fn scalar(points: Points, op: ArithOp, number: f64, number_first: bool) -> Shape {
    Shape::Points(Points {
        flow: Flow::Scalar {
            input: Box::new(points.flow),
            op,
            number,
            number_first,
        },
        ..points
    })
}

fn points_stage(points: Points, stage: &Stage) -> Result<Shape, ScriptError> {
    match stage.name.as_str() {
        "filter" => {
            let condition = match stage.args.as_slice() {
                [Arg {
                    key: None,
                    value: Value::Cond(c),
                    ..
                }] => c.clone(),
                _ => {
                    return Err(ScriptError::at(
                        stage.pos,
                        "filter takes one condition: filter(< 30), filter(> 10 and < 20)",
                    ))
                }
            };
            Ok(Shape::Points(Points {
                flow: Flow::Filter {
                    input: Box::new(points.flow),
                    condition,
                },
                ..points
            }))
        }
        "alert" => Ok(Shape::Sink(Sink::Alert {
            input: points.flow,
            spec: alert_spec(stage)?,
        })),
        "emit" => {
            let name = match stage.args.as_slice() {
                [arg @ Arg {
                    key: None | Some(_),
                    ..
                }] if matches!(arg.key.as_deref(), None | Some("name")) => text_of(arg)?,
                _ => {
                    return Err(ScriptError::at(
                        stage.pos,
                        "emit takes the name of the derived series: emit(\"cpu_idle.dc_mean\")",
                    ))
                }
            };
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ScriptError::at(
                    stage.pos,
                    format!("{name:?} is not a metric name: no spaces or control characters, not empty"),
                ));
            }
            Ok(Shape::Sink(Sink::Emit {
                input: points.flow,
                name,
            }))
        }
        "where" | "window" | "groupby" => Err(ScriptError::at(
            stage.pos,
            format!("{} must come before the aggregation", stage.name),
        )),
        "deadman" => Err(ScriptError::at(
            stage.pos,
            "deadman watches events, not aggregated points: put it right after stream (and where/groupby)",
        )),
        name if Aggregate::parse(stage).ok().flatten().is_some() => Err(ScriptError::at(
            stage.pos,
            format!("{name}: these points are already aggregated"),
        )),
        other => Err(unknown_stage(other, stage.pos)),
    }
}

fn unknown_stage(name: &str, pos: Pos) -> ScriptError {
    ScriptError::at(
        pos,
        format!("unknown stage {name:?}; the stages are {STAGES}"),
    )
}

/// A string or a bare name.
fn text_of(arg: &Arg) -> Result<String, ScriptError> {
    match &arg.value {
        Value::Str(s) | Value::Ident(s) => Ok(s.clone()),
        _ => Err(ScriptError::at(arg.pos, "expected a name or a string")),
    }
}

fn window(stage: &Stage) -> Result<Window, ScriptError> {
    let mut period = None;
    let mut every = None;
    for (i, arg) in stage.args.iter().enumerate() {
        let Value::Duration(ms) = arg.value else {
            return Err(ScriptError::at(
                arg.pos,
                "window takes durations: window(period: 10s, every: 5s)",
            ));
        };
        match (arg.key.as_deref(), i) {
            (Some("period"), _) | (None, 0) => period = Some(ms),
            (Some("every"), _) | (None, 1) => every = Some(ms),
            (Some(other), _) => {
                return Err(ScriptError::at(
                    arg.pos,
                    format!("window has no {other:?}; it takes period and every"),
                ))
            }
            (None, _) => {
                return Err(ScriptError::at(
                    arg.pos,
                    "window takes at most two durations",
                ))
            }
        }
    }
    let period_ms = period
        .ok_or_else(|| ScriptError::at(stage.pos, "window needs a period: window(period: 10s)"))?;
    let every_ms = every.unwrap_or(period_ms);
    if period_ms / every_ms > MAX_WINDOWS_PER_EVENT {
        return Err(ScriptError::at(
            stage.pos,
            format!("a period more than {MAX_WINDOWS_PER_EVENT} times every would put each event in too many windows"),
        ));
    }
    Ok(Window {
        period_ms,
        every_ms,
    })
}

fn alert_spec(stage: &Stage) -> Result<AlertSpec, ScriptError> {
    let mut enter: HashMap<Level, Condition> = HashMap::new();
    let mut leave: HashMap<Level, (Condition, Pos)> = HashMap::new();
    let mut changes_only = true;
    let mut message = None;
    for arg in &stage.args {
        let key = arg.key.as_deref().unwrap_or("");
        let level_of = |name: &str| match name {
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warning),
            "crit" | "critical" => Some(Level::Critical),
            _ => None,
        };
        match (key, &arg.value) {
            ("changes_only", Value::Bool(b)) => changes_only = *b,
            ("message", Value::Str(s)) => message = Some(s.clone()),
            (k, Value::Cond(c)) if level_of(k).is_some() => {
                enter.insert(level_of(k).unwrap_or(Level::Ok), c.clone());
            }
            (k, Value::Cond(c)) if k.strip_suffix("_reset").and_then(level_of).is_some() => {
                let level = k.strip_suffix("_reset").and_then(level_of).unwrap_or(Level::Ok);
                leave.insert(level, (c.clone(), arg.pos));
            }
            _ => return Err(ScriptError::at(
                arg.pos,
                "alert takes info:, warn:, crit: conditions (e.g. crit: < 30), their *_reset: conditions, changes_only: true|false and message: \"...\"",
            )),
        }
    }
    if enter.is_empty() {
        return Err(ScriptError::at(
            stage.pos,
            "alert needs at least one level's condition: alert(crit: < 30)",
        ));
    }
    let mut rules = Vec::new();
    for level in [Level::Critical, Level::Warning, Level::Info] {
        let reset = leave.remove(&level).map(|(c, _)| c);
        if let Some(condition) = enter.remove(&level) {
            rules.push(LevelRule {
                level,
                enter: condition,
                leave: reset,
            });
        } else if reset.is_some() {
            return Err(ScriptError::at(
                stage.pos,
                format!(
                    "a reset condition for {} needs its condition too",
                    level.as_str()
                ),
            ));
        }
    }
    Ok(AlertSpec {
        rules,
        changes_only,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kapacitors_example_compiles_to_one_reduction_and_an_alert() {
        let p = compile(
            "stream\n  | window(period: 10s, every: 5s)\n  | mean\n  | filter(< 30)\n  | alert(crit: < 30)",
        )
        .unwrap();
        assert_eq!(p.source, SourceKind::Stream);
        assert_eq!(
            p.reductions,
            vec![Reduction {
                filters: vec![],
                window: Some(Window {
                    period_ms: 10_000,
                    every_ms: 5_000
                }),
                group_by: vec![],
                aggregate: Aggregate::Mean,
            }]
        );
        let Sink::Alert { input, spec } = &p.sinks[0] else {
            panic!("an alert")
        };
        assert!(matches!(input, Flow::Filter { .. }));
        assert_eq!(spec.rules[0].level, Level::Critical);
        assert!(spec.changes_only);
    }

    #[test]
    fn a_ratio_of_two_sums_joins_their_groups() {
        let p = compile(
            r#"
            let w = stream | window(1m) | groupby(host)
            let errors = w | where(name: "http.errors") | sum
            // where after groupby is fine: both shape the events before the aggregation
            let requests = w | where(name: "http.requests") | sum
            errors / requests * 100 | alert(warn: > 1, warn_reset: < 0.5, crit: > 5) 
            errors / requests | emit("http.error_ratio")
            "#,
        )
        .unwrap();
        assert_eq!(p.reductions.len(), 2, "the bindings are shared");
        assert_eq!(p.emitted_names().collect::<Vec<_>>(), ["http.error_ratio"]);
        let Sink::Alert { input, spec } = &p.sinks[0] else {
            panic!()
        };
        assert_eq!(input.reductions(), vec![0, 1]);
        assert_eq!(p.group_of(input), [Field::Host]);
        assert_eq!(spec.rules.len(), 2);
        assert!(spec.rules[1].leave.is_some());
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let cases = [
            ("stream | mean | alert(crit: < 1)", "line 1, column 10: mean needs a window first"),
            ("stream | window(10s) | alert(crit: < 1)", "line 1, column 24: alert takes aggregated points"),
            ("stream | window(10s) | mean", "line 1, column 24: this pipeline ends without a sink"),
            ("let x = stream\nstream | deadman(1m)", "line 1, column 5: x is bound but never used"),
            ("stream | window(10s) | mean | alert()", "line 1, column 31: alert needs at least one level"),
            ("stream | window(10s) | mean | alert(crit: 30)", "line 1, column 37: alert takes info:"),
            ("stream | window(10s) | mian | emit(x)", "line 1, column 24: unknown stage \"mian\""),
            ("batch | window(10s) | mean | emit(x)", "line 1, column 9: a batch task's window is its range"),
            ("stream | window(period: 1h, every: 1s) | mean | emit(x)", "line 1, column 10: a period more than 100"),
            (
                "let a = stream | window(10s) | groupby(host) | sum\nlet b = stream | window(10s) | sum\na / b | emit(r)",
                "line 3, column 3: both sides of arithmetic must be grouped",
            ),
            ("stream | window(10s) | mean | emit(x) | emit(y)", "line 1, column 41: emit follows a sink"),
            ("stream | window(10s) | mean | alert(crit_reset: > 3, warn: < 1)", "line 1, column 31: a reset condition for critical"),
            ("stream | window(10s) | mean | emit(\"a b\")", "line 1, column 31: \"a b\" is not a metric name"),
            ("y | emit(x)", "line 1, column 1: y is not bound"),
        ];
        for (text, want) in cases {
            let got = compile(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn a_number_on_the_left_stays_on_the_left() {
        let p = compile("100 / (stream | window(10s) | mean) | emit(x)").unwrap();
        let Sink::Emit { input, .. } = &p.sinks[0] else {
            panic!()
        };
        assert!(matches!(
            input,
            Flow::Scalar {
                number_first: true,
                ..
            }
        ));
    }
}
