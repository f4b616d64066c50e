//! The application face: `world application` (campaign logic). A call hands the app one user
//! message or one event and returns what the app sent.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker, Resource};

use super::bindings::types::HandlerError;
use super::bindings::{Application, ApplicationPre, EventRef, MessageRef};
use super::imports::HostState;
use super::loader::World;
use super::plugin::{Face, HandlerFailure, Plugin};
use crate::message::{Event, UserMessage};

/// `world application`.
#[derive(Debug)]
pub enum AppWorld {}

/// What an application is handed.
pub enum AppInput {
    /// A message from an end user.
    User(Arc<UserMessage>),
    /// An event about a message the app sent.
    Event(Arc<Event>),
}

impl Face for AppWorld {
    const WORLD: World = World::Application;
    type Pre = ApplicationPre<HostState>;
    type Bound = Application;
    type Input = AppInput;
    type Output = ();

    fn parent_id(input: &AppInput) -> Option<String> {
        Some(match input {
            AppInput::User(m) => m.message_id.clone(),
            AppInput::Event(e) => e.event_id.clone(),
        })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        Application::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
    }

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        ApplicationPre::new(pre)
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self::Bound> {
        pre.instantiate_async(store).await
    }

    async fn call(
        bound: &Self::Bound,
        store: &mut Store<HostState>,
        input: AppInput,
    ) -> wasmtime::Result<Result<(), HandlerError>> {
        match input {
            AppInput::User(m) => {
                let handle = store.data_mut().table.push(MessageRef(m))?;
                let answer = bound.call_handle_user_message(&mut *store, lend(&handle)).await?;
                store.data_mut().table.delete(handle)?;
                Ok(answer)
            }
            AppInput::Event(e) => {
                let handle = store.data_mut().table.push(EventRef(e))?;
                let answer = bound.call_handle_event(&mut *store, lend(&handle)).await?;
                store.data_mut().table.delete(handle)?;
                Ok(answer)
            }
        }
    }
}

/// A borrow of a handle the host owns: the guest may use it during the call, never keep it.
pub(crate) fn lend<T: 'static>(owned: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(owned.rep())
}

/// A loaded application.
pub type AppPlugin = Plugin<AppWorld>;

impl Plugin<AppWorld> {
    /// Handle a user message; on success returns what the handler sent, in order.
    pub async fn handle_user_message(
        &self,
        msg: Arc<UserMessage>,
    ) -> Result<Vec<UserMessage>, HandlerFailure> {
        Ok(self.call(AppInput::User(msg)).await?.1)
    }

    /// Handle an event about a message this app sent; returns what the handler sent.
    pub async fn handle_event(&self, event: Arc<Event>) -> Result<Vec<UserMessage>, HandlerFailure> {
        Ok(self.call(AppInput::Event(event)).await?.1)
    }
}
