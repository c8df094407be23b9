//! An in-cluster client for the pod network tests: run inside a pod, it finds the API server the way every
//! in-cluster client does (`KUBERNETES_SERVICE_HOST`/`_PORT` and the mounted ServiceAccount token and CA, through
//! kube-rs's standard configuration) and prints the names of the pods in its namespace, one per line.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = kube::Config::incluster()?;
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)?;
    let pods = kube::Api::<Pod>::namespaced(client, &namespace).list(&ListParams::default()).await?;
    for pod in pods {
        println!("{}", pod.metadata.name.unwrap_or_default());
    }
    Ok(())
}
