//! The router face: `world router` (a dispatch rule). A call asks where one message goes and
//! returns the targets; a router sends nothing itself.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::app::lend;
use super::bindings::router::{Router, RouterPre};
use super::bindings::types::HandlerError;
use super::bindings::{EventRef, MessageRef};
use super::imports::HostState;
use super::loader::World;
use super::plugin::{Face, HandlerFailure, Plugin};
use crate::message::{Event, UserMessage};

/// `world router`.
#[derive(Debug)]
pub enum RouterWorld {}

/// Where a router sends a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A connector name, as the router returned it (the dispatcher checks it).
    pub connector: String,
    /// The endpoint to set, if any.
    pub endpoint: Option<String>,
}

/// What a router is asked about.
pub enum RouteInput {
    /// A message from an end user, from transport connector `.1`.
    Inbound(Arc<UserMessage>, String),
    /// A message an app on connector `.1` sent.
    Outbound(Arc<UserMessage>, String),
    /// An event from transport connector `.1` about a message app connector `.2` sent.
    Event(Arc<Event>, String, Option<String>),
}

impl Face for RouterWorld {
    const WORLD: World = World::Router;
    type Pre = RouterPre<HostState>;
    type Bound = Router;
    type Input = RouteInput;
    type Output = Vec<Target>;

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        Router::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
    }

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        RouterPre::new(pre)
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bound> {
        pre.instantiate_async(store).await
    }

    async fn call(
        bound: &Self::Bound,
        store: &mut Store<HostState>,
        input: RouteInput,
    ) -> wasmtime::Result<Result<Vec<Target>, HandlerError>> {
        let answer = match input {
            RouteInput::Inbound(m, from) => {
                let handle = store.data_mut().table.push(MessageRef(m))?;
                let answer = bound.call_route_inbound(&mut *store, lend(&handle), &from).await?;
                store.data_mut().table.delete(handle)?;
                answer
            }
            RouteInput::Outbound(m, from) => {
                let handle = store.data_mut().table.push(MessageRef(m))?;
                let answer = bound.call_route_outbound(&mut *store, lend(&handle), &from).await?;
                store.data_mut().table.delete(handle)?;
                answer
            }
            RouteInput::Event(e, from, origin) => {
                let handle = store.data_mut().table.push(EventRef(e))?;
                let answer =
                    bound.call_route_event(&mut *store, lend(&handle), &from, origin.as_deref()).await?;
                store.data_mut().table.delete(handle)?;
                answer
            }
        };
        Ok(answer.map(|ts| {
            ts.into_iter().map(|t| Target { connector: t.connector, endpoint: t.endpoint }).collect()
        }))
    }
}

/// A loaded router.
pub type RouterPlugin = Plugin<RouterWorld>;

impl Plugin<RouterWorld> {
    /// Which connectors get a message that arrived on transport connector `from`.
    pub async fn route_inbound(
        &self,
        msg: Arc<UserMessage>,
        from: &str,
    ) -> Result<Vec<Target>, HandlerFailure> {
        Ok(self.call(RouteInput::Inbound(msg, from.to_owned())).await?.0)
    }

    /// Which transport connectors send a message an app on connector `from` sent.
    pub async fn route_outbound(
        &self,
        msg: Arc<UserMessage>,
        from: &str,
    ) -> Result<Vec<Target>, HandlerFailure> {
        Ok(self.call(RouteInput::Outbound(msg, from.to_owned())).await?.0)
    }

    /// Which app connectors get an event from transport connector `from` about a message that
    /// app connector `origin` sent.
    pub async fn route_event(
        &self,
        event: Arc<Event>,
        from: &str,
        origin: Option<&str>,
    ) -> Result<Vec<Target>, HandlerFailure> {
        Ok(self.call(RouteInput::Event(event, from.to_owned(), origin.map(str::to_owned))).await?.0)
    }
}
