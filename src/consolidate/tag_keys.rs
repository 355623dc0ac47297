//! The distinct tag keys accepted, bounded: every tag key becomes a field (`tags.<key>`) of the
//! node's index mapping, and a node refuses documents once an index passes its field limit.
//! Bounding the keys here, before an event is acknowledged, means the node never refuses a
//! document for it later (the index template sets the field limit above this bound, see
//! `persist::template`).
//!
//! Pure. A key is remembered with the latest event time it was seen at. An index holds the keys
//! of the events in its period, so the keys of every index still kept are a subset of the keys
//! remembered: a key is forgotten only once every index that could hold it has expired (its
//! latest time is before the *forget horizon* the caller sets from retention and index periods)
//! and no open series uses it. Forgetting runs only when a new key would not fit, and at most
//! once per horizon.

use hashbrown::HashMap;

use crate::clock::EpochMillis;

/// The registry of accepted tag keys.
#[derive(Debug, Clone)]
pub(super) struct TagKeys {
    limit: usize,
    /// Key → the latest event time it was seen at.
    seen: HashMap<Box<str>, EpochMillis>,
    /// Keys seen only before this may be forgotten (when no open series uses them).
    forget_before: EpochMillis,
    /// `forget_before` at the last time keys were forgotten: forgetting again before it moves
    /// would find nothing new.
    forgot_at: EpochMillis,
}

/// A key that would exceed the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OverLimit {
    pub(super) key: String,
    pub(super) limit: usize,
}

impl TagKeys {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: HashMap::new(),
            forget_before: EpochMillis::MIN,
            forgot_at: EpochMillis::MIN,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    fn contains(&self, key: &str) -> bool {
        self.seen.contains_key(key)
    }

    /// Moves the forget horizon; it never goes back.
    pub(super) fn set_forget_before(&mut self, at: EpochMillis) {
        self.forget_before = self.forget_before.max(at);
    }

