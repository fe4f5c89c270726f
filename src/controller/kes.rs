//! The KES front-end in the controller: `INSTANCE_ID`, KES's namespace guard, translation,
//! and KES's status (`SUCCESS` / `ERROR, …`) and per-object metrics.

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::{Resource, ResourceExt};

use super::front_end::FrontEnd;
use super::namespaces::{self, Known};
use super::report::{patch_status, with_heartbeat};
use super::Shared;
use crate::api::kes::crd::ExternalSecret;
use crate::api::kes::status::{self, Outcome};
use crate::api::kes::{self, controller_id};
use crate::engine::render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::engine::{SyncSpec, Write};
use crate::error::Error;

impl FrontEnd for ExternalSecret {
    const API: &'static str = "kes";

    fn secret_selector() -> String {
        format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
    }

    /// `spec.controllerId`, unset when empty.
    type Route = Option<Box<str>>;

    fn route(&self) -> Self::Route {
        controller_id(self).map(Into::into)
    }

    /// `INSTANCE_ID` against `spec.controllerId`, as KES: equal, where unset equals unset.
    fn serves(route: &Self::Route, _namespace: &str, shared: &Shared) -> bool {
        route.as_deref() == shared.config.instance_id.as_deref()
    }

    fn spec(&self, shared: &Shared) -> Result<SyncSpec, Error> {
        namespace_permits(shared, self)?;
        kes::translate(self, &shared.defaults)
    }

    fn report<'a>(
        &'a self,
        shared: &'a Shared,
        result: Result<&'a Write, &'a Error>,
    ) -> BoxFuture<'a, ()> {
        async move {
            let outcome = match result {
                Ok(_) => Outcome::synced(),
                Err(e) => Outcome {
                    ok: false,
                    reason: e.reason(),
                    message: e.to_string(),
                },
            };
            shared.metrics.per_object.record(
                &self.namespace().unwrap_or_default(),
                &self.name_any(),
                self.backend().as_str(),
                outcome.ok,
            );
            let rollout = shared.restarter.condition(self);
            let next = with_heartbeat(shared, |heartbeat| {
                status::next_status(
                    self.status.as_ref(),
                    &outcome,
                    &rollout,
                    self.meta().generation,
                    chrono::Utc::now(),
                    heartbeat,
                )
            });
            patch_status(self, shared, next).await;
        }
        .boxed()
    }
}

/// KES's namespace guard for this object (`reconcile` waits for the Namespaces' list).
fn namespace_permits(shared: &Shared, es: &ExternalSecret) -> Result<(), Error> {
    let ns = es.namespace().unwrap_or_default();
    let guard = match shared.namespaces.lookup(&ns) {
        Known::Pending => {
            return Err(Error::Forbidden(format!(
                "the annotations of Namespace {ns} are not known yet"
            )))
        }
        Known::Unreadable(why) => {
            return Err(Error::Forbidden(format!(
                "cannot read Namespace {ns} to check its annotations ({why}); denied until it can be read"
            )))
        }
        Known::Guard(g) => g,
    };
    let req = namespaces::Request {
        keys: es.spec.vault_keys().collect(),
        role: es.spec.vault_role.as_deref().filter(|r| !r.is_empty()),
    };
    namespaces::check(&shared.config.namespace_guard, &ns, guard.as_ref(), &req)
        .map_err(Error::Forbidden)
}
