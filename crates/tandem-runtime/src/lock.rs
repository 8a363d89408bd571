//! The distributed lock building block: `POST /v1.0-alpha1/lock/{store}` and
//! `/unlock/{store}`, gRPC `TryLockAlpha1`/`UnlockAlpha1`. [`Locks`] owns the loaded
//! lock stores, checks requests as daprd does, and names each lock as daprd's
//! `keyPrefix` strategy does, so apps sharing a store with daprd sidecars share their
//! locks too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_components::lock::{LockError, LockStore, UnlockStatus};
use tandem_resiliency::{Policy, Verdict};
use tandem_spec::{ComponentMetadata, ResourceError};

use crate::error::Error;

/// How a store names its locks (`keyPrefix`): `lock||{appid}||{resource}` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPrefix {
    /// `appid` (the default): locks are the app's own.
    AppId,
    /// `name`: shared by every app using the store by this name.
    StoreName,
    /// `none`: shared by every app using the store.
    None,
    /// Any other value: shared by the apps giving the same one.
    Fixed(String),
}

impl KeyPrefix {
    pub(crate) fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        let value = metadata.string_or("keyPrefix", "appid").to_lowercase();
        if value.contains("||") {
            return Err(metadata.field_error("keyPrefix", "cannot contain `||`"));
        }
        Ok(match value.as_str() {
            "appid" => Self::AppId,
            "name" => Self::StoreName,
            "none" => Self::None,
            _ => Self::Fixed(value),
        })
    }
}

/// One loaded lock store.
pub(crate) struct LockHandle {
    pub store: Arc<dyn LockStore>,
    pub prefix: KeyPrefix,
    /// Its outbound resiliency policy, as daprd's `ComponentOutboundPolicy`.
    pub outbound: Policy,
}

/// The lock stores of one sidecar, by name.
pub struct Locks {
    stores: HashMap<String, LockHandle>,
    app_id: String,
}

impl Locks {
    pub(crate) fn new(stores: HashMap<String, LockHandle>, app_id: String) -> Self {
        Self { stores, app_id }
    }

    /// The store `name`, once the request names a resource and an owner.
    fn store(&self, name: &str, resource: &str, owner: &str) -> Result<&LockHandle, Error> {
        if self.stores.is_empty() {
            return Err(Error::LockStoresNotConfigured);
        }
        if resource.is_empty() {
            return Err(Error::Malformed(format!(
                "ResourceId is empty in lock store {name}"
            )));
        }
        if owner.is_empty() {
            return Err(Error::Malformed(format!(
                "LockOwner is empty in lock store {name}"
            )));
        }
        self.stores
            .get(name)
            .ok_or_else(|| Error::LockStoreNotFound(name.to_owned()))
    }

    /// The stored name of `resource`'s lock in store `name`.
    fn lock_name(&self, store: &str, prefix: &KeyPrefix, resource: &str) -> Result<String, String> {
        if resource.contains("||") {
            return Err(format!(
                "input key/keyPrefix '{resource}' can't contain '||'"
            ));
        }
        Ok(match prefix {
            KeyPrefix::AppId if !self.app_id.is_empty() => {
                format!("lock||{}||{resource}", self.app_id)
            }
            KeyPrefix::AppId | KeyPrefix::None => format!("lock||{resource}"),
            KeyPrefix::StoreName => format!("lock||{store}||{resource}"),
            KeyPrefix::Fixed(prefix) => format!("lock||{prefix}||{resource}"),
        })
    }

    /// Takes `resource`'s lock in store `store` for `owner`, for `expiry_seconds`:
    /// whether it was free.
    pub async fn try_lock(
        &self,
        store: &str,
        resource: &str,
        owner: &str,
        expiry_seconds: i32,
    ) -> Result<bool, Error> {
        // daprd checks the expiry first, before even the store.
        let seconds = u64::try_from(expiry_seconds)
            .ok()
            .filter(|seconds| *seconds > 0)
            .ok_or_else(|| {
                Error::Malformed(format!(
                    "ExpiryInSeconds is not positive in lock store {store}"
                ))
            })?;
        let handle = self.store(store, resource, owner)?;
        let lock = self
            .lock_name(store, &handle.prefix, resource)
            .map_err(|cause| Error::TryLock(Error::cause(crate::error::Reason(cause))))?;
        let expiry = Duration::from_secs(seconds);
        guarded(&handle.outbound, || {
            handle.store.try_lock(&lock, owner, expiry)
        })
        .await
        .map_err(Error::TryLock)
    }

    /// Gives `resource`'s lock in store `store` back, if `owner` holds it.
    pub async fn unlock(
        &self,
        store: &str,
        resource: &str,
        owner: &str,
    ) -> Result<UnlockStatus, Error> {
        let handle = self.store(store, resource, owner)?;
        let lock = self
            .lock_name(store, &handle.prefix, resource)
            .map_err(|cause| Error::Unlock(Error::cause(crate::error::Reason(cause))))?;
        guarded(&handle.outbound, || handle.store.unlock(&lock, owner))
            .await
            .map_err(Error::Unlock)
    }
}

/// A store call under the store's outbound policy (a store failure may be retried).
async fn guarded<T, F, Fut>(policy: &Policy, mut call: F) -> Result<T, crate::error::Cause>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LockError>>,
{
    if policy.is_none() {
        return call().await.map_err(Error::cause);
    }
    policy
        .run(call, |_: &LockError| Verdict::retry_if(true))
        .await
        .map_err(|failure| Error::cause(crate::error::Reason(failure.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_named_as_daprd_names_them() {
        let locks = Locks::new(HashMap::new(), "orders".into());
        let name = |prefix, resource| locks.lock_name("store", &prefix, resource);
        assert_eq!(name(KeyPrefix::AppId, "r").unwrap(), "lock||orders||r");
        assert_eq!(name(KeyPrefix::StoreName, "r").unwrap(), "lock||store||r");
        assert_eq!(name(KeyPrefix::None, "r").unwrap(), "lock||r");
        assert_eq!(
            name(KeyPrefix::Fixed("team".into()), "r").unwrap(),
            "lock||team||r"
        );
        assert!(
            name(KeyPrefix::AppId, "a||b")
                .unwrap_err()
                .contains("'a||b'")
        );
    }
}