    /// The keys among `keys` not remembered yet, each once, in order.
    pub(super) fn unknown<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut new: Vec<&str> = Vec::new();
        for k in keys {
            if !self.seen.contains_key(k) && !new.contains(&k) {
                new.push(k);
            }
        }
        new
    }

    /// Whether `count` more keys fit, forgetting expired ones first if they would not.
    /// `in_use` lists the keys of every open series with its latest event time; it is called
    /// only when forgetting runs.
    pub(super) fn make_room<'a, I>(&mut self, count: usize, in_use: I) -> bool
    where
        I: FnOnce() -> Vec<(&'a str, EpochMillis)>,
    {
        if self.seen.len() + count <= self.limit {
            return true;
        }
        if self.forget_before > self.forgot_at {
            self.forget_expired(in_use());
        }
        self.seen.len() + count <= self.limit
    }

    /// Forgets the keys last seen before the horizon, after counting the open series' events
    /// as sightings.
    fn forget_expired(&mut self, in_use: Vec<(&str, EpochMillis)>) {
        for (k, latest) in in_use {
            if let Some(at) = self.seen.get_mut(k) {
                *at = (*at).max(latest);
            }
        }
        let horizon = self.forget_before;
        self.seen.retain(|_, at| *at >= horizon);
        self.forgot_at = horizon;
    }

    /// Remembers `keys` as seen at `at` (the caller made room for the new ones).
    pub(super) fn note<'a>(&mut self, keys: impl Iterator<Item = &'a str>, at: EpochMillis) {
        for k in keys {
            match self.seen.get_mut(k) {
                Some(latest) => *latest = (*latest).max(at),
                None => {
                    self.seen.insert(k.into(), at);
                }
            }
        }
    }

    /// Whether the not yet remembered keys `new` fit (forgetting expired keys first when
    /// `may_forget`), or the first of them past the limit.
    pub(super) fn room_for<'b, I>(
        &mut self,
        new: &[&str],
        may_forget: bool,
        in_use: I,
    ) -> Result<(), OverLimit>
    where
        I: FnOnce() -> Vec<(&'b str, EpochMillis)>,
    {
        let fits = match may_forget {
            true => self.make_room(new.len(), in_use),
            false => self.seen.len() + new.len() <= self.limit,
        };
        if fits || new.is_empty() {
            return Ok(());
        }
        let room = self.limit.saturating_sub(self.seen.len());
        Err(OverLimit {
            key: new[room.min(new.len() - 1)].to_string(),
            limit: self.limit,
        })
    }

    /// Checks `keys` of one event at `at` and remembers them, or names the first key that would
    /// exceed the limit (nothing is remembered then).
    pub(super) fn admit<'a, 'b, I>(
        &mut self,
        keys: impl Iterator<Item = &'a str> + Clone,
        at: EpochMillis,
        in_use: I,
    ) -> Result<(), OverLimit>
    where
        I: FnOnce() -> Vec<(&'b str, EpochMillis)>,
    {
        let new = self.unknown(keys.clone());
        if !new.is_empty() {
            self.room_for(&new, true, in_use)?;
        }
        self.note(keys, at);
        Ok(())
    }

    /// Every remembered key with its latest time, in key order (for snapshots and tests).
    pub(super) fn entries(&self) -> Vec<(&str, EpochMillis)> {
        let mut all: Vec<(&str, EpochMillis)> =
            self.seen.iter().map(|(k, &at)| (k.as_ref(), at)).collect();
        all.sort_unstable();
        all
    }

    /// The horizons, for snapshots.
    pub(super) fn horizons(&self) -> (EpochMillis, EpochMillis) {
        (self.forget_before, self.forgot_at)
    }

    /// Restores the horizons of a snapshot.
    pub(super) fn set_horizons(&mut self, forget_before: EpochMillis, forgot_at: EpochMillis) {
        self.forget_before = forget_before;
        self.forgot_at = forgot_at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none<'a>() -> Vec<(&'a str, EpochMillis)> {
        Vec::new()
    }

    #[test]
    fn keys_fit_up_to_the_limit_and_the_first_past_it_is_named() {
        let mut k = TagKeys::new(3);
        assert_eq!(k.admit(["a", "b"].into_iter(), 10, none), Ok(()));
        // Known keys cost nothing.
        assert_eq!(k.admit(["a", "b"].into_iter(), 11, none), Ok(()));
        let refused = k.admit(["a", "c", "d", "e"].into_iter(), 12, none);
        assert_eq!(
            refused,
            Err(OverLimit {
                key: "d".into(),
                limit: 3
            })
        );
        // Nothing of a refused event is remembered.
        assert!(!k.contains("c"));
        assert_eq!(k.admit(["c"].into_iter(), 12, none), Ok(()));
        assert_eq!(k.len(), 3);
    }

    #[test]
    fn keys_are_forgotten_only_past_the_horizon_and_when_no_open_series_uses_them() {
        let mut k = TagKeys::new(2);
        k.admit(["old"].into_iter(), 100, none).unwrap();
        k.admit(["open"].into_iter(), 100, none).unwrap();
        // Before the horizon passes them, nothing is forgotten.
        k.set_forget_before(100);
        assert!(k.admit(["new"].into_iter(), 500, none).is_err());
        k.set_forget_before(200);
        let mut asked = 0;
        let result = k.admit(["new"].into_iter(), 500, || {
            asked += 1;
            vec![("open", 400)]
        });
        assert_eq!(result, Ok(()));
        assert_eq!(asked, 1);
        assert_eq!(k.entries(), vec![("new", 500), ("open", 400)]);
        // The same horizon again does not scan the open series again.
        assert!(k
            .admit(["other"].into_iter(), 500, || panic!("scanned twice"))
            .is_err());
    }

    #[test]
    fn a_key_keeps_its_latest_time_and_the_horizon_never_goes_back() {
        let mut k = TagKeys::new(10);
        k.note(["a"].into_iter(), 300);
        k.note(["a"].into_iter(), 200);
        assert_eq!(k.entries(), vec![("a", 300)]);
        k.set_forget_before(50);
        k.set_forget_before(40);
        assert_eq!(k.horizons().0, 50);
    }
}
