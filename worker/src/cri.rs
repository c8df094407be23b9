//! The CRI v1 client: gRPC over the runtime's unix socket, messages generated at build time from
//! `proto/cri.proto` (our own subset of the upstream contract, compiled without protoc).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI v1 messages and client stubs.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
    tonic::include_proto!("runtime.v1");
}

use proto::image_service_client::ImageServiceClient;
use proto::runtime_service_client::RuntimeServiceClient;

/// How long one CRI call may take: container creation on a slow disk can take seconds, a stop takes the grace
/// period (calls that wait for it set their own deadline).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to a CRI runtime. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct Cri {
    pub socket: PathBuf,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects lazily: the first call dials the socket, and a broken connection is dialled again.
    pub fn connect(socket: &Path) -> Result<Cri, tonic::transport::Error> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: every connection goes to the unix socket.
        let channel = Endpoint::try_from("http://[::1]:50051")?.timeout(CALL_TIMEOUT).connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }),
        );
        Ok(Cri {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's name and version, e.g. `containerd://1.6.20~ds1`, if it answers.
    pub async fn version(&self) -> Result<String, tonic::Status> {
        let answer = self.runtime.clone().version(proto::VersionRequest { version: "v1".into() }).await?.into_inner();
        Ok(format!("{}://{}", answer.runtime_name, answer.runtime_version))
    }

    /// Waits until the runtime answers `Version` (how k3s decides containerd is up), at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.version().await {
                Ok(version) => return Ok(version),
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error.message().to_string()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The images the runtime holds.
    pub async fn images(&self) -> Result<Vec<proto::Image>, tonic::Status> {
        Ok(self.images.clone().list_images(proto::ListImagesRequest { filter: None }).await?.into_inner().images)
    }

    /// The runtime's RuntimeReady and NetworkReady conditions, with the reasons of those that are false.
    pub async fn status(&self) -> Result<RuntimeReadiness, tonic::Status> {
        let answer = self.runtime.clone().status(proto::StatusRequest { verbose: false }).await?.into_inner();
        let conditions = answer.status.map(|status| status.conditions).unwrap_or_default();
        let find = |kind: &str| conditions.iter().find(|condition| condition.r#type == kind);
        let describe = |condition: Option<&proto::RuntimeCondition>| match condition {
            Some(condition) if condition.status => None,
            Some(condition) => Some(format!("{}: {}", condition.reason, condition.message)),
            None => Some("not reported".into()),
        };
        Ok(RuntimeReadiness { runtime: describe(find("RuntimeReady")), network: describe(find("NetworkReady")) })
    }
}

/// What is wrong with the runtime, per condition; `None` means ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeReadiness {
    pub runtime: Option<String>,
    pub network: Option<String>,
}
