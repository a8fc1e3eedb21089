//! `wasi:io/poll` bounded by the evaluation's deadline.
//!
//! Epoch interruption stops a plugin's own code, but not a host call it is
//! blocked in: WASI's `poll` and `pollable.block` wait on the host side
//! (a `monotonic-clock.subscribe-duration` of 30 s, which is what
//! `std::thread::sleep` does on `wasm32-wasip2`). Warden's choice: a plugin
//! may block, but never past its deadline. These two calls wait at most
//! until the deadline; if it comes first, they end the evaluation as a
//! timeout, the same failure as a plugin that computes too long.
//!
//! Every other blocking call of WASI waits on nothing in a plugin's sandbox:
//! stdout and stderr are captured in memory and always ready, stdin is empty,
//! and no file, socket or name lookup is granted.

use std::time::Instant;

use wasmtime::Trap;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;

use super::store::StoreState;

/// The resource table of a store, and when its evaluation must end.
pub(crate) struct Bounded<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

struct BoundedPoll;

impl HasData for BoundedPoll {
    type Data<'a> = Bounded<'a>;
}

impl Bounded<'_> {
    /// Runs a wait of `f` on the table, giving up at the deadline with the
    /// trap epoch interruption raises.
    fn wait<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut ResourceTable) -> wasmtime::Result<T>,
    ) -> wasmtime::Result<T> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let table = &mut *self.table;
        in_tokio(async move { tokio::time::timeout_at(deadline, f(table)).await })
            .unwrap_or_else(|_elapsed| Err(Trap::Interrupt.into()))
    }
}

impl sync_poll::Host for Bounded<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.wait(async move |t: &mut ResourceTable| async_poll::Host::poll(t, pollables).await)
    }
}

impl sync_poll::HostPollable for Bounded<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Polls once, never waits.
        in_tokio(async { async_poll::HostPollable::ready(self.table, pollable).await })
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.wait(async move |t: &mut ResourceTable| {
            async_poll::HostPollable::block(t, pollable).await
        })
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

/// Replaces the `wasi:io/poll` that `wasmtime_wasi::p2::add_to_linker_sync`
/// linked with the bounded one.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = sync_poll::add_to_linker::<StoreState, BoundedPoll>(linker, |s| Bounded {
        deadline: s.deadline,
        table: &mut s.table,
    });
    linker.allow_shadowing(false);
    added
}
