//! Leader election on a `coordination.k8s.io` Lease, as client-go's leaderelection: every replica tries to hold
//! the Lease `kube-system/<group>`; the holder runs the group's controllers and renews the Lease every 2 s; the
//! others take it over once it has not changed for its whole duration (15 s), judged by their own clock since
//! they last saw it change, so clock skew between machines does not matter. Writes are compare-and-swap on the
//! Lease's resourceVersion, so two replicas on one database never both win. A leader that cannot renew for 10 s
//! stops its controllers before another replica can take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

pub struct Election {
    leases: Api<Lease>,
    group: &'static str,
    identity: String,
}

impl Election {
    pub fn new(client: kube::Client, group: &'static str, identity: String) -> Election {
        Election { leases: Api::namespaced(client, "kube-system"), group, identity }
    }

    /// Runs `lead` whenever this replica holds the Lease, with a token cancelled when it stops holding it; returns
    /// at `cancel`, after releasing the Lease so that another replica takes over at once.
    pub async fn run<F, Fut>(self, cancel: CancellationToken, lead: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut observed: Option<(String, Instant)> = None;
        loop {
            // Try to acquire.
            let acquired = tokio::select! {
                () = cancel.cancelled() => return,
                acquired = self.try_acquire(&mut observed) => acquired,
            };
            if !acquired {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(RETRY_PERIOD) => continue,
                }
            }
            tracing::info!(group = self.group, identity = %self.identity, "became leader");
            let leading = cancel.child_token();
            let renewing = self.renew_until_lost(&leading);
            tokio::select! {
                () = lead(leading.clone()) => {}
                () = renewing => {}
            }
            leading.cancel();
            if cancel.is_cancelled() {
                self.release().await;
                return;
            }
            tracing::warn!(group = self.group, "lost the leader lease; controllers stopped");
            observed = None;
        }
    }

    async fn try_acquire(&self, observed: &mut Option<(String, Instant)>) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        match self.leases.get_opt(self.group).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.group.to_string()), ..Default::default() },
                    spec: Some(self.spec(now.clone(), now, 0)),
                };
                self.leases.create(&PostParams::default(), &lease).await.is_ok()
            }
            Ok(Some(mut lease)) => {
                let version = lease.metadata.resource_version.clone().unwrap_or_default();
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                if holder != self.identity && !holder.is_empty() {
                    // Someone else holds it: take over only once it has not changed for its whole duration.
                    let duration = spec
                        .lease_duration_seconds
                        .map(|seconds| Duration::from_secs(seconds.max(1) as u64))
                        .unwrap_or(LEASE_DURATION);
                    let seen_at = match observed {
                        Some((seen, at)) if *seen == version => *at,
                        _ => {
                            *observed = Some((version.clone(), Instant::now()));
                            return false;
                        }
                    };
                    if seen_at.elapsed() < duration {
                        return false;
                    }
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
                let acquire_time =
                    if holder == self.identity { spec.acquire_time.unwrap_or(now.clone()) } else { now.clone() };
                lease.spec = Some(self.spec(acquire_time, now, transitions));
                // The object carries its resourceVersion: the replace is a compare-and-swap.
                self.leases.replace(self.group, &PostParams::default(), &lease).await.is_ok()
            }
            Err(error) => {
                tracing::debug!(group = self.group, error = %error, "cannot read the leader lease");
                false
            }
        }
    }

    fn spec(&self, acquire_time: MicroTime, renew_time: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire_time),
            renew_time: Some(renew_time),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Renews every `RETRY_PERIOD`; returns when a renewal has not succeeded for `RENEW_DEADLINE`, when another
    /// replica holds the Lease, or at `leading`'s cancellation.
    async fn renew_until_lost(&self, leading: &CancellationToken) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                () = leading.cancelled() => return,
                () = tokio::time::sleep(RETRY_PERIOD) => {}
            }
            match self.renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    tracing::debug!(group = self.group, error = %error, "cannot renew the leader lease");
                    if last_renewed.elapsed() >= RENEW_DEADLINE {
                        return;
                    }
                }
            }
        }
    }

    /// `Ok(false)` when another replica holds the Lease now.
    async fn renew(&self) -> Result<bool, kube::Error> {
        let mut lease = self.leases.get(self.group).await?;
        let Some(spec) = lease.spec.as_mut() else { return Ok(false) };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        self.leases.replace(self.group, &PostParams::default(), &lease).await?;
        Ok(true)
    }

    /// Gives the Lease up (as client-go's ReleaseOnCancel: no holder, 1 s duration).
    async fn release(&self) {
        let Ok(mut lease) = self.leases.get(self.group).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let _ = self.leases.replace(self.group, &PostParams::default(), &lease).await;
    }
}
