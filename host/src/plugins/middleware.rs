//! The middleware face: `world middleware` (a step of a connector's chain). A call shows the
//! middleware one user message; it passes it on, changed through `edit` or not, or drops it.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::app::lend;
use super::bindings::MessageRef;
use super::bindings::middleware::{Middleware, MiddlewarePre};
use super::bindings::types::{self, HandlerError};
use super::imports::HostState;
use super::loader::World;
use super::plugin::{Face, HandlerFailure, Plugin};
use crate::message::UserMessage;

/// `world middleware`.
#[derive(Debug)]
pub enum MiddlewareWorld {}

/// Which way a message passes a middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards the apps.
    Inbound,
    /// Towards the end user.
    Outbound,
}

/// A middleware's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on with this message: the input itself if the middleware changed nothing (the same
    /// `Arc`), else its edited copy.
    Pass(Arc<UserMessage>),
    /// Stop here, for this reason.
    Drop(String),
}

/// What a middleware is shown.
pub struct ProcessInput {
    message: Arc<UserMessage>,
    direction: Direction,
    connector: String,
}

impl Face for MiddlewareWorld {
    const WORLD: World = World::Middleware;
    type Pre = MiddlewarePre<HostState>;
    type Bound = Middleware;
    type Input = ProcessInput;
    type Output = Verdict;

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        Middleware::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
    }

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        MiddlewarePre::new(pre)
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bound> {
        pre.instantiate_async(store).await
    }

    async fn call(
        bound: &Self::Bound,
        store: &mut Store<HostState>,
        input: ProcessInput,
    ) -> wasmtime::Result<Result<Verdict, HandlerError>> {
        let dir = match input.direction {
            Direction::Inbound => types::Direction::Inbound,
            Direction::Outbound => types::Direction::Outbound,
        };
        let handle = store.data_mut().table.push(MessageRef(input.message))?;
        let answer = bound.call_process(&mut *store, lend(&handle), dir, &input.connector).await?;
        // The message as the middleware left it (`edit` copies it on its first change).
        let MessageRef(message) = store.data_mut().table.delete(handle)?;
        Ok(answer.map(|v| match v {
            types::Verdict::Pass => Verdict::Pass(message),
            types::Verdict::Drop(reason) => Verdict::Drop(reason),
        }))
    }
}

/// A loaded middleware.
pub type MiddlewarePlugin = Plugin<MiddlewareWorld>;

impl Plugin<MiddlewareWorld> {
    /// The verdict on `msg` passing through `connector` in `direction`.
    pub async fn process(
        &self,
        msg: Arc<UserMessage>,
        direction: Direction,
        connector: &str,
    ) -> Result<Verdict, HandlerFailure> {
        Ok(self.call(ProcessInput { message: msg, direction, connector: connector.to_owned() }).await?.0)
    }
}
