//! The features' parts of the shared state.
//!
//! Infrastructure cannot name a feature's types (the layers in docs/ARCHITECTURE.md), so
//! `AppState` does not have a field per feature. It holds one `Parts`: values keyed by
//! their type, put there by the composition root (`server::startup::build_state`). Each
//! feature reads its own part through an accessor it declares next to the type
//! (`impl AppState { pub fn queues(&self) -> &QueueSettings }`), so a call site reads the
//! same as a field and no layer below the feature learns the type exists.
//!
//! A part the root did not hand over is a wiring bug that the first request touching it
//! reports (a panic naming the type), never a silent default.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

type Part = Arc<dyn Any + Send + Sync>;

/// Values keyed by their type. Cheap to clone: the map is shared until a part is changed.
#[derive(Clone, Default)]
pub struct Parts(Arc<HashMap<TypeId, Part>>);

impl Parts {
    /// These parts with `part` added (or put in place of the one of the same type).
    pub fn with<T: Any + Send + Sync>(mut self, part: T) -> Self {
        self.set(part);
        self
    }

    /// Puts `part` in place of the one of the same type (tests and side runs change a
    /// setting on their own copy of the state; other copies keep theirs).
    pub fn set<T: Any + Send + Sync>(&mut self, part: T) {
        Arc::make_mut(&mut self.0).insert(TypeId::of::<T>(), Arc::new(part));
    }

    /// The part of type `T`.
    ///
    /// # Panics
    /// When the composition root did not hand one over: every request would fail the same
    /// way, so the first test of the feature finds it.
    pub fn get<T: Any + Send + Sync>(&self) -> &T {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|part| part.downcast_ref())
            .unwrap_or_else(|| {
                panic!(
                    "the composition root gave the state no {}",
                    type_name::<T>()
                )
            })
    }

    /// The part of type `T`, to change on this copy of the state only (copy on write).
    ///
    /// # Panics
    /// As `get`.
    pub fn get_mut<T: Any + Send + Sync + Clone>(&mut self) -> &mut T {
        let current = self.get::<T>().clone();
        self.set(current);
        let part = Arc::make_mut(&mut self.0)
            .get_mut(&TypeId::of::<T>())
            .expect("set just above");
        Arc::get_mut(part)
            .and_then(|part| part.downcast_mut())
            .expect("a part set just above has one owner and its own type")
    }
}

#[cfg(test)]
mod tests {
    use super::Parts;

    #[derive(Clone, Debug, PartialEq)]
    struct Limit(u32);

    #[test]
    fn a_part_is_found_by_its_type_and_a_change_stays_on_its_copy() {
        let parts = Parts::default().with(Limit(5)).with("name");
        let mut changed = parts.clone();
        changed.get_mut::<Limit>().0 = 9;
        assert_eq!(parts.get::<Limit>(), &Limit(5));
        assert_eq!(changed.get::<Limit>(), &Limit(9));
        assert_eq!(*changed.get::<&str>(), "name");
    }

    #[test]
    #[should_panic(expected = "gave the state no")]
    fn a_missing_part_names_its_type() {
        Parts::default().get::<Limit>();
    }
}
