//! Fair shares of a capped resource (the isolates running invocations, the WebAssembly instance
//! pool): what waits for a place is let in in arrival order, except that no single function,
//! and no single group of functions (an API key's), may hold more than half of the places.
//! Whatever one function does, with its sleepers holding every place it may take, the others
//! still get in.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Who holds a place: the function, and the group it belongs to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub function: Arc<str>,
    pub group: Option<Arc<str>>,
}

/// What a place is counted against: a function, or a group (kept apart, so that a function
/// and a group of the same name share nothing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Function(Arc<str>),
    Group(Arc<str>),
}

impl Holder {
    fn keys(&self) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Function(self.function.clone()))
            .chain(self.group.clone().map(Key::Group))
    }
}

/// Places under a cap, and what waits for one (`T`: whatever the waiter needs to start).
pub(crate) struct FairShare<T> {
    /// Places taken.
    running: usize,
    /// The cap.
    max: usize,
    /// The most places one function or group may hold.
    share: usize,
    /// Places held by each function and each group.
    held: HashMap<Key, usize>,
    /// In arrival order.
    waiting: VecDeque<(Holder, T)>,
}

impl<T> FairShare<T> {
    /// A cap of `max` places, each function or group holding at most half of them (at least
    /// one).
    pub fn new(max: usize) -> Self {
        Self {
            running: 0,
            max,
            share: (max / 2).max(1),
            held: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Places taken now.
    pub fn running(&self) -> usize {
        self.running
    }

    fn admissible(&self, holder: &Holder) -> bool {
        self.running < self.max
            && holder
                .keys()
                .all(|key| self.held.get(&key).copied().unwrap_or(0) < self.share)
    }

    fn take(&mut self, holder: &Holder) {
        self.running += 1;
        for key in holder.keys() {
            *self.held.entry(key).or_default() += 1;
        }
    }

    /// Gives `item` a place now (returning it), or queues it.
    pub fn enter(&mut self, holder: Holder, item: T) -> Option<T> {
        // Someone of the same function or group already waiting goes first.
        let overtakes = self.waiting.iter().any(|(waiting, _)| {
            holder
                .keys()
                .any(|key| waiting.keys().any(|other| other == key))
        });
        if !overtakes && self.admissible(&holder) {
            self.take(&holder);
            return Some(item);
        }
        self.waiting.push_back((holder, item));
        None
    }

    /// Gives back `holder`'s place; returns the waiter that takes it (the longest waiting one
    /// that may), which then holds a place.
    pub fn leave(&mut self, holder: &Holder) -> Option<(Holder, T)> {
        self.running -= 1;
        for key in holder.keys() {
            if let Some(count) = self.held.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&key);
                }
            }
        }
        let next = self
            .waiting
            .iter()
            .position(|(waiting, _)| self.admissible(waiting))?;
        let (holder, item) = self.waiting.remove(next)?;
        self.take(&holder);
        Some((holder, item))
    }

    /// Waiters that no longer wait (`gone`) are dropped from the queue.
    pub fn forget(&mut self, gone: impl Fn(&T) -> bool) {
        self.waiting.retain(|(_, item)| !gone(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(function: &str, group: Option<&str>) -> Holder {
        Holder {
            function: function.into(),
            group: group.map(Into::into),
        }
    }

    #[test]
    fn one_function_holds_at_most_half_and_the_others_get_in() {
        let mut places = FairShare::new(4);
        let sleeper = holder("sleeper", None);
        assert_eq!(places.enter(sleeper.clone(), 1), Some(1));
        assert_eq!(places.enter(sleeper.clone(), 2), Some(2));
        // Its third waits although two places are free...
        assert_eq!(places.enter(sleeper.clone(), 3), None);
        // ...and another function gets in past it.
        assert_eq!(places.enter(holder("hello", None), 10), Some(10));
        assert_eq!(places.enter(holder("other", None), 20), Some(20));
        assert_eq!(places.enter(holder("late", None), 30), None);
        // The cap is full: a place freed by `hello` goes to the longest waiter that may take it.
        assert_eq!(
            places.leave(&holder("hello", None)).map(|(_, item)| item),
            Some(30)
        );
        // The sleeper's own place goes to its own waiter.
        assert_eq!(places.leave(&sleeper).map(|(_, item)| item), Some(3));
    }

    #[test]
    fn a_group_of_functions_holds_at_most_half_too() {
        let mut places = FairShare::new(4);
        assert_eq!(places.enter(holder("a", Some("key")), 1), Some(1));
        assert_eq!(places.enter(holder("b", Some("key")), 2), Some(2));
        assert_eq!(places.enter(holder("c", Some("key")), 3), None);
        assert_eq!(places.enter(holder("d", Some("other")), 4), Some(4));
        places.forget(|item| *item == 3);
        assert!(places.leave(&holder("a", Some("key"))).is_none());
    }

    #[test]
    fn a_function_and_a_group_of_the_same_name_are_counted_apart() {
        let mut places = FairShare::new(4);
        assert_eq!(places.enter(holder("x", None), 1), Some(1));
        assert_eq!(places.enter(holder("x", None), 2), Some(2));
        assert_eq!(places.enter(holder("y", Some("x")), 3), Some(3));
    }

    #[test]
    fn a_cap_of_one_is_shared_by_taking_turns() {
        let mut places = FairShare::new(1);
        assert_eq!(places.enter(holder("a", None), 1), Some(1));
        assert_eq!(places.enter(holder("a", None), 2), None);
        assert_eq!(places.enter(holder("b", None), 3), None);
        assert_eq!(
            places.leave(&holder("a", None)).map(|(_, item)| item),
            Some(2)
        );
    }
}
