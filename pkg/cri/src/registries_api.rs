//! `berth.registries.v1.Registries` (proto/registries/v1): `berth login` and `logout`.
//!
//! Only translation: checking credentials against the registry and keeping them in the auth file
//! is berth-registry's, through the registry client pulls use now (so a reload's hosts, TLS and
//! `registry.auth_file` apply to logins too).

use std::sync::Arc;

use berth_api::registries::v1 as api;
use berth_api::registries::v1::registries_server::{Registries, RegistriesServer};
use berth_image::ImageError;
use berth_registry::RegistryError;
use tonic::{Request, Response, Status};

use crate::error::CriError;
use crate::ids::RpcRequest;
use crate::{CriService, Shared};

impl RpcRequest for api::LoginRequest {
    const METHOD: &'static str = "berth.registries.v1.Registries/Login";
}
impl RpcRequest for api::LogoutRequest {
    const METHOD: &'static str = "berth.registries.v1.Registries/Logout";
}
impl RpcRequest for api::ListLoginsRequest {
    const METHOD: &'static str = "berth.registries.v1.Registries/List";
}

/// The registries half (tonic needs one type per service).
#[derive(Clone)]
pub struct RegistriesApi {
    shared: Arc<Shared>,
}

impl CriService {
    /// The Berth registries service, served beside CRI on the same socket.
    pub fn registries_server(&self) -> RegistriesServer<RegistriesApi> {
        let grpc = &self.shared.deps.config.grpc;
        RegistriesServer::new(RegistriesApi {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size)
    }
}

/// Registry errors answer as they do for a pull (UNAUTHENTICATED for refused credentials, ...).
fn registry(e: RegistryError) -> CriError {
    CriError::Image(ImageError::Registry(e))
}

#[tonic::async_trait]
impl Registries for RegistriesApi {
    async fn login(
        &self,
        request: Request<api::LoginRequest>,
    ) -> Result<Response<api::LoginResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let client = shared.deps.images.registry_client();
                let logged_in = client
                    .login(&req.server, &req.username, &req.password)
                    .await
                    .map_err(registry)?;
                Ok(api::LoginResponse {
                    server: logged_in.server,
                    key: logged_in.key,
                })
            })
            .await
    }

    async fn logout(
        &self,
        request: Request<api::LogoutRequest>,
    ) -> Result<Response<api::LogoutResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let client = shared.deps.images.registry_client();
                let (server, removed) =
                    tokio::task::spawn_blocking(move || client.logout(&req.server))
                        .await
                        .map_err(|source| CriError::Task {
                            what: "logout",
                            source,
                        })?
                        .map_err(registry)?;
                Ok(api::LogoutResponse { server, removed })
            })
            .await
    }

    async fn list(
        &self,
        request: Request<api::ListLoginsRequest>,
    ) -> Result<Response<api::ListLoginsResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |_| async move {
                let client = shared.deps.images.registry_client();
                let (logins, path) = client.logins().map_err(registry)?;
                Ok(api::ListLoginsResponse {
                    logins: berth_registry::auth_file::usernames(&logins)
                        .into_iter()
                        .map(|(server, username)| api::Login { server, username })
                        .collect(),
                    auth_file: path
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
            })
            .await
    }
}
