//! A container's cgroup settings, computed as the kubelet does from its resources and the pod's QoS class: CPU
//! shares from the request, a CFS quota from the limit, the memory limit, and an OOM score that makes the kernel
//! kill best-effort pods first and guaranteed ones last.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cri::proto;

/// The CFS period the kubelet uses (100 ms); a CPU limit becomes a quota per period.
const CPU_PERIOD_MICROS: i64 = 100_000;
/// The smallest quota the kernel accepts (1 ms).
const MIN_CPU_QUOTA_MICROS: i64 = 1_000;
/// The kernel's smallest cpu.shares.
const MIN_CPU_SHARES: i64 = 2;
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The cgroup settings of `container` in `pod`, on a node with `memory_capacity` bytes.
pub fn linux_resources(pod: &Pod, container: &Container, memory_capacity: u64) -> proto::LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let amount = |list: &Option<BTreeMap<String, Quantity>>, name: &str| -> Option<f64> {
        let quantity = list.as_ref()?.get(name)?;
        kube_quantity::ParsedQuantity::try_from(quantity).ok()?.to_bytes_f64()
    };
    let cpu_request = amount(&resources.requests, "cpu").or_else(|| amount(&resources.limits, "cpu"));
    let cpu_limit = amount(&resources.limits, "cpu");
    let memory_request = amount(&resources.requests, "memory").or_else(|| amount(&resources.limits, "memory"));
    let memory_limit = amount(&resources.limits, "memory");

    let milli = |cpus: f64| (cpus * 1000.0).ceil() as i64;
    let cpu_shares = cpu_request.map_or(MIN_CPU_SHARES, |cpus| (milli(cpus) * 1024 / 1000).max(MIN_CPU_SHARES));
    let cpu_quota = cpu_limit.map_or(0, |cpus| (milli(cpus) * CPU_PERIOD_MICROS / 1000).max(MIN_CPU_QUOTA_MICROS));
    let qos = pod.status.as_ref().and_then(|status| status.qos_class.as_deref()).unwrap_or("BestEffort");
    let oom_score_adj = match qos {
        "Guaranteed" => GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => BEST_EFFORT_OOM_SCORE_ADJ,
        // Burstable: the larger its share of the node's memory, the later it is killed; always between the two
        // other classes.
        _ => {
            let request = memory_request.unwrap_or(0.0) as i64;
            let capacity = memory_capacity.max(1) as i64;
            (1000 - 1000 * request / capacity).clamp(1000 + GUARANTEED_OOM_SCORE_ADJ, BEST_EFFORT_OOM_SCORE_ADJ - 1)
        }
    };
    proto::LinuxContainerResources {
        cpu_period: if cpu_quota > 0 { CPU_PERIOD_MICROS } else { 0 },
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory_limit.map_or(0, |bytes| bytes as i64),
        oom_score_adj,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(qos: &str, resources: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": resources}]},
            "status": {"qosClass": qos},
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, container)
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn requests_and_limits_become_shares_quota_and_memory() {
        let (pod, container) = pod_with(
            "Burstable",
            serde_json::json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "2Gi"}}),
        );
        let resources = linux_resources(&pod, &container, 4 * GIB);
        assert_eq!(resources.cpu_shares, 256);
        assert_eq!((resources.cpu_quota, resources.cpu_period), (50_000, 100_000));
        assert_eq!(resources.memory_limit_in_bytes, 2 * GIB as i64);
        assert_eq!(resources.oom_score_adj, 750, "a quarter of the node's memory requested");
    }

    #[test]
    fn qos_classes_order_the_oom_killer() {
        let (pod, container) = pod_with("BestEffort", serde_json::json!({}));
        let resources = linux_resources(&pod, &container, 4 * GIB);
        assert_eq!((resources.cpu_shares, resources.cpu_quota, resources.memory_limit_in_bytes), (2, 0, 0));
        assert_eq!(resources.oom_score_adj, 1000);
        let limits = serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}});
        let (pod, container) = pod_with("Guaranteed", limits);
        let resources = linux_resources(&pod, &container, 4 * GIB);
        assert_eq!((resources.cpu_shares, resources.cpu_quota), (1024, 100_000), "requests default to limits");
        assert_eq!(resources.oom_score_adj, -997);
        let (pod, container) = pod_with("Burstable", serde_json::json!({"requests": {"memory": "8Gi"}}));
        assert_eq!(linux_resources(&pod, &container, 4 * GIB).oom_score_adj, 3, "never below guaranteed pods");
        let (pod, container) = pod_with("Burstable", serde_json::json!({"requests": {"cpu": "1m"}}));
        assert_eq!(linux_resources(&pod, &container, 4 * GIB).oom_score_adj, 999, "never above best effort");
    }
}
