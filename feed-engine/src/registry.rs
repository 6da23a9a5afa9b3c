//! Every symbol the engine has seen, with its history ring (which also holds its last value).
//!
//! Readers (subscribe, snapshot, `/symbols`) load an immutable snapshot of the table through
//! `arc_swap` and never lock. Only the publisher adds symbols, copying the table
//! (read-copy-update): new symbols are rare next to ticks, so the copy is cheap overall and
//! keeps every read lock-free.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use crate::{ring::Ring, tick::Tick};

/// One symbol's shared state.
pub struct SymbolState {
    /// Dense id, the index into [`Table::symbols`].
    pub id: u32,
    /// The symbol's name.
    pub name: Arc<str>,
    /// The newest ticks of this symbol, addressed by `seq`.
    pub history: Ring<Tick>,
}

impl SymbolState {
    /// The symbol's last tick, if it has one.
    pub fn last(&self) -> Option<Arc<Tick>> {
        self.history.newest()
    }
}

/// An immutable view of every known symbol.
#[derive(Default)]
pub struct Table {
    /// Indexed by symbol id.
    pub symbols: Vec<Arc<SymbolState>>,
    by_name: HashMap<Arc<str>, u32>,
}

impl Table {
    /// Looks a symbol up by name.
    pub fn get(&self, name: &str) -> Option<&Arc<SymbolState>> {
        self.by_name.get(name).map(|&id| &self.symbols[id as usize])
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Registry {
    table: ArcSwap<Table>,
}

impl Registry {
    /// The current table.
    pub fn load(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Adds a symbol. Only the publisher calls this, under the publish lock, so there is
    /// never a lost update between the load and the store.
    pub(crate) fn add(&self, name: Arc<str>, history_depth: usize) -> Arc<SymbolState> {
        let old = self.table.load();
        let id = u32::try_from(old.symbols.len()).expect("fewer than 4 billion symbols");
        let state = Arc::new(SymbolState {
            id,
            name: Arc::clone(&name),
            history: Ring::new(history_depth, |tick: &Tick| tick.seq),
        });
        let mut symbols = old.symbols.clone();
        symbols.push(Arc::clone(&state));
        let mut by_name = old.by_name.clone();
        by_name.insert(name, id);
        self.table.store(Arc::new(Table { symbols, by_name }));
        state
    }
}
