//! Interned names: every organization, contractor, category, district and building id that a
//! ticket had gets a small integer, so rows store and compare `u32`s instead of strings.

use std::collections::HashMap;

use crate::fold::TicketView;

/// Integer ids of the strings of one kind. Id 0 is "none" (a ticket without that attribute);
/// the first name gets id 1. Names are never removed, so an id stays valid for the life of the
/// index.
#[derive(Debug, Default)]
pub(super) struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// Returns the id of `name`, adding it when it is new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        self.names.push(name.into());
        let id = self.names.len() as u32;
        self.ids.insert(name.into(), id);
        id
    }

    /// Returns the id of an optional name: 0 for `None`.
    pub fn intern_optional(&mut self, name: Option<&str>) -> u32 {
        name.map_or(0, |name| self.intern(name))
    }

    /// Returns the id of `name`, or `None` when no ticket ever had it.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Returns the id of an optional name (0 for `None`), or `None` when the name is unknown.
    pub fn id_optional(&self, name: Option<&str>) -> Option<u32> {
        match name {
            None => Some(0),
            Some(name) => self.id(name),
        }
    }

    /// Returns the name of `id`, or `None` for id 0 and for ids never given out.
    pub fn name(&self, id: u32) -> Option<&str> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.names.get(index).map(|name| &**name)
    }

    /// Returns how many ids exist, "none" included: every id is below this.
    pub fn cardinality(&self) -> u64 {
        self.names.len() as u64 + 1
    }

    /// Estimates the heap memory used, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.names.iter().map(|name| name.len()).sum();
        let slot = std::mem::size_of::<(Box<str>, u32)>() + 1;
        self.names.capacity() * std::mem::size_of::<Box<str>>() + 2 * text + self.ids.capacity() * slot
    }
}

/// The interners of the index, one per kind of name.
#[derive(Debug, Default)]
pub(super) struct Names {
    pub organizations: Interner,
    pub contractors: Interner,
    pub categories: Interner,
    pub districts: Interner,
    pub buildings: Interner,
}

impl Names {
    /// Interns every name a view has had, in its current state and along its timeline, so
    /// that queries can look up the ids of a view kept outside the compact rows.
    pub fn intern_view(&mut self, view: &TicketView) {
        self.districts.intern_optional(view.district.as_deref());
        self.buildings.intern(&view.building_id);
        let states = std::iter::once(view.current_state()).chain(view.timeline.iter().map(|change| change.state.clone()));
        for state in states {
            self.organizations.intern_optional(state.organization_id.as_deref());
            self.contractors.intern_optional(state.contractor_id.as_deref());
            self.categories.intern(&state.category);
        }
    }

    /// Estimates the heap memory used, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.organizations.heap_bytes()
            + self.contractors.heap_bytes()
            + self.categories.heap_bytes()
            + self.districts.heap_bytes()
            + self.buildings.heap_bytes()
    }
}
