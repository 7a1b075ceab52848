//! Without the `mpi` feature a group never spans processes: `Processes` has no values,
//! so every multi-process branch is statically dead.

use std::time::Duration;

use crate::error::Result;

/// No value exists: built without the `mpi` feature.
#[derive(Debug, Clone)]
pub(crate) enum Processes {}

#[allow(clippy::unused_self)]
impl Processes {
    pub(crate) fn index(&self) -> usize {
        match *self {}
    }

    pub(crate) fn count(&self) -> usize {
        match *self {}
    }

    pub(crate) fn for_group(&self, _timeout: Duration) -> Result<Self> {
        match *self {}
    }

    pub(crate) fn poison(&self) {
        match *self {}
    }

    pub(crate) fn node_index(&self) -> usize {
        match *self {}
    }

    pub(crate) fn node_count(&self) -> usize {
        match *self {}
    }

    pub(crate) fn all_to_all<T: bytemuck::Pod>(
        &self,
        _op: &'static str,
        _send: (Vec<T>, &[usize]),
        _recv: (Vec<T>, &[usize]),
        _timeout: Duration,
    ) -> Result<(Vec<T>, Vec<T>)> {
        match *self {}
    }

    pub(crate) fn all_gather<T: bytemuck::Pod>(
        &self,
        _op: &'static str,
        _mine: Vec<T>,
        _recv: (Vec<T>, &[usize]),
        _timeout: Duration,
    ) -> Result<(Vec<T>, Vec<T>)> {
        match *self {}
    }

    pub(crate) fn broadcast<T: bytemuck::Pod>(
        &self,
        _op: &'static str,
        _buf: Vec<T>,
        _root: usize,
        _timeout: Duration,
    ) -> Result<Vec<T>> {
        match *self {}
    }
}
