//! A real `kaasd controller` and a kube-rs client for it, for the test files that drive kaasd through kube-rs.

use kaasd_e2e::controller::Controller;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

/// A controller and a kube-rs client for it, from the admin kubeconfig file the controller wrote.
pub async fn start() -> (Controller, Client) {
    let controller = tokio::task::spawn_blocking(Controller::start)
        .await
        .expect("the start task runs")
        .expect("kaasd controller starts");
    let kubeconfig = Kubeconfig::read_from(controller.kubeconfig()).expect("the admin kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube-rs accepts the admin kubeconfig");
    let client = Client::try_from(config).expect("kube-rs builds a client");
    (controller, client)
}
