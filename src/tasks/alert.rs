//! The alert state machine of one `alert(...)`: the level of each group, entered by a level's
//! condition and (with hysteresis) left only when that level's reset condition holds. Pure: the
//! value and time are arguments.

use std::collections::HashMap;

use crate::clock::EpochMillis;
use crate::script::{AlertSpec, Level};

/// A group's level and since when it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLevel {
    pub level: Level,
    pub since: EpochMillis,
}

/// What one observation changed (or, without `changes_only`, repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub previous: Level,
    pub level: Level,
}

/// The levels of every group of one alert.
#[derive(Debug, Default)]
pub struct AlertMachine {
    groups: HashMap<Box<str>, GroupLevel>,
}

impl AlertMachine {
    /// The level `value` brings `group` to, and whether to send it: on a change of level, or
    /// for every point that is not ok without `changes_only`.
    pub fn observe(
        &mut self,
        spec: &AlertSpec,
        group: &str,
        time: EpochMillis,
        value: f64,
    ) -> Option<Change> {
        let current = self.level(group);
        let next = next_level(spec, current, value);
        self.transition(group, current, next, time, spec.changes_only)
    }

    /// Sets `group` to `level` (deadman), sending it on a change.
    pub fn set(&mut self, group: &str, level: Level, time: EpochMillis) -> Option<Change> {
        let current = self.level(group);
        self.transition(group, current, level, time, true)
    }

    fn transition(
        &mut self,
        group: &str,
        current: Level,
        next: Level,
        time: EpochMillis,
        changes_only: bool,
    ) -> Option<Change> {
        let change = Change {
            previous: current,
            level: next,
        };
        if next == current {
            return (!changes_only && next != Level::Ok).then_some(change);
        }
        match self.groups.get_mut(group) {
            Some(state) => {
                *state = GroupLevel {
                    level: next,
                    since: time,
                };
            }
            None => {
                self.groups.insert(
                    group.into(),
                    GroupLevel {
                        level: next,
                        since: time,
                    },
                );
            }
        }
        Some(change)
    }

    pub fn level(&self, group: &str) -> Level {
        self.groups.get(group).map_or(Level::Ok, |g| g.level)
    }

    /// Puts back a level known from before a restart, without sending anything.
    pub fn restore(&mut self, group: &str, state: GroupLevel) {
        self.groups.insert(group.into(), state);
    }

    pub fn groups(&self) -> impl Iterator<Item = (&str, GroupLevel)> {
        self.groups.iter().map(|(g, s)| (&**g, *s))
    }
}

/// The highest level whose condition holds; but a level already held is kept, against a lower
/// candidate, until its reset condition holds.
pub fn next_level(spec: &AlertSpec, current: Level, value: f64) -> Level {
    let candidate = spec
        .rules
        .iter()
        .find(|r| r.enter.holds(value))
        .map_or(Level::Ok, |r| r.level);
    if candidate >= current {
        return candidate;
    }
    let leave = spec
        .rules
        .iter()
        .find(|r| r.level == current)
        .and_then(|r| r.leave.as_ref());
    match leave {
        Some(reset) if !reset.holds(value) => current,
        _ => candidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{compile, Sink};

    fn spec(text: &str) -> AlertSpec {
        let p = compile(&format!("stream | window(10s) | mean | alert({text})")).unwrap();
        match p.sinks.into_iter().next() {
            Some(Sink::Alert { spec, .. }) => spec,
            _ => panic!("an alert"),
        }
    }

    fn levels(spec: &AlertSpec, values: &[f64]) -> Vec<(usize, Level)> {
        let mut m = AlertMachine::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| m.observe(spec, "g", i as i64, *v).map(|c| (i, c.level)))
            .collect()
    }

    #[test]
    fn without_hysteresis_a_value_around_the_threshold_flaps() {
        let s = spec("crit: < 30");
        assert_eq!(
            levels(&s, &[50.0, 29.0, 31.0, 29.0, 31.0]),
            vec![
                (1, Level::Critical),
                (2, Level::Ok),
                (3, Level::Critical),
                (4, Level::Ok)
            ]
        );
    }

    #[test]
    fn hysteresis_keeps_the_level_until_the_reset_holds() {
        let s = spec("crit: < 30, crit_reset: > 40");
        assert_eq!(
            levels(&s, &[50.0, 29.0, 31.0, 29.0, 31.0, 39.0, 41.0, 35.0]),
            vec![(1, Level::Critical), (6, Level::Ok)]
        );
    }

    #[test]
    fn levels_step_up_at_once_and_down_through_their_resets() {
        let s = spec("warn: > 70, warn_reset: < 60, crit: > 90, crit_reset: < 80");
        assert_eq!(
            levels(&s, &[50.0, 75.0, 95.0, 85.0, 79.0, 65.0, 59.0]),
            vec![
                (1, Level::Warning),
                (2, Level::Critical),
                // 85: critical kept (its reset is < 80); 79: down to warning, kept at 65.
                (4, Level::Warning),
                (6, Level::Ok)
            ]
        );
    }

    #[test]
    fn every_point_is_sent_without_changes_only_but_ok_only_on_a_change() {
        let s = spec("crit: < 30, changes_only: false");
        assert_eq!(
            levels(&s, &[50.0, 20.0, 20.0, 50.0, 50.0]),
            vec![(1, Level::Critical), (2, Level::Critical), (3, Level::Ok)]
        );
    }

    #[test]
    fn a_restored_level_is_not_sent_again() {
        let s = spec("crit: < 30");
        let mut m = AlertMachine::default();
        m.restore(
            "g",
            GroupLevel {
                level: Level::Critical,
                since: 5,
            },
        );
        assert_eq!(m.observe(&s, "g", 10, 20.0), None);
        assert_eq!(
            m.observe(&s, "g", 20, 50.0),
            Some(Change {
                previous: Level::Critical,
                level: Level::Ok
            })
        );
    }
}
